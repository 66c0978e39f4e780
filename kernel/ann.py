"""Which FAISS index a watchlist of a given size is searched with, and how it is built.

A single store's list is hundreds of templates; a chain's central list can
reach 1,000,000 (issue 15). Below `EXACT_MAX` templates the index is exact
inner product (`IndexFlatIP`, = cosine of unit vectors): it never misses a
registered person the model itself would match. Above it, one query of an
exact scan costs more than the embedding behind it (128-D: 24 ms p50 at 1M,
shared/PERFORMANCE-NOTES.md), so an approximate index is used instead.

How the approximate kind was chosen: ``python -m benchmarks.chain --only ann``
builds IVF-Flat, HNSW-Flat and IVF-SQ8 over one synthetic face-like watchlist
(identities as centres with 1-3 noisy templates each, shaped like real SFace
embeddings; probes = a new noisy sample of a listed identity, plus strangers)
and times single queries on one thread against exact search in the same run.
Face embeddings are a hard case: a new photo of a person scores ~0.7 with their
templates while the best of 1M other templates is not far below (above the
0.446 alert threshold for every stranger probe at 1M), so an approximate index
must look at a large part of the list to return exact search's top-1 for 99%
of listed probes. Measured on the shared 2-vCPU box (load 4-9, so read ratios):

* 100k: IVF-Flat (nlist 1265) needs 512 lists (40%) for recall@1 0.989, p50
  2.0 ms, build 20 s; HNSW (M 32, efConstruction 80) needs efSearch 512 for
  0.994 at p50 2.4 ms, build 111-135 s; exact p50 7.3 ms. IVF-SQ8 has IVF-Flat's
  recall at a quarter of the memory, but its scores are quantised.
* 1M (two runs): IVF-Flat (nlist 4000) build 92-97 s, 522 MB; recall@1 0.905 /
  0.960 / 0.979 / 0.9875 / 0.990 / 0.995 at 10 / 20 / 30 / 40 / 50 / 60% of the
  lists, p50 4.7 / 8.9 / 15.3 / 18.5 ms (first run, exact 38 ms) and 27.3 /
  32.5 ms at 50 / 60% (second run, exact 52 ms p50, 169 ms p99; busier box):
  hence `IVF_NPROBE_SHARE` 0.5, which meets 0.99 with nothing to spare. The
  published and loaded `WatchlistIndex` gave the same 0.990. HNSW was not
  built at 1M: ~10x its 100k build, i.e. 20-25 minutes on two busy cores.

IVF-Flat is the kind used above `EXACT_MAX` although HNSW answers a query faster
at equal recall, because of what the watchlist must do with it (issue 15
item 4, G-REG-4): an erasure must reach every box within one poll interval.
FAISS's HNSW cannot remove a vector, so every erasure would mean rebuilding
the whole graph (20+ minutes at 1M on a store-class box, with an insertion
order that several threads do not fix); an IVF index removes or adds an
entry in place (`remove_ids`, `add_with_ids`) under fixed centroids, which is
what a delta can carry. The price is speed: at 1M IVF-Flat at 0.99 recall is
only ~2x faster than exact search.

Every choice is reproducible: the k-means training sample is drawn with a
fixed seed and bounded in size (`TRAIN_POINTS_PER_LIST` per list), and FAISS's
own k-means runs with a fixed seed, so the same templates in the same order
give the same centroids, the same lists and the same search results.

Every index returned here scores with true inner products of the stored
vectors (no quantised scores for the chosen kinds), so an approximate index
can miss or demote the best template but never reports a score above the
threshold that exact search would not also report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]

KIND_FLAT = "flat-ip"
KIND_IVF_FLAT = "ivf-flat-ip"
KIND_HNSW = "hnsw-flat-ip"
KIND_IVF_SQ8 = "ivf-sq8-ip"
KINDS = (KIND_FLAT, KIND_IVF_FLAT, KIND_HNSW, KIND_IVF_SQ8)

# Exact search up to here. 128-D exact scan, one query on one thread on the
# 2-vCPU store box class: 2.3 / 8.3 ms p50 / p99 at 100k, 6 ms p50 at 200k
# (benchmarks/index_search.py). Below 200k the scan is still small next to
# the ~17 ms embedding behind every probe and exact costs no recall, so the
# approximate index only starts above it (IVF-Flat at 0.99 recall scans half
# the list: at 100k it was 2.0 against exact's 7.3 ms p50).
EXACT_MAX = 200_000

# The approximate kind used above EXACT_MAX (see the module docstring).
APPROXIMATE_KIND = KIND_IVF_FLAT

# IVF: nlist = IVF_LISTS_PER_SQRT * sqrt(n). FAISS's guideline is 4-16 x sqrt(n);
# the low end keeps k-means training (cost ~ nlist x sample) about a minute at 1M
# on 2 cores, and the coarse scan of nlist centroids per query negligible.
IVF_LISTS_PER_SQRT = 4
# Lists visited per query, as a share of nlist with a floor: recall of the exact
# top-1 depends on the share of the lists visited (module docstring: 40% gave
# 0.989 at 100k and 0.9875 at 1M, 50% gave 0.990 at 1M).
IVF_NPROBE_SHARE = 0.5
IVF_NPROBE_FLOOR = 16
# k-means sample per list: FAISS warns below 39; 64 gives stable centroids while
# bounding training to 64 x nlist points (256k at 1M) whatever the list size.
TRAIN_POINTS_PER_LIST = 64
MIN_POINTS_PER_LIST = 39
KMEANS_ITERATIONS = 10  # FAISS's IVF default; k-means is ~2/3 of the 92 s build at 1M
SEED = 20_240_615  # fixed: the same templates always give the same index

# HNSW (a measured alternative, not the default): M = 32 links per node, the
# usual value for 128-512-D; efConstruction 80 is ~2x cheaper to build than 200
# for 2-3 recall points; efSearch 512 gave recall@1 0.994 at 100k (128 gave 0.97).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 512


@dataclass(frozen=True)
class SearchBreadth:
    """How much of an approximate index one query visits (ignored by exact kinds).

    `nprobe` for IVF kinds, `ef_search` for HNSW. Both are stored in the
    serialised index, so a box searches with what the publisher set.
    """

    nprobe: int | None = None
    ef_search: int | None = None


def choose_kind(count: int, *, exact_max: int = EXACT_MAX) -> str:
    """Exact up to `exact_max` templates (a store's list), `APPROXIMATE_KIND` above."""
    return KIND_FLAT if count <= exact_max else APPROXIMATE_KIND


def ivf_nlist(count: int) -> int:
    """Number of IVF lists for `count` vectors: ~4 sqrt(n), with >= 39 points per list.

    (FAISS's k-means warns below 39 training points per centroid: small lists
    get fewer, fuller lists rather than centroids fitted to a handful of points.)
    """
    by_size = round(IVF_LISTS_PER_SQRT * math.sqrt(count))
    return max(1, min(by_size, count // MIN_POINTS_PER_LIST))


def ivf_nprobe(nlist: int) -> int:
    """Lists visited per query for an index of `nlist` lists (see IVF_NPROBE_SHARE)."""
    return min(nlist, max(IVF_NPROBE_FLOOR, math.ceil(IVF_NPROBE_SHARE * nlist)))


def training_sample(matrix: Matrix, nlist: int, *, seed: int = SEED) -> Matrix:
    """At most `TRAIN_POINTS_PER_LIST` x `nlist` rows, drawn reproducibly.

    Bounding the sample bounds the training time whatever the list size; the
    fixed seed and sorted row order make the same input give the same sample.
    """
    limit = TRAIN_POINTS_PER_LIST * nlist
    if len(matrix) <= limit:
        return matrix
    rows = np.random.default_rng(seed).choice(len(matrix), size=limit, replace=False)
    return np.ascontiguousarray(matrix[np.sort(rows)])


def build_index(
    matrix: Matrix,
    *,
    kind: str | None = None,
    exact_max: int = EXACT_MAX,
    breadth: SearchBreadth | None = None,
    seed: int = SEED,
) -> tuple[faiss.Index, str]:
    """`new_index` holding the rows of `matrix` as ids 0..n-1 (benchmarks, tests)."""
    index, chosen = new_index(matrix, kind=kind, exact_max=exact_max, breadth=breadth, seed=seed)
    index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    return index, chosen


def new_index(
    matrix: Matrix,
    *,
    kind: str | None = None,
    exact_max: int = EXACT_MAX,
    breadth: SearchBreadth | None = None,
    seed: int = SEED,
) -> tuple[faiss.Index, str]:
    """An empty inner-product index, trained on `matrix` where its kind needs it, and its kind.

    Empty, so the caller can wrap it (the watchlist's `IndexIDMap2` maps template
    ids) before adding the rows. `kind` None means `choose_kind(len(matrix),
    exact_max=exact_max)`; the benchmark passes a kind to compare them all on
    the same data. `breadth` overrides the measured search breadth (tests and
    benchmarks only).
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected an (n, dim) matrix, got shape {matrix.shape}")
    chosen = kind or choose_kind(len(matrix), exact_max=exact_max)
    if chosen not in KINDS:
        raise ValueError(f"unknown index kind {chosen!r}; known: {', '.join(KINDS)}")
    dim = matrix.shape[1]
    if chosen == KIND_FLAT or len(matrix) == 0:
        index: faiss.Index = faiss.IndexFlatIP(dim)
        chosen = KIND_FLAT
    elif chosen == KIND_HNSW:
        index = _hnsw(dim, breadth)
    else:
        index = _trained_ivf(matrix, chosen, breadth, seed)
    return index, chosen


def _hnsw(dim: int, breadth: SearchBreadth | None) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    ef = breadth.ef_search if breadth and breadth.ef_search else HNSW_EF_SEARCH
    index.hnsw.efSearch = ef  # serialised with the index
    return index


def _trained_ivf(
    matrix: Matrix, kind: str, breadth: SearchBreadth | None, seed: int
) -> faiss.Index:
    """IVF-Flat or IVF-SQ8 over an exact IP quantizer, trained on a bounded fixed sample."""
    dim = matrix.shape[1]
    nlist = ivf_nlist(len(matrix))
    quantizer = faiss.IndexFlatIP(dim)  # FAISS's Python layer keeps it alive with the index
    index: faiss.IndexIVF
    if kind == KIND_IVF_SQ8:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.spherical = True  # unit centroids: IP assignment = cosine, lists balanced
    index.cp.niter = KMEANS_ITERATIONS
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST  # FAISS draws no sample of its own
    index.train(training_sample(matrix, nlist, seed=seed))
    nprobe = breadth.nprobe if breadth and breadth.nprobe else ivf_nprobe(nlist)
    index.nprobe = min(nprobe, nlist)  # serialised with the index
    return index


def set_breadth(index: faiss.Index, breadth: SearchBreadth) -> None:
    """Change how much of a built index one query visits (benchmarks sweep this)."""
    inner = faiss.extract_index_ivf(index) if breadth.nprobe else None
    if inner is not None and breadth.nprobe:
        inner.nprobe = breadth.nprobe
    if breadth.ef_search and isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = breadth.ef_search

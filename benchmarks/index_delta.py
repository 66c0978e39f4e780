"""Bytes moved per box for one watchlist change: the delta against the whole index (issue 15).

For each list size it publishes a synthetic watchlist of random unit vectors
(`kernel.watchlist_index.publish_index`, what the registry serves at
``GET /api/v1/edge/index``) and seals the two deltas a box would fetch from
``GET /api/v1/edge/index/delta`` after one change (`seal_delta`, the format the
registry's `build_delta` returns): one erasure (one template removed) and one
addition (one template added). It then times, on the box's side:

* ``load whole``: authenticate, decrypt and deserialise the whole index (what a
  box did on every change before deltas);
* ``apply``: authenticate the delta and apply it to a copy of the held index
  (`WatchlistIndex.apply`: `faiss.clone_index`, `remove_ids`, `add_with_ids`);
* ``re-seal cache``: `WatchlistIndex.sealed`, the box rewriting its encrypted
  cache so it holds no erased template.

Bytes are exact; times are medians of ``--repeats`` on this shared box, read
as ratios. Run: ``python -m benchmarks.index_delta [--sizes 1000 10000 100000]
[--dim 128]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.watchlist_index import (
    IndexedTemplate,
    WatchlistIndex,
    open_delta,
    publish_index,
    seal_delta,
)

PACK = "synthetic"


@dataclass(frozen=True)
class Row:
    """One list size: bytes per box for one change, and the box's time to take it."""

    templates: int
    whole_bytes: int
    erasure_bytes: int
    addition_bytes: int
    load_whole_ms: float
    apply_erasure_ms: float
    apply_addition_ms: float
    reseal_ms: float


def _units(count: int, dim: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def _median_ms(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(sizes: Sequence[int], dim: int = 128, repeats: int = 5) -> list[Row]:
    """The table's rows; the whole index is published once per size, in a temporary folder."""
    key = os.urandom(32)
    return [_measure_size(count, dim, repeats, key) for count in sizes]


def _measure_size(count: int, dim: int, repeats: int, key: bytes) -> Row:
    vectors = _units(count + 1, dim, seed=count)
    templates = [IndexedTemplate(i + 1, f"entry-{i + 1:07d}", vectors[i]) for i in range(count)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "watchlist.idx"
        publish_index(path, key=key, version=1, pack=PACK, dim=dim, templates=templates)
        whole_bytes = path.stat().st_size
        held = WatchlistIndex.load(path, key=key)
        load_ms = _median_ms(lambda: WatchlistIndex.load(path, key=key), repeats)
    gone = templates[count // 2]
    erasure = seal_delta(key=key, since=1, version=2, pack=PACK, dim=dim, added=[],
                         removed={gone.template_id: gone.entry_id})
    addition = seal_delta(key=key, since=1, version=2, pack=PACK, dim=dim,
                          added=[IndexedTemplate(count + 1, "entry-new", vectors[count])],
                          removed={})
    return Row(
        templates=count, whole_bytes=whole_bytes, erasure_bytes=len(erasure),
        addition_bytes=len(addition), load_whole_ms=load_ms,
        apply_erasure_ms=_median_ms(
            lambda: held.apply(open_delta(erasure, key=key, name="erasure")), repeats),
        apply_addition_ms=_median_ms(
            lambda: held.apply(open_delta(addition, key=key, name="addition")), repeats),
        reseal_ms=_median_ms(lambda: held.sealed(key), repeats),
    )


def render(rows: Sequence[Row], dim: int) -> str:
    """The table as printed."""
    lines = [
        f"one change, per box ({dim}-D float32 templates, one template per entry)",
        f"{'templates':>10} {'whole index B':>14} {'erasure B':>10} {'addition B':>11} "
        f"{'whole/erasure':>14} {'load whole ms':>14} {'apply erase ms':>15} "
        f"{'apply add ms':>13} {'re-seal ms':>11}",
    ]
    for row in rows:
        lines.append(
            f"{row.templates:>10,} {row.whole_bytes:>14,} {row.erasure_bytes:>10,} "
            f"{row.addition_bytes:>11,} {row.whole_bytes / row.erasure_bytes:>13,.0f}x "
            f"{row.load_whole_ms:>14.1f} {row.apply_erasure_ms:>15.1f} "
            f"{row.apply_addition_ms:>13.1f} {row.reseal_ms:>11.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sys.stdout.write(render(measure(args.sizes, args.dim, args.repeats), args.dim) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

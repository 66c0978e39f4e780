"""Open-set identification accuracy of each model pack, and its calibrated match threshold.

Protocol (one run per built-in pack whose files are present):

* Gallery: ONE enrolment image per identity, as a store registers a person
  from a single photo: ORL `s1..s40/1.pgm` and `face_recognition/obama.jpg`.
* Mated searches: every other image of an enrolled identity (ORL `2..10.pgm`,
  `obama2.jpg`, `obama3.jpg`).
* Non-mated searches: people who are not in the gallery - the largest face of
  every `ctu_unknowns/*.jpg`, `biden.jpg` and the pyfeat portraits, plus every
  face of the group photos `insightface/t1.jpg` and `pyfeat/multi_face.jpg`.
* Per image the largest detected face is used (all faces for group photos).
  Images where no face is found are counted and reported, never dropped
  silently; they take no part in the metrics.

Every search is exact (a dot product against all templates; embeddings are
unit length, so scores are raw cosine similarities, independent of any
configured threshold). Metrics follow the open-set convention of NIST FRVT:

* rank-1: fraction of mated searches whose top template is the right person;
* FPIR(t): fraction of non-mated searches whose top score is >= t;
* FNIR(t): fraction of mated searches where the right person is not returned
  at rank 1 with a score >= t.

For a target FPIR the reported threshold is the lowest one that meets it. N
non-mated searches cannot resolve an FPIR below 1/N: the threshold is then
the zero-false-match one (just above the highest non-mated score), and the
table says so. The recommended threshold is the FPIR 0.1% one, rounded up to
3 decimals: a false match against an innocent visitor is the costly error of
a store watchlist. It is written to `models/thresholds.json`, which the engine
reads at start-up.

Run from the repository root: `python -m benchmarks.accuracy`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import numpy.typing as npt

from mamoru.face_data import data_root, fetch_all
from mamoru.images import read_image
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import open_engine
from models.engine import THRESHOLDS_PATH, FaceEngine
from models.packs import PackCatalogue

COMMAND = "python -m benchmarks.accuracy"
FPIR_TARGETS = (0.01, 0.001)
RECOMMENDED_FPIR = 0.001
DEFAULT_OUT_DIR = Path(__file__).parent / "out"
ORL_IDENTITIES = 40
ORL_IMAGES = 10
PYFEAT_PORTRAITS = (
    "0-f1-su-ph.jpg",
    "0-f15-hao-ph.jpg",
    "15-f13-anc-ph.jpg",
    "45-m7-di-ph.jpg",
    "BWPictureHuman.jpg",
    "single_face.jpg",
)

Embeddings = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sample:
    """One image in the protocol: who is in it (None for a stranger) and which faces count."""

    path: Path
    identity: str | None
    source: str
    all_faces: bool = False


@dataclass(frozen=True)
class Protocol:
    """The three image lists of an open-set identification test."""

    gallery: tuple[Sample, ...]
    mated: tuple[Sample, ...]
    non_mated: tuple[Sample, ...]


@dataclass(frozen=True)
class EmbeddedSet:
    """Embeddings of one image list, with the identity and source of each row."""

    embeddings: Embeddings
    identities: tuple[str | None, ...]
    sources: tuple[str, ...]
    no_face: tuple[Sample, ...]


@dataclass(frozen=True)
class OperatingPoint:
    """The lowest threshold meeting one FPIR target, and what it costs in misses."""

    target_fpir: float
    threshold: float
    fpir: float
    fnir: float
    resolvable: bool


@dataclass(frozen=True)
class PackResult:
    """Everything reported for one pack."""

    pack: str
    gallery_size: int
    mated_top: Scores
    mated_correct: npt.NDArray[np.bool_]
    mated_sources: tuple[str, ...]
    non_mated_top: Scores
    genuine: Scores
    impostor: Scores
    points: tuple[OperatingPoint, ...]
    recommended: float
    fnir_at_recommended: float
    no_face: dict[str, list[Sample]]


def build_protocol(root: Path) -> Protocol:
    """The fixed image lists; a missing file is an error so a partial cache cannot pass."""
    orl, fr = root / "orl", root / "face_recognition"
    gallery = [Sample(orl / f"s{i}" / "1.pgm", f"orl/s{i}", "orl") for i in _orl_ids()]
    gallery.append(Sample(fr / "obama.jpg", "obama", "obama"))
    mated = [
        Sample(orl / f"s{i}" / f"{k}.pgm", f"orl/s{i}", "orl")
        for i in _orl_ids()
        for k in range(2, ORL_IMAGES + 1)
    ]
    mated += [Sample(fr / name, "obama", "obama") for name in ("obama2.jpg", "obama3.jpg")]
    non_mated = [Sample(p, None, "ctu_unknowns") for p in sorted((root / "ctu_unknowns").glob("*.jpg"))]
    non_mated.append(Sample(fr / "biden.jpg", None, "biden"))
    non_mated += [Sample(root / "pyfeat" / name, None, "pyfeat portraits") for name in PYFEAT_PORTRAITS]
    non_mated.append(Sample(root / "insightface" / "t1.jpg", None, "t1 group", all_faces=True))
    non_mated.append(Sample(root / "pyfeat" / "multi_face.jpg", None, "multi_face group", all_faces=True))
    protocol = Protocol(tuple(gallery), tuple(mated), tuple(non_mated))
    missing = [s.path for s in (*gallery, *mated, *non_mated) if not s.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} protocol images missing, e.g. {missing[0]}")
    return protocol


def _orl_ids() -> range:
    return range(1, ORL_IDENTITIES + 1)


def embed_samples(engine: FaceEngine, samples: Iterable[Sample]) -> EmbeddedSet:
    """Embed the largest face of each image (every face of a group photo), noting misses."""
    rows: list[Embeddings] = []
    identities: list[str | None] = []
    sources: list[str] = []
    no_face: list[Sample] = []
    for sample in samples:
        image = read_image(sample.path)
        faces = engine.detect(image)
        if not faces:
            no_face.append(sample)
            continue
        if not sample.all_faces:
            faces = [max(faces, key=lambda f: f.size_px)]
        rows.append(engine.embed_faces(image, faces))
        identities += [sample.identity] * len(faces)
        sources += [sample.source] * len(faces)
    dim = engine.info.embedding_dim
    embeddings = np.concatenate(rows) if rows else np.empty((0, dim), np.float32)
    return EmbeddedSet(embeddings, tuple(identities), tuple(sources), tuple(no_face))


def threshold_for_fpir(non_mated_top: Scores, target: float) -> tuple[float, bool]:
    """Lowest threshold with FPIR <= target, and whether N searches can resolve the target.

    With k = floor(target * N) false positives allowed, the threshold sits just
    above the (k+1)-th highest non-mated score. When N < 1/target, k is 0: the
    zero-false-match threshold, just above the highest non-mated score.
    """
    n = len(non_mated_top)
    allowed = math.floor(target * n + 1e-9)
    ranked = np.sort(non_mated_top)[::-1]
    boundary = float(ranked[allowed]) if allowed < n else -1.0
    return float(np.nextafter(boundary, np.inf)), n * target >= 1.0


def fpir_at(non_mated_top: Scores, threshold: float) -> float:
    return float(np.mean(non_mated_top >= threshold))


def fnir_at(mated_top: Scores, mated_correct: npt.NDArray[np.bool_], threshold: float) -> float:
    """Misses: the right person not at rank 1, or at rank 1 but below the threshold."""
    return float(np.mean(~(mated_correct & (mated_top >= threshold))))


def round_up(threshold: float, decimals: int = 3) -> float:
    """The smallest value with `decimals` decimals that is >= the threshold.

    Rounding up, never to nearest, keeps every non-mated search that was below
    the exact threshold below the rounded one.
    """
    scale = 10**decimals
    steps = math.ceil(threshold * scale)
    if steps / scale < threshold:  # guard against floating-point error in the product
        steps += 1
    return steps / scale


def evaluate(engine: FaceEngine, protocol: Protocol) -> PackResult:
    """Embed the protocol's images with one engine and compute every reported number."""
    gallery = embed_samples(engine, protocol.gallery)
    enrolled_ids = set(gallery.identities)
    # A probe whose gallery image had no face cannot be a mated search: reported, not used.
    orphaned = [s for s in protocol.mated if s.identity not in enrolled_ids]
    mated = embed_samples(engine, [s for s in protocol.mated if s.identity in enrolled_ids])
    non_mated = embed_samples(engine, protocol.non_mated)

    enrolled = np.array(gallery.identities, dtype=object)
    mated_ids = np.array(mated.identities, dtype=object)
    mated_sim = (mated.embeddings @ gallery.embeddings.T).astype(np.float64)
    non_mated_sim = (non_mated.embeddings @ gallery.embeddings.T).astype(np.float64)
    own = enrolled[None, :] == mated_ids[:, None]

    mated_top = mated_sim.max(axis=1)
    mated_correct = np.asarray(enrolled[mated_sim.argmax(axis=1)] == mated_ids, dtype=bool)
    non_mated_top = non_mated_sim.max(axis=1)

    points = []
    for target in FPIR_TARGETS:
        threshold, resolvable = threshold_for_fpir(non_mated_top, target)
        points.append(
            OperatingPoint(
                target_fpir=target,
                threshold=threshold,
                fpir=fpir_at(non_mated_top, threshold),
                fnir=fnir_at(mated_top, mated_correct, threshold),
                resolvable=resolvable,
            )
        )
    recommended = round_up(threshold_for_fpir(non_mated_top, RECOMMENDED_FPIR)[0])
    return PackResult(
        pack=engine.info.pack,
        gallery_size=len(gallery.identities),
        mated_top=mated_top,
        mated_correct=mated_correct,
        mated_sources=mated.sources,
        non_mated_top=non_mated_top,
        genuine=mated_sim[own],
        impostor=np.concatenate([mated_sim[~own], non_mated_sim.ravel()]),
        points=tuple(points),
        recommended=recommended,
        fnir_at_recommended=fnir_at(mated_top, mated_correct, recommended),
        no_face={
            "gallery": list(gallery.no_face),
            "mated": list(mated.no_face),
            "mated (mate not enrolled)": orphaned,
            "non-mated": list(non_mated.no_face),
        },
    )


def det_curve(result: PackResult) -> tuple[Scores, Scores]:
    """FPIR and FNIR at every threshold where either changes."""
    thresholds = np.unique(np.concatenate([result.mated_top, result.non_mated_top]))
    fpir = np.array([fpir_at(result.non_mated_top, t) for t in thresholds])
    fnir = np.array([fnir_at(result.mated_top, result.mated_correct, t) for t in thresholds])
    return fpir, fnir


def plot(result: PackResult, out_dir: Path) -> Path:
    """Score histograms and DET curve of one pack, saved as a PNG."""
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    fig, (hist, det) = plt.subplots(1, 2, figsize=(13, 5))
    bins = np.linspace(-0.4, 1.0, 71)
    hist.hist(result.impostor, bins=bins, density=True, alpha=0.5, label="impostor pairs (all)")
    hist.hist(result.non_mated_top, bins=bins, density=True, alpha=0.5, label="non-mated top-1")
    hist.hist(result.genuine, bins=bins, density=True, alpha=0.5, label="genuine pairs")
    hist.axvline(result.recommended, color="k", ls="--", label=f"recommended {result.recommended:.3f}")
    hist.set(xlabel="cosine similarity", ylabel="density", title=f"{result.pack}: scores")
    hist.legend()

    fpir, fnir = det_curve(result)
    n = len(result.non_mated_top)
    shown = fpir > 0
    det.plot(fpir[shown], fnir[shown], drawstyle="steps-post", label="DET")
    for point in result.points:
        det.plot(max(point.fpir, 1 / n), point.fnir, "o", label=_point_label(point))
    det.set_xscale("log")
    det.set(
        xlim=(1 / n, 1.0),
        ylim=(0.0, 1.0),
        xlabel=f"FPIR (N={n} non-mated; below 1/N not resolvable)",
        ylabel=f"FNIR (N={len(result.mated_top)} mated)",
        title=f"{result.pack}: DET",
    )
    det.grid(True, which="both", alpha=0.3)
    det.legend()

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"accuracy-{result.pack}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _point_label(point: OperatingPoint) -> str:
    note = "" if point.resolvable else " (zero-FM; unresolvable)"
    return f"FPIR {point.target_fpir:.1%}{note}: t={point.threshold:.4f}"


def format_table(results: Sequence[PackResult]) -> str:
    """The one-row-per-pack summary table, footnoted where N cannot resolve a target."""
    header = ["pack", "gallery", "mated N", "non-mated N", "rank-1"]
    for target in FPIR_TARGETS:
        header += [f"FNIR@FPIR{target:.1%}", f"t@{target:.1%}"]
    header.append("recommended")
    rows = [header]
    notes: list[str] = []
    for r in results:
        row = [r.pack, str(r.gallery_size), str(len(r.mated_top)), str(len(r.non_mated_top))]
        row.append(f"{np.mean(r.mated_correct):.4f}")
        for p in r.points:
            mark = "" if p.resolvable else "*"
            row += [f"{p.fnir:.4f}{mark}", f"{p.threshold:.4f}{mark}"]
            if not p.resolvable:
                n = len(r.non_mated_top)
                notes.append(
                    f"* {r.pack}: {n} non-mated searches cannot resolve FPIR {p.target_fpir:.1%} "
                    f"(needs >= {math.ceil(1 / p.target_fpir)}); zero-false-match threshold used "
                    f"(just above max non-mated score {r.non_mated_top.max():.4f}, FPIR 0/{n})"
                )
        row.append(f"{r.recommended:.3f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + notes)


def format_details(result: PackResult) -> str:
    """Score summaries, per-set rank-1 and the images where no face was found."""

    def summary(name: str, scores: Scores) -> str:
        return (
            f"  {name:<22} n={len(scores):<6} mean={scores.mean():.4f} "
            f"min={scores.min():.4f} max={scores.max():.4f}"
        )

    lines = [
        f"{result.pack}:",
        summary("genuine pairs", result.genuine),
        summary("impostor pairs (all)", result.impostor),
        summary("non-mated top-1", result.non_mated_top),
    ]
    by_source = Counter(result.mated_sources)
    rank1 = ", ".join(
        f"{src} {np.mean(result.mated_correct[np.array(result.mated_sources) == src]):.4f} (n={n})"
        for src, n in sorted(by_source.items())
    )
    lines.append(f"  rank-1 by set: {rank1}")
    lines.append(
        f"  recommended threshold {result.recommended:.3f}: "
        f"FPIR {fpir_at(result.non_mated_top, result.recommended):.4f}, "
        f"FNIR {result.fnir_at_recommended:.4f}"
    )
    for group, samples in result.no_face.items():
        names = ", ".join(f"{s.source}:{s.path.name}" for s in samples) or "-"
        lines.append(f"  no face found, {group}: {len(samples)} ({names})")
    return "\n".join(lines)


def write_thresholds(results: Sequence[PackResult], path: Path = THRESHOLDS_PATH) -> None:
    """Merge each pack's recommended threshold into the file the engine reads."""
    data: dict[str, dict[str, Any]] = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    )
    for r in results:
        data[r.pack] = {
            "threshold": r.recommended,
            "target_fpir": RECOMMENDED_FPIR,
            "fnir_at_threshold": round(r.fnir_at_recommended, 4),
            "non_mated_searches": len(r.non_mated_top),
            "mated_searches": len(r.mated_top),
            "measured_on": date.today().isoformat(),
            "command": COMMAND,
        }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def present_packs(settings: MamoruSettings) -> list[str]:
    """Built-in packs whose model files are on disk."""
    catalogue = PackCatalogue(settings.resolved_models_dir)
    return [p.name for p in catalogue.all() if p.is_present() and not p.drop_in]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Open-set identification accuracy and threshold calibration."
    )
    parser.add_argument("--packs", nargs="+", help="packs to evaluate (default: all present)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where PNGs go")
    parser.add_argument(
        "--no-write", action="store_true", help="do not update models/thresholds.json"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    fetch_all(settings.cache_dir)
    protocol = build_protocol(data_root(settings.cache_dir))
    packs = args.packs or present_packs(settings)
    if not packs:
        sys.stderr.write("no model pack is present: run `mamoru models fetch` first\n")
        return 1

    results: list[PackResult] = []
    out = sys.stdout
    for name in packs:
        # Research evaluation only: accepting the licence here does not make a
        # non-commercial pack usable in a store.
        engine = open_engine(settings, pack=name, accept_licence=True)
        result = evaluate(engine, protocol)
        results.append(result)
        out.write(format_details(result) + "\n")
        out.write(f"  plot: {plot(result, args.out_dir)}\n\n")

    out.write(format_table(results) + "\n")
    if not args.no_write:
        write_thresholds(results)
        out.write(f"\nthresholds written to {THRESHOLDS_PATH}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Open-set identification accuracy of each model pack, and its calibrated match threshold.

Protocol (one run per built-in pack whose files are present): a two-fold
split of the 40 ORL identities, so that the non-mated searches include
people of the gallery's own image domain (grey ORL crops), not only
strangers from colour photos. Strangers of another domain score low against
an ORL gallery; calibrating on them alone gave a threshold that two
different ORL people exceeded.

* Fold A - gallery: ONE enrolment image per identity, as a store registers a
  person from a single photo: ORL `s1..s20/1.pgm` and
  `face_recognition/obama.jpg`. Mated searches: every other image of an
  enrolled identity (ORL `s1..s20/2..10.pgm`, `obama2.jpg`, `obama3.jpg`).
  Non-mated searches: ALL 10 images of the ORL people not enrolled
  (`s21..s40/1..10.pgm`), plus the strangers - the largest face of every
  `ctu_unknowns/*.jpg`, `biden.jpg` and the pyfeat portraits, and every face
  of the group photos `insightface/t1.jpg` and `pyfeat/multi_face.jpg`.
* Fold B - the halves swapped: gallery `s21..s40/1.pgm` + `obama.jpg`, mated
  `s21..s40/2..10.pgm` + `obama2/3.jpg`, non-mated all of `s1..s20` plus the
  same strangers.
* The mated and the non-mated searches of both folds are pooled for every
  metric (each fold searches its own gallery), so Obama's two probes and the
  strangers count once per fold. Every ORL image 1 is compared with the
  image 1 of every person of the other half, the very pairs a watchlist of
  ORL people would confuse.
* Each image is embedded once and its embedding reused in both folds.
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
table says so (with about 800 pooled non-mated searches, FPIR 0.1% is not
resolvable). The recommended threshold is the FPIR 0.1% one, rounded up to
3 decimals: a false match against an innocent visitor is the costly error of
a store watchlist. It is written to `models/thresholds.json`, which the engine
reads at start-up, with the FNIR it costs on the pooled mated searches.

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
ORL_HALVES = (range(1, 21), range(21, ORL_IDENTITIES + 1))  # fold A enrols the first
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
class Fold:
    """The three image lists of one open-set identification test."""

    name: str
    gallery: tuple[Sample, ...]
    mated: tuple[Sample, ...]
    non_mated: tuple[Sample, ...]


@dataclass(frozen=True)
class Protocol:
    """The folds whose searches are pooled for the metrics."""

    folds: tuple[Fold, ...]

    def samples(self) -> tuple[Sample, ...]:
        """Every distinct image of every fold, in first-seen order (each embedded once)."""
        seen: dict[tuple[Path, bool], Sample] = {}
        for fold in self.folds:
            for s in (*fold.gallery, *fold.mated, *fold.non_mated):
                seen.setdefault(_key(s), s)
        return tuple(seen.values())


SampleKey = tuple[Path, bool]


def _key(sample: Sample) -> SampleKey:
    """What identifies an embedding: the image, and whether all its faces count."""
    return sample.path, sample.all_faces


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
    gallery_sizes: tuple[int, ...]
    mated_top: Scores
    mated_correct: npt.NDArray[np.bool_]
    mated_sources: tuple[str, ...]
    non_mated_top: Scores
    non_mated_sources: tuple[str, ...]
    genuine: Scores
    impostor: Scores
    points: tuple[OperatingPoint, ...]
    recommended: float
    fnir_at_recommended: float
    no_face: dict[str, list[Sample]]


def build_protocol(root: Path) -> Protocol:
    """The fixed two-fold image lists; a missing file is an error so a partial cache cannot pass."""
    orl, fr = root / "orl", root / "face_recognition"
    strangers = [
        Sample(p, None, "ctu_unknowns") for p in sorted((root / "ctu_unknowns").glob("*.jpg"))
    ]
    strangers.append(Sample(fr / "biden.jpg", None, "biden"))
    strangers += [
        Sample(root / "pyfeat" / name, None, "pyfeat portraits") for name in PYFEAT_PORTRAITS
    ]
    strangers.append(Sample(root / "insightface" / "t1.jpg", None, "t1 group", all_faces=True))
    strangers.append(
        Sample(root / "pyfeat" / "multi_face.jpg", None, "multi_face group", all_faces=True)
    )

    def orl_sample(i: int, k: int, source: str) -> Sample:
        return Sample(orl / f"s{i}" / f"{k}.pgm", f"orl/s{i}", source)

    folds = []
    for name, (enrolled, others) in (
        ("A", ORL_HALVES),
        ("B", ORL_HALVES[::-1]),
    ):
        gallery = [orl_sample(i, 1, "orl") for i in enrolled]
        gallery.append(Sample(fr / "obama.jpg", "obama", "obama"))
        mated = [orl_sample(i, k, "orl") for i in enrolled for k in range(2, ORL_IMAGES + 1)]
        mated += [Sample(fr / n, "obama", "obama") for n in ("obama2.jpg", "obama3.jpg")]
        # The other half's people, every image: impostors from the gallery's own domain.
        non_mated = [
            orl_sample(i, k, "orl (other half)") for i in others for k in range(1, ORL_IMAGES + 1)
        ]
        non_mated += strangers
        folds.append(Fold(name, tuple(gallery), tuple(mated), tuple(non_mated)))
    protocol = Protocol(tuple(folds))
    missing = [s.path for s in protocol.samples() if not s.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} protocol images missing, e.g. {missing[0]}")
    return protocol


def describe_fold(fold: Fold) -> str:
    """One line naming who a fold enrols (ORL ids collapsed to a range)."""
    orl_ids = sorted(
        int(s.identity.split("/s")[1]) for s in fold.gallery if s.source == "orl" and s.identity
    )
    others = [s.identity for s in fold.gallery if s.source != "orl"]
    enrolled = f"orl/s{orl_ids[0]}..s{orl_ids[-1]}" if orl_ids else "-"
    return (
        f"fold {fold.name}: gallery {enrolled} + {', '.join(str(o) for o in others)} "
        f"({len(fold.gallery)} images), {len(fold.mated)} mated, "
        f"{len(fold.non_mated)} non-mated images"
    )


def embed_images(engine: FaceEngine, samples: Iterable[Sample]) -> dict[SampleKey, Embeddings]:
    """Embed each distinct image once: its largest face (every face of a group photo).

    An image where no face is found maps to an empty (0, dim) array.
    """
    dim = engine.info.embedding_dim
    cache: dict[SampleKey, Embeddings] = {}
    for sample in samples:
        if _key(sample) in cache:
            continue
        image = read_image(sample.path)
        faces = engine.detect(image)
        if not sample.all_faces and faces:
            faces = [max(faces, key=lambda f: f.size_px)]
        cache[_key(sample)] = (
            engine.embed_faces(image, faces) if faces else np.empty((0, dim), np.float32)
        )
    return cache


def assemble(
    cache: dict[SampleKey, Embeddings], samples: Iterable[Sample], dim: int
) -> EmbeddedSet:
    """One image list's embeddings from the cache, noting the images with no face."""
    rows: list[Embeddings] = []
    identities: list[str | None] = []
    sources: list[str] = []
    no_face: list[Sample] = []
    for sample in samples:
        found = cache[_key(sample)]
        if len(found) == 0:
            no_face.append(sample)
            continue
        rows.append(found)
        identities += [sample.identity] * len(found)
        sources += [sample.source] * len(found)
    embeddings = np.concatenate(rows) if rows else np.empty((0, dim), np.float32)
    return EmbeddedSet(embeddings, tuple(identities), tuple(sources), tuple(no_face))


def embed_samples(engine: FaceEngine, samples: Sequence[Sample]) -> EmbeddedSet:
    """Embed the largest face of each image (every face of a group photo), noting misses."""
    return assemble(embed_images(engine, samples), samples, engine.info.embedding_dim)


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
    scale: int = 10**decimals
    steps = math.ceil(threshold * scale)
    if steps / scale < threshold:  # guard against floating-point error in the product
        steps += 1
    return steps / scale


@dataclass(frozen=True)
class FoldScores:
    """The raw scores of one fold's searches against its own gallery."""

    gallery_size: int
    mated_top: Scores
    mated_correct: npt.NDArray[np.bool_]
    mated_sources: tuple[str, ...]
    non_mated_top: Scores
    non_mated_sources: tuple[str, ...]
    genuine: Scores
    impostor: Scores
    no_face: dict[str, list[Sample]]


def score_fold(cache: dict[SampleKey, Embeddings], fold: Fold, dim: int) -> FoldScores:
    """Search one fold's mated and non-mated probes against its gallery."""
    gallery = assemble(cache, fold.gallery, dim)
    enrolled_ids = set(gallery.identities)
    # A probe whose gallery image had no face cannot be a mated search: reported, not used.
    orphaned = [s for s in fold.mated if s.identity not in enrolled_ids]
    mated = assemble(cache, [s for s in fold.mated if s.identity in enrolled_ids], dim)
    non_mated = assemble(cache, fold.non_mated, dim)
    if enrolled_ids & {i for i in non_mated.identities if i is not None}:
        raise ValueError(f"fold {fold.name}: a non-mated search is of an enrolled person")

    enrolled = np.array(gallery.identities, dtype=object)
    mated_ids = np.array(mated.identities, dtype=object)
    mated_sim = (mated.embeddings @ gallery.embeddings.T).astype(np.float64)
    non_mated_sim = (non_mated.embeddings @ gallery.embeddings.T).astype(np.float64)
    own = enrolled[None, :] == mated_ids[:, None]
    return FoldScores(
        gallery_size=len(gallery.identities),
        mated_top=mated_sim.max(axis=1),
        mated_correct=np.asarray(enrolled[mated_sim.argmax(axis=1)] == mated_ids, dtype=bool),
        mated_sources=mated.sources,
        non_mated_top=non_mated_sim.max(axis=1),
        non_mated_sources=non_mated.sources,
        genuine=mated_sim[own],
        impostor=np.concatenate([mated_sim[~own], non_mated_sim.ravel()]),
        no_face={
            "gallery": list(gallery.no_face),
            "mated": list(mated.no_face),
            "mated (mate not enrolled)": orphaned,
            "non-mated": list(non_mated.no_face),
        },
    )


def evaluate(engine: FaceEngine, protocol: Protocol) -> PackResult:
    """Embed the protocol's images once with one engine, score every fold, pool the searches."""
    dim = engine.info.embedding_dim
    cache = embed_images(engine, protocol.samples())
    folds = [score_fold(cache, fold, dim) for fold in protocol.folds]

    mated_top = np.concatenate([f.mated_top for f in folds])
    mated_correct = np.concatenate([f.mated_correct for f in folds])
    non_mated_top = np.concatenate([f.non_mated_top for f in folds])

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
    # An image without a face is reported once, whichever folds it appears in.
    no_face: dict[str, list[Sample]] = {}
    for group in folds[0].no_face:
        unique = {_key(s): s for f in folds for s in f.no_face[group]}
        no_face[group] = list(unique.values())
    return PackResult(
        pack=engine.info.pack,
        gallery_sizes=tuple(f.gallery_size for f in folds),
        mated_top=mated_top,
        mated_correct=mated_correct,
        mated_sources=tuple(src for f in folds for src in f.mated_sources),
        non_mated_top=non_mated_top,
        non_mated_sources=tuple(src for f in folds for src in f.non_mated_sources),
        genuine=np.concatenate([f.genuine for f in folds]),
        impostor=np.concatenate([f.impostor for f in folds]),
        points=tuple(points),
        recommended=recommended,
        fnir_at_recommended=fnir_at(mated_top, mated_correct, recommended),
        no_face=no_face,
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
    hist.axvline(
        result.recommended, color="k", ls="--", label=f"recommended {result.recommended:.3f}"
    )
    hist.set(xlabel="cosine similarity", ylabel="density", title=f"{result.pack}: scores")
    hist.legend()

    # Both axes are logarithmic; a rate of 0 is drawn at half the smallest
    # resolvable rate (0.5/N) so it stays visible and is clearly off the scale.
    fpir, fnir = det_curve(result)
    n_non, n_mated = len(result.non_mated_top), len(result.mated_top)
    x_floor, y_floor = 0.5 / n_non, 0.5 / n_mated
    det.plot(
        np.maximum(fpir, x_floor), np.maximum(fnir, y_floor), drawstyle="steps-post", label="DET"
    )
    for point in result.points:
        det.plot(max(point.fpir, x_floor), max(point.fnir, y_floor), "o", label=_point_label(point))
    det.set_xscale("log")
    det.set_yscale("log")
    det.set(
        xlim=(x_floor * 0.8, 1.0),
        ylim=(y_floor * 0.8, 1.0),
        xlabel=f"FPIR (N={n_non} non-mated; 0 drawn at 0.5/N)",
        ylabel=f"FNIR (N={n_mated} mated; 0 drawn at 0.5/N)",
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
    header += ["recommended", "FNIR@rec"]
    rows = [header]
    notes: list[str] = []
    for r in results:
        row = [r.pack, _gallery_cell(r), str(len(r.mated_top)), str(len(r.non_mated_top))]
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
        row += [f"{r.recommended:.3f}", f"{r.fnir_at_recommended:.4f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes.append(
        "gallery: templates per fold; mated and non-mated searches of both folds pooled; "
        "FNIR@rec: FNIR at the recommended threshold"
    )
    return "\n".join(lines + notes)


def _gallery_cell(result: PackResult) -> str:
    sizes = result.gallery_sizes
    if len(set(sizes)) == 1:
        return f"{len(sizes)}x{sizes[0]}"
    return "+".join(str(n) for n in sizes)


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
    non_sources = np.array(result.non_mated_sources)
    by_non = ", ".join(
        f"{src} max={result.non_mated_top[non_sources == src].max():.4f} (n={n})"
        for src, n in sorted(Counter(result.non_mated_sources).items())
    )
    lines.append(f"  non-mated top-1 by set: {by_non}")
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
    for fold in protocol.folds:
        sys.stdout.write(describe_fold(fold) + "\n")
    sys.stdout.write("\n")
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

"""How fast mamoru's engine detects and embeds, against the naive ways to run the same files.

For every pack it times, on one real frame and eight real aligned face crops:

* detect: one 1280x720 frame through the 640x640 detector, letterboxing and
  decoding included (ms per frame);
* embed at batch 1 and batch 8 (ms per face).

Variants, all on the same model files and measured in the same run (the box is
shared and noisy, so only ratios inside one run mean much):

* ``mamoru``: the engine as `open_engine` builds it from the configured
  `RuntimeSettings` (spinning off, explicit thread count, initializers removed
  from the graph inputs);
* ``ort defaults``: the same engine code, but sessions made the naive way,
  ``onnxruntime.InferenceSession(file)`` with default `SessionOptions`
  (spinning on, thread count chosen by onnxruntime, file loaded as shipped);
* ``opencv``: for YuNet/SFace, OpenCV's own `cv2.FaceDetectorYN` and
  `cv2.FaceRecognizerSF`, which is what most YuNet/SFace examples use;
* ``mamoru + dynamic batch``: for a recognizer whose file fixes the batch size to 1
  (SFace), the same session settings with the batch dimension made dynamic in
  memory, to see whether real batching would pay. The engine does not do this;
  the embeddings are compared with the engine's to show whether it would be safe.

Run: ``python -m benchmarks.engine_throughput [--repeats 50] [--warmup 5] [--rounds 5]
[--packs ...]``.
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

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from mamoru.face_data import dataset_dir
from mamoru.images import read_image
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import open_engine
from models.detectors import build_detector
from models.detectors.letterbox import letterbox
from models.embedder import Embedder
from models.engine import FaceEngine
from models.runtime import RuntimeSettings, create_session, load_model_bytes

Image = npt.NDArray[np.uint8]
SessionFactory = Callable[[Path], ort.InferenceSession]

FRAME_SIZE = (1280, 720)
CROPS_PER_BATCH = 8
DEFAULT_PACKS = ("yunet-sface", "scrfd-mbf")
# Images the crops come from: a group photo first, then single portraits to reach 8 faces.
GROUP_PHOTO = ("insightface", "t1.jpg")
PORTRAITS = (("face_recognition", "obama.jpg"), ("face_recognition", "biden.jpg"))


@dataclass(frozen=True)
class Variant:
    """One way of running a pack's two models; `embed` must take any number of crops."""

    name: str
    detect: Callable[[Image], object]
    embed: Callable[[Sequence[Image]], object]
    loops_batch: bool = False  # embeds a batch one crop at a time


@dataclass(frozen=True)
class Timing:
    """Median and 90th percentile of one measurement, in milliseconds."""

    median: float
    p90: float
    samples: int

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        return cls(
            float(np.median(samples_ms)), float(np.percentile(samples_ms, 90)), len(samples_ms)
        )


@dataclass(frozen=True)
class Result:
    """The three numbers of the table for one variant."""

    variant: Variant
    detect: Timing
    embed_b1: Timing
    embed_b8: Timing
    max_diff: float  # largest |difference| from mamoru's unit embeddings of the same crops


# --- inputs -----------------------------------------------------------------------------


def benchmark_frame(settings: MamoruSettings) -> Image:
    """t1.jpg (1280x886) letterboxed to a camera-like 1280x720 frame.

    Letterboxing keeps the faces undistorted, so the detector sees what it
    would see on a 16:9 camera; the pad is black, as on a letterboxed stream.
    """
    group = read_image(dataset_dir(settings.cache_dir, GROUP_PHOTO[0]) / GROUP_PHOTO[1])
    frame, _ = letterbox(group, FRAME_SIZE)
    return frame


def real_crops(engine: FaceEngine, frame: Image, settings: MamoruSettings) -> list[Image]:
    """Eight aligned crops of real faces, aligned by the pack's own engine.

    Crops come from the benchmark frame and then from portraits, so every
    variant embeds exactly the inputs the engine would hand to the recognizer.
    """
    crops = [engine.align(frame, face) for face in engine.detect(frame)]
    for folder, name in PORTRAITS:
        image = read_image(dataset_dir(settings.cache_dir, folder) / name)
        crops.extend(engine.align(image, face) for face in engine.detect(image)[:1])
    if len(crops) < CROPS_PER_BATCH:
        raise RuntimeError(f"found only {len(crops)} faces; need {CROPS_PER_BATCH}")
    return crops[:CROPS_PER_BATCH]


# --- variants ---------------------------------------------------------------------------


def engine_variant(name: str, engine: FaceEngine, max_batch: int) -> Variant:
    """A variant that runs the engine's own detect/embed code.

    `max_batch` is the limit its embedder was built with, which the
    dynamic-batch experiment raises above the manifest's.
    """
    return Variant(name, engine.detect, engine.embed, loops_batch=max_batch < CROPS_PER_BATCH)


def with_sessions(
    engine: FaceEngine, make_session: SessionFactory, max_batch: int | None = None
) -> FaceEngine:
    """The same engine code around other sessions, so only the session differs.

    `max_batch` overrides the manifest's batch limit for the dynamic-batch
    experiment; the pack's files are still verified through `require_file`.
    """
    pack = engine.pack
    manifest = pack.manifest
    recognizer = manifest.recognizer
    if max_batch is not None:
        recognizer = recognizer.model_copy(update={"max_batch": max_batch})
    detector = build_detector(manifest.detector, make_session(pack.require_file(manifest.detector)))
    embedder = Embedder(recognizer, make_session(pack.require_file(manifest.recognizer)))
    return FaceEngine(pack, detector, embedder, engine.info)


def default_ort_session(path: Path) -> ort.InferenceSession:
    """What a naive caller writes: the file as shipped, default `SessionOptions`."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def dynamic_batch_bytes(path: Path) -> bytes:
    """The model as mamoru loads it, with dim 0 of every input and output made symbolic.

    Only valid for graphs that never hard-code the batch (SFace: Flatten then
    Gemm, no Reshape); the embedding comparison is the check.
    """
    model = onnx.load_from_string(load_model_bytes(path))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]  # stale batch-1 shapes; onnxruntime re-infers them
    return bytes(model.SerializeToString())


def dynamic_batch_engine(engine: FaceEngine, runtime: RuntimeSettings) -> FaceEngine:
    """The engine with its recognizer's batch dimension freed, same session settings.

    `create_session` reads a path, so the edited graph goes through a temporary
    file; onnxruntime has read it by the time the session exists.
    """
    recognizer_file = engine.pack.manifest.recognizer.file
    with tempfile.TemporaryDirectory() as folder:

        def make_session(path: Path) -> ort.InferenceSession:
            if path.name != recognizer_file:
                return create_session(path, runtime)
            edited = Path(folder) / path.name
            edited.write_bytes(dynamic_batch_bytes(path))
            return create_session(edited, runtime)

        return with_sessions(engine, make_session, max_batch=CROPS_PER_BATCH)


def opencv_variant(engine: FaceEngine) -> Variant:
    """YuNet and SFace through OpenCV DNN, fed the same letterboxed input and crops."""
    manifest = engine.pack.manifest
    spec = manifest.detector
    detector = cv2.FaceDetectorYN.create(
        str(engine.pack.require_file(spec)),
        "",
        spec.input_size,
        spec.score_threshold,
        spec.nms_threshold,
    )
    recognizer = cv2.FaceRecognizerSF.create(str(engine.pack.require_file(manifest.recognizer)), "")

    def detect(frame: Image) -> object:
        return detector.detect(letterbox(frame, spec.input_size)[0])

    def embed(crops: Sequence[Image]) -> object:
        return [recognizer.feature(crop) for crop in crops]

    return Variant(
        f"opencv FaceDetectorYN/RecognizerSF ({cv2.getNumThreads()} threads)",
        detect,
        embed,
        loops_batch=True,
    )


def build_variants(pack: str, settings: MamoruSettings) -> tuple[list[Variant], FaceEngine]:
    """Every variant that applies to the pack, mamoru's own first."""
    engine = open_engine(settings, pack=pack, accept_licence=True)
    runtime = settings.runtime
    spinning = "on" if runtime.allow_spinning else "off"
    max_batch = engine.pack.manifest.recognizer.max_batch
    variants = [
        engine_variant(
            f"mamoru ({runtime.intra_op_threads} threads, spinning {spinning})", engine, max_batch
        ),
        engine_variant(
            "ort defaults (spinning on, file as shipped)",
            with_sessions(engine, default_ort_session),
            max_batch,
        ),
    ]
    if engine.pack.manifest.detector.kind == "yunet":
        variants.append(opencv_variant(engine))
    if max_batch == 1:
        dynamic = dynamic_batch_engine(engine, runtime)
        variants.append(
            engine_variant("mamoru + dynamic batch (experiment)", dynamic, CROPS_PER_BATCH)
        )
    return variants, engine


# --- measuring --------------------------------------------------------------------------


def time_ms(call: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of each of `repeats` calls, after `warmup` untimed ones.

    Warm-up lets onnxruntime allocate its arenas and OpenCV build its graph,
    which would otherwise land in the first samples.
    """
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def unit_rows(features: object) -> npt.NDArray[np.float32]:
    """Any variant's embed output as L2-normalised rows (OpenCV returns raw features)."""
    rows = np.asarray(features, dtype=np.float32)
    rows = rows.reshape(rows.shape[0], -1)
    normalised: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalised


@dataclass(frozen=True)
class Workload:
    """One timed call and how many faces it handles, to report ms per face."""

    call: Callable[[], object]
    faces: int = 1


def workloads(variant: Variant, frame: Image, crops: Sequence[Image]) -> dict[str, Workload]:
    """The three timed calls of a variant: detect a frame, embed one crop, embed eight.

    Batch 1 cycles through the crops so no single face decides the number.
    """
    calls = iter(range(10**9))

    def embed_one() -> object:
        return variant.embed([crops[next(calls) % len(crops)]])

    return {
        "detect": Workload(lambda: variant.detect(frame)),
        "embed_b1": Workload(embed_one),
        "embed_b8": Workload(lambda: variant.embed(crops), faces=len(crops)),
    }


def measure_all(
    variants: Sequence[Variant],
    frame: Image,
    crops: Sequence[Image],
    reference: npt.NDArray[np.float32],
    options: argparse.Namespace,
) -> list[Result]:
    """Time every variant in interleaved rounds, then summarise each.

    The box is shared: load from other processes comes and goes within a
    run, so each variant gets `repeats / rounds` samples per round instead of
    one long block that a burst could hit alone. Within a round a variant
    runs as a block, after one untimed call, so a session that spins mostly
    slows itself down rather than the next variant.
    """
    loads = {v.name: workloads(v, frame, crops) for v in variants}
    samples: dict[str, dict[str, list[float]]] = {
        v.name: {key: [] for key in loads[v.name]} for v in variants
    }
    per_round = max(1, -(-options.repeats // options.rounds))
    for round_index in range(options.rounds):
        warmup = options.warmup if round_index == 0 else 1
        for variant in variants:
            for key, load in loads[variant.name].items():
                timed = time_ms(load.call, per_round, warmup)
                samples[variant.name][key].extend(ms / load.faces for ms in timed)
    return [
        Result(
            variant,
            detect=Timing.of(samples[variant.name]["detect"]),
            embed_b1=Timing.of(samples[variant.name]["embed_b1"]),
            embed_b8=Timing.of(samples[variant.name]["embed_b8"]),
            max_diff=float(np.abs(unit_rows(variant.embed(crops)) - reference).max()),
        )
        for variant in variants
    ]


# --- output -----------------------------------------------------------------------------


def format_cell(timing: Timing, baseline: Timing) -> str:
    """'median / p90 (ratio of medians to mamoru's)'."""
    return f"{timing.median:6.1f} / {timing.p90:6.1f} ({timing.median / baseline.median:4.2f}x)"


def format_table(pack: str, results: Sequence[Result]) -> str:
    """One pack's results; the first row is the baseline for the ratios."""
    base = results[0]
    name_width = max(len(r.variant.name) for r in results) + 2
    header = (
        f"{'variant':<{name_width}}"
        f"{'detect ms/frame':<25}{'embed b1 ms/face':<25}{'embed b8 ms/face':<27}"
        "max|emb diff|"
    )
    lines = [f"== {pack}  (median / p90, ratio of medians to the first row)", header]
    for r in results:
        mark = " *" if r.variant.loops_batch else ""
        lines.append(
            f"{r.variant.name:<{name_width}}"
            f"{format_cell(r.detect, base.detect):<25}"
            f"{format_cell(r.embed_b1, base.embed_b1):<25}"
            f"{format_cell(r.embed_b8, base.embed_b8) + mark:<27}"
            f"{r.max_diff:.1e}"
        )
    if any(r.variant.loops_batch for r in results):
        lines.append("* the batch of 8 runs as 8 single-crop calls")
    return "\n".join(lines)


def run_pack(pack: str, settings: MamoruSettings, options: argparse.Namespace) -> str:
    """Build, check and time every variant of one pack; returns the printable report."""
    variants, engine = build_variants(pack, settings)
    frame = benchmark_frame(settings)
    faces = engine.detect(frame)
    crops = real_crops(engine, frame, settings)
    reference = engine.embed(crops)
    results = measure_all(variants, frame, crops, reference, options)
    notes = [
        f"frame: {GROUP_PHOTO[1]} letterboxed to {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, "
        f"{len(faces)} faces detected by mamoru; crops: {len(crops)} real aligned faces from "
        f"it and {', '.join(name for _, name in PORTRAITS)}; "
        f"{results[0].detect.samples} samples per cell ({options.rounds} interleaved rounds) "
        f"after {options.warmup} warm-up calls",
        "max|emb diff|: largest difference from mamoru's unit embeddings of the same 8 crops",
    ]
    return "\n".join([format_table(pack, results), *notes])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds the repeats are split into"
    )
    parser.add_argument("--packs", nargs="+", default=list(DEFAULT_PACKS), help="packs to time")
    args = parser.parse_args(argv)
    if min(args.repeats, args.rounds) < 1 or args.warmup < 0:
        parser.error("--repeats and --rounds must be at least 1, --warmup at least 0")
    return args


def quiet_library_logs() -> None:
    """Hide load-time warnings that would bury the table.

    The shipped SFace file makes onnxruntime warn once per weight listed as a
    graph input (what `load_model_bytes` fixes, and what the naive row shows),
    and OpenCV 5 warns about DNN targets; neither changes what is timed.
    """
    ort.set_default_logger_severity(3)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def main(argv: Sequence[str] | None = None) -> None:
    """Time every requested pack and print one table per pack."""
    args = parse_args(argv)
    quiet_library_logs()
    settings = get_settings()
    sys.stdout.write(
        f"onnxruntime {ort.__version__}, opencv {cv2.__version__}, "
        f"CPUs usable: {len(os.sched_getaffinity(0))}\n\n"
    )
    for pack in args.packs:
        sys.stdout.write(run_pack(pack, settings, args) + "\n\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

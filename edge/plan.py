"""`mamoru edge plan`: how many cameras of each stream profile this box can take.

The installer's answer before buying hardware (issue 16). For each candidate
profile (analysis stream size and frame rate, detector input) a short clip is
written at that profile (H.264 at a camera-like bit rate, by ffmpeg) from a
recorded clip or from a composed walk-past scene, then this box's own decoder
and the edge loop's own `analyse` are timed on it in CPU time (getrusage), not
wall time, so other work on the box inflates the answer less:

    per camera (ms of CPU per second) = decode ms/frame x stream fps
                                        + analysis ms/frame x analysis fps
    cameras = floor(cores x 1000 x target / per camera)

`target` (default 75 %) leaves the margin a box needs for bursts of faces,
reconnects and the outbox; the table shows the margin left at that count.
Every frame the stream sends is decoded, analysed or not, which is why a
camera set to send the analysis rate costs a fraction of one left at 25 fps.
Hardware decoders (VAAPI on x86, NVDEC on NVIDIA/Jetson) are looked for and
used through OpenCV's FFmpeg backend where present; their absence is reported.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.capture import Frame
from edge.config import CameraConfig, EdgeSettings
from edge.loop import EdgeLoop
from edge.matcher import WatchlistMatcher
from edge.outbox import Outbox
from models.engine import FaceEngine
from models.quality import QualityPolicy

PROFILE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<w>\d+)x(?P<h>\d+)@(?P<fps>\d+(\.\d+)?)"
                     r"(:(?P<dw>\d+)x(?P<dh>\d+))?$")


class PlanError(ValueError):
    """Something the installer asked for that cannot be planned (one-line message)."""


@dataclass(frozen=True)
class StreamProfile:
    """A camera stream the box would analyse: its size and rate, and the detector input."""

    name: str
    width: int
    height: int
    fps: float
    detector_input: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> StreamProfile:
        """NAME=WxH@FPS[:DETWxDETH], e.g. `sub720=1280x720@5:640x384`."""
        match = PROFILE.match(text.strip())
        if match is None:
            raise PlanError(f"{text!r}: expected NAME=WIDTHxHEIGHT@FPS[:DETWxDETH]")
        det = (int(match["dw"]), int(match["dh"])) if match["dw"] else None
        if det is not None and not all(v % 32 == 0 and 128 <= v <= 1920 for v in det):
            raise PlanError(f"{text!r}: detector input must be multiples of 32 in 128..1920")
        fps = float(match["fps"])
        if not 0 < fps <= 60:
            raise PlanError(f"{text!r}: frame rate must be in (0, 60]")
        return cls(match["name"], int(match["w"]), int(match["h"]), fps, det)

    @property
    def label(self) -> str:
        det = f", detect {self.detector_input[0]}x{self.detector_input[1]}" \
            if self.detector_input else ""
        return f"{self.width}x{self.height} @ {self.fps:g} fps{det}"


# The profiles an installer usually chooses between; the 1080p/25 main stream is the naive one.
DEFAULT_PROFILES = (
    StreamProfile("main-1080p25", 1920, 1080, 25.0),
    StreamProfile("main-1080p5", 1920, 1080, 5.0, (640, 384)),
    StreamProfile("sub-720p5", 1280, 720, 5.0, (640, 384)),
    StreamProfile("sub-360p5", 640, 360, 5.0, (640, 384)),
)


@dataclass(frozen=True)
class HardwareDecoders:
    """What hardware decoding this box offers and whether OpenCV's FFmpeg uses it."""

    vaapi: bool
    nvdec: bool
    used_by_opencv: str  # "none" or the acceleration OpenCV reported for a real open

    def describe(self) -> str:
        found = [name for name, present in (("VAAPI", self.vaapi), ("NVDEC", self.nvdec))
                 if present]
        absent = [name for name, present in (("VAAPI (no /dev/dri/renderD*)", self.vaapi),
                                             ("NVDEC (no NVIDIA/Jetson decoder device)",
                                              self.nvdec)) if not present]
        parts = []
        if found:
            parts.append(f"present: {', '.join(found)}")
        if absent:
            parts.append(f"absent: {', '.join(absent)}")
        parts.append(f"OpenCV/FFmpeg decoding with: {self.used_by_opencv}")
        return "hardware decoders " + "; ".join(parts)


def find_hardware_decoders(sample: Path | None = None) -> HardwareDecoders:
    """Look for VAAPI and NVDEC devices; with a sample clip, ask OpenCV which it used."""
    vaapi = any(Path("/dev/dri").glob("renderD*")) if Path("/dev/dri").is_dir() else False
    nvdec = any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvhost-nvdec",
                                            "/dev/nvhost-nvdec1"))
    used = "software"
    if sample is not None:
        capture = cv2.VideoCapture(str(sample), cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_HW_ACCELERATION, cv2.VIDEO_ACCELERATION_ANY])
        try:
            kind = int(capture.get(cv2.CAP_PROP_HW_ACCELERATION)) if capture.isOpened() else 0
        finally:
            capture.release()
        used = {int(cv2.VIDEO_ACCELERATION_NONE): "software",
                int(cv2.VIDEO_ACCELERATION_ANY): "hardware (any)",
                int(cv2.VIDEO_ACCELERATION_D3D11): "D3D11",
                int(cv2.VIDEO_ACCELERATION_VAAPI): "VAAPI",
                int(cv2.VIDEO_ACCELERATION_MFX): "Intel MFX"}.get(kind, f"hardware ({kind})")
    return HardwareDecoders(vaapi, nvdec, used)


@dataclass(frozen=True)
class ProfileCost:
    """What one camera of a profile costs this box, and how many it can take."""

    profile: StreamProfile
    decode_ms_per_frame: float
    analyse_ms_per_frame: float
    analysis_fps: float
    cores: int
    target: float
    face_px: float = 0.0  # median width of the faces tracked, in stream pixels
    min_face_px: float = 0.0  # the matching quality gate's smallest face

    @property
    def decode_ms_per_s(self) -> float:
        return self.decode_ms_per_frame * self.profile.fps

    @property
    def analyse_ms_per_s(self) -> float:
        return self.analyse_ms_per_frame * min(self.analysis_fps, self.profile.fps)

    @property
    def per_camera_ms_per_s(self) -> float:
        return self.decode_ms_per_s + self.analyse_ms_per_s

    @property
    def cameras(self) -> int:
        return max(0, math.floor(self.cores * 1000.0 * self.target / self.per_camera_ms_per_s))

    @property
    def machine_pct_at_capacity(self) -> float:
        return 100.0 * self.cameras * self.per_camera_ms_per_s / (self.cores * 1000.0)

    def row(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name, "stream": self.profile.label,
            "analysis_fps": min(self.analysis_fps, self.profile.fps),
            "decode_ms_per_frame": round(self.decode_ms_per_frame, 2),
            "decode_ms_per_s": round(self.decode_ms_per_s, 1),
            "analyse_ms_per_frame": round(self.analyse_ms_per_frame, 2),
            "analyse_ms_per_s": round(self.analyse_ms_per_s, 1),
            "per_camera_pct_machine": round(self.per_camera_ms_per_s / (self.cores * 10.0), 1),
            "cameras": self.cameras,
            "machine_pct_at_capacity": round(self.machine_pct_at_capacity, 1),
            "margin_pct": round(100.0 - self.machine_pct_at_capacity, 1),
            "median_face_px": round(self.face_px, 1), "faces_too_small": self.faces_too_small,
        }

    @property
    def faces_too_small(self) -> bool:
        """Faces this small are detected but mostly fail the matching gate: recall drops."""
        return self.face_px < 1.25 * self.min_face_px


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode_profile(source: Path, profile: StreamProfile, out: Path, seconds: float) -> Path:
    """`source` re-encoded as the camera would send it: H.264, this size and rate."""
    if shutil.which("ffmpeg") is None:
        raise PlanError("ffmpeg is needed to write the profile clips (apt-get install ffmpeg)")
    pixels = profile.width * profile.height
    bitrate = f"{max(300, round(4000 * pixels / (1920 * 1080)))}k"
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-stream_loop", "-1", "-i", str(source),
         "-t", f"{seconds:g}", "-vf", f"scale={profile.width}:{profile.height}:flags=area",
         "-r", f"{profile.fps:g}", "-c:v", "libx264", "-preset", "veryfast", "-b:v", bitrate,
         "-maxrate", bitrate, "-bufsize", "2M", "-g", str(max(1, round(2 * profile.fps))),
         "-pix_fmt", "yuv420p", str(out)],
        check=True,
    )
    return out


def measure_decode(clip: Path, hw: bool) -> tuple[float, list[np.ndarray[Any, Any]]]:
    """CPU ms per decoded frame of `clip`, and the frames (kept for the analysis timing)."""
    params = [cv2.CAP_PROP_HW_ACCELERATION,
              cv2.VIDEO_ACCELERATION_ANY if hw else cv2.VIDEO_ACCELERATION_NONE]
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG, params)
    frames: list[np.ndarray[Any, Any]] = []
    started = _cpu_s()
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
    finally:
        capture.release()
    if not frames:
        raise PlanError(f"no frame could be decoded from {clip}")
    return 1000.0 * (_cpu_s() - started) / len(frames), frames


def measure_analysis(loop: EdgeLoop, frames: Sequence[np.ndarray[Any, Any]], stream_fps: float,
                     analysis_fps: float) -> tuple[float, float]:
    """CPU ms per analysed frame (the loop's own `analyse` on every (fps/analysis)-th frame),
    and the median width of the faces it tracked, in stream pixels."""
    lane = loop.lanes[0]
    stride = max(1, round(stream_fps / analysis_fps))
    picked = list(range(0, len(frames), stride))
    t0, wall0 = 0.0, datetime.now(UTC)
    loop.analyse(lane, Frame(lane.reader.name, 0, t0, wall0, np.asarray(frames[0], np.uint8)))
    widths: list[float] = []
    cpu = 0.0
    for i in picked:
        offset = i / stream_fps
        frame = Frame(lane.reader.name, i + 1, 1000.0 + offset, wall0 + timedelta(seconds=offset),
                      np.asarray(frames[i], np.uint8))
        started = _cpu_s()
        loop.analyse(lane, frame)
        cpu += _cpu_s() - started
        widths.extend(float(t.box[2] - t.box[0]) for t in lane.tracker.tracks)
    return 1000.0 * cpu / len(picked), float(np.median(widths)) if widths else 0.0


def planning_loop(engine: FaceEngine, settings: EdgeSettings, policy: QualityPolicy,
                  profile: StreamProfile, folder: Path) -> EdgeLoop:
    """The real edge loop's analysis with an empty watchlist and a throw-away outbox.

    Nothing matches (no index is published in `folder`), so what is timed is
    detection, tracking, the quality gate and embedding; a search of a small
    watchlist adds well under a millisecond.
    """
    camera = CameraConfig(name="plan", url=str(folder / "plan.mp4"),
                          detector_input=profile.detector_input)
    matcher = WatchlistMatcher(folder / "no-index.idx", os.urandom(32), pack=engine.info.pack,
                               poll_s=3600.0)
    outbox = Outbox(folder / "outbox", os.urandom(32), None)
    return EdgeLoop(settings, [camera], engine=engine, matcher=matcher, outbox=outbox,
                    matching_policy=policy)


def plan(engine: FaceEngine, settings: EdgeSettings, policy: QualityPolicy, source: Path,
         profiles: Sequence[StreamProfile], *, seconds: float, target: float,
         cores: int | None = None) -> tuple[list[ProfileCost], HardwareDecoders]:
    """Time each profile on this box; the cost of one camera of each and how many fit."""
    cores = cores or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="mamoru-plan-") as name:
        folder = Path(name)
        costs = []
        hardware: HardwareDecoders | None = None
        for profile in profiles:
            clip = encode_profile(source, profile, folder / f"{profile.name}.mp4", seconds)
            if hardware is None:
                hardware = find_hardware_decoders(clip)
            use_hw = hardware.used_by_opencv != "software"
            decode_ms, frames = measure_decode(clip, use_hw)
            loop = planning_loop(engine, settings, policy, profile, folder / profile.name)
            analysis_fps = settings.analysis_fps
            analyse_ms, face_px = measure_analysis(loop, frames, profile.fps, analysis_fps)
            del frames
            costs.append(ProfileCost(profile, decode_ms, analyse_ms, analysis_fps, cores, target,
                                     face_px, policy.min_face_px))
    assert hardware is not None
    return costs, hardware


def plan_table(costs: Sequence[ProfileCost]) -> str:
    """The installer's table, one row per profile."""
    headers = ("profile", "stream", "analysed fps", "decode ms/s", "analysis ms/s",
               "% of box per camera", "cameras", "box used at that count", "margin",
               "median face px")
    rows = [[c.profile.name, c.profile.label, f"{min(c.analysis_fps, c.profile.fps):g}",
             f"{c.decode_ms_per_s:.0f}", f"{c.analyse_ms_per_s:.0f}",
             f"{c.per_camera_ms_per_s / (c.cores * 10.0):.1f} %", str(c.cameras),
             f"{c.machine_pct_at_capacity:.0f} %", f"{100 - c.machine_pct_at_capacity:.0f} %",
             f"{c.face_px:.0f}" + (" (too small: recall drops)" if c.faces_too_small else "")]
            for c in costs]
    cells = [list(headers)] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def load_hint() -> str:
    """How busy the box was while it was measured (CPU time is less affected than wall)."""
    one, _, _ = os.getloadavg()
    return f"load average {one:.2f} on {os.cpu_count()} cores while measuring"


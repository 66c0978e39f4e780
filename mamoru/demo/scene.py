"""Real test clips for the edge loop, composed from the real face photos.

A scene is a still background with strangers' photos standing in it for the
whole clip and the listed person's photo crossing the frame for a while, written
with OpenCV ('mp4v', as a camera-side recorder would) so the RTSP test server
can serve it. The returned `SceneTruth` says where and when the listed person
is, to check what the edge loop reports against.

    listed, strangers = cast(face_data)              # obama2.jpg + 3 CTU strangers
    truth = compose_walk_past(tmp_path / "walk.mp4", listed, strangers)

Obama is the listed person of the tests: register him from obama.jpg and use
obama2.jpg / obama3.jpg in clips, so the clip never shows the registered photo.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from mamoru.face_data import data_root
from mamoru.images import read_image
from mamoru.settings import get_settings
from mamoru.wiring import open_engine
from models.engine import FaceEngine

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels, x2/y2 exclusive

BACKGROUND = Path("pyfeat/free-mountain-vector-01.jpg")  # a landscape drawing, no faces
LISTED_PHOTOS = ("face_recognition/obama2.jpg", "face_recognition/obama3.jpg")
LISTED_HEIGHT = 220  # pasted photo heights in pixels: faces of ~120 and ~100 px
STRANGER_HEIGHT = 180


@dataclass(frozen=True)
class FaceCrop:
    """A photo cropped around its one face (head and shoulders), and where the face is in it."""

    image: Image = field(repr=False)
    face: Box

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class SceneTruth:
    """What is in a composed clip, frame by frame (frame i is at i / fps seconds)."""

    path: Path
    fps: int
    size: tuple[int, int]  # width, height
    frame_count: int
    listed_boxes: dict[int, Box]  # frame -> the listed person's face; only frames showing it
    stranger_boxes: list[dict[int, Box]]  # per stranger: frame -> face, every frame

    @property
    def listed_frames(self) -> list[int]:
        return sorted(self.listed_boxes)

    @property
    def listed_times(self) -> list[float]:
        return [i / self.fps for i in self.listed_frames]

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    def listed_visible(self, frame: int) -> bool:
        return frame in self.listed_boxes

    def faces_in(self, frame: int) -> int:
        return len(self.stranger_boxes) + self.listed_visible(frame)


@functools.cache
def default_engine() -> FaceEngine:
    """The configured engine, opened once per test session."""
    return open_engine(get_settings())


def crop_face(photo: Image, height: int, engine: FaceEngine | None = None) -> FaceCrop:
    """`photo` cut around its largest face and scaled to `height` pixels.

    The cut keeps room around the face (forehead, chin, shoulders), as a
    camera sees a person, so the detector has context. Out-of-photo parts are
    filled by replicating the border.
    """
    faces = (engine or default_engine()).detect(photo)
    if not faces:
        raise ValueError("no face in the photo")
    x1, y1, x2, y2 = max(faces, key=lambda f: f.size_px).box.tolist()
    face_h = y2 - y1
    top, bottom = y1 - 0.45 * face_h, y2 + 0.35 * face_h
    cut_h = bottom - top
    cut_w = 0.8 * cut_h
    left = (x1 + x2) / 2 - cut_w / 2
    box = [round(left), round(top), round(left + cut_w), round(bottom)]
    pad = max(0, -box[0], -box[1], box[2] - photo.shape[1], box[3] - photo.shape[0])
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else photo
    cut = padded[box[1] + pad : box[3] + pad, box[0] + pad : box[2] + pad]
    scale = height / cut.shape[0]
    width = round(cut.shape[1] * scale)
    image = np.asarray(cv2.resize(cut, (width, height), interpolation=cv2.INTER_AREA), np.uint8)
    face = (
        round((x1 - box[0]) * scale),
        round((y1 - box[1]) * scale),
        round((x2 - box[0]) * scale),
        round((y2 - box[1]) * scale),
    )
    return FaceCrop(image, face)


def cast(face_data: Path, strangers: int = 3, listed: int = 0) -> tuple[Image, list[Image]]:
    """The listed person's clip photo (obama2.jpg; obama3.jpg with listed=1) and
    `strangers` CTU photos, always the same ones. The CTU file names carry no
    identity; taking each from a different name group spreads them out."""
    groups: dict[str, Path] = {}
    for path in sorted((face_data / "ctu_unknowns").glob("*.jpg")):
        groups.setdefault("_".join(path.stem.lower().split("_")[:2]), path)
    chosen = list(groups.values())[:: max(1, len(groups) // max(1, strangers))][:strangers]
    if len(chosen) < strangers:
        raise ValueError(f"only {len(chosen)} stranger photos under {face_data}")
    return read_image(face_data / LISTED_PHOTOS[listed]), [read_image(p) for p in chosen]


def background(size: tuple[int, int], face_data: Path | None = None) -> Image:
    """A real picture without faces, at `size` (width, height)."""
    root = face_data or data_root(get_settings().cache_dir)
    still = cv2.resize(read_image(root / BACKGROUND), size, interpolation=cv2.INTER_AREA)
    return np.asarray(still, np.uint8)


def compose_walk_past(
    out: Path,
    listed: Image,
    strangers: Sequence[Image],
    *,
    size: tuple[int, int] = (1280, 720),
    fps: int = 10,
    seconds: float = 8,
    listed_enters_at: float = 2.0,
    listed_leaves_at: float = 6.0,
    engine: FaceEngine | None = None,
    face_data: Path | None = None,
) -> SceneTruth:
    """Write a clip of strangers standing about while the listed person walks past.

    Strangers stand in a row across the top half, swaying a little (a few
    pixels a second) for the whole clip. The listed person is in the frame,
    whole, from `listed_enters_at` (inclusive) to `listed_leaves_at`
    (exclusive), crossing the bottom half from left to right. Photos are the
    real ones given, cut around their faces by the project's detector.
    """
    width, height = size
    frame_count = round(seconds * fps)
    first, last = round(listed_enters_at * fps), min(round(listed_leaves_at * fps), frame_count)
    if not 0 <= first < last:
        raise ValueError("the listed person must enter before leaving, inside the clip")
    walker = crop_face(listed, LISTED_HEIGHT, engine)
    standing = [crop_face(photo, STRANGER_HEIGHT, engine) for photo in strangers]
    slot = width / max(1, len(standing))
    too_wide = any(crop.width + 40 > slot for crop in standing)
    if too_wide or walker.height + STRANGER_HEIGHT + 60 > height:
        raise ValueError(f"{len(standing)} strangers and the listed person do not fit in {size}")

    stranger_boxes: list[dict[int, Box]] = [{} for _ in standing]
    listed_boxes: dict[int, Box] = {}
    still = background(size, face_data)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {out}")
    try:
        for i in range(frame_count):
            frame = still.copy()
            for k, crop in enumerate(standing):
                sway = round(12 * np.sin(2 * np.pi * (i / fps) / 6 + k))
                x = round(slot * k + (slot - crop.width) / 2) + sway
                stranger_boxes[k][i] = _paste(frame, crop, x, 30 + 10 * (k % 2))
            if first <= i < last:
                progress = (i - first) / max(1, last - 1 - first)
                x = round(20 + progress * (width - walker.width - 40))
                listed_boxes[i] = _paste(frame, walker, x, height - walker.height - 20)
            writer.write(frame)
    finally:
        writer.release()
    return SceneTruth(out, fps, size, frame_count, listed_boxes, stranger_boxes)


def _paste(frame: Image, crop: FaceCrop, x: int, y: int) -> Box:
    """Put `crop` at (x, y) of `frame`, wholly inside it; the face's box in the frame."""
    x = min(max(0, x), frame.shape[1] - crop.width)
    y = min(max(0, y), frame.shape[0] - crop.height)
    frame[y : y + crop.height, x : x + crop.width] = crop.image
    fx1, fy1, fx2, fy2 = crop.face
    return (x + fx1, y + fy1, x + fx2, y + fy2)

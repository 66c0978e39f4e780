"""`mamoru demo`: the main job on the embedded default.

For now: the face engine on a real demo clip (a person walking into view),
printing the faces it finds. Later issues turn this into the full demo
(camera stream, encrypted registry, tablet).
"""

from __future__ import annotations

from typing import Annotated

import cv2
import typer

from mamoru.face_data import FACE_DATA, fetch_dataset
from mamoru.settings import get_settings
from mamoru.wiring import open_engine

DEMO_SET = "pyfeat"
DEMO_CLIP = "WolfgangLanger_Pexels.mp4"


def run(
    every: Annotated[int, typer.Option(min=1, help="analyse every n-th frame")] = 10,
    max_frames: Annotated[int, typer.Option(min=1, help="stop after this many frames")] = 500,
) -> None:
    """Fetch the default pack and a real demo clip, then print the faces found."""
    settings = get_settings()
    dataset = next(d for d in FACE_DATA if d.name == DEMO_SET)
    clip = fetch_dataset(dataset, settings.cache_dir) / DEMO_CLIP
    engine = open_engine(settings)
    typer.echo(f"engine: pack {engine.info.pack}, licence: {engine.info.licence}")
    typer.echo(f"clip: {clip}")
    capture = cv2.VideoCapture(str(clip))
    index = analysed = found = 0
    try:
        while index < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                analysed += 1
                faces = engine.detect(frame)
                found += len(faces)
                for face in faces:
                    verdict = engine.assess(frame, face, settings.quality.matching)
                    state = "ok" if verdict.passed else "; ".join(verdict.reasons)
                    typer.echo(
                        f"frame {index:4d}: face {face.size_px:.0f}px score {face.score:.2f} "
                        f"quality {state}"
                    )
            index += 1
    finally:
        capture.release()
    typer.echo(f"{analysed} frames analysed, {found} faces found")

"""`mamoru faces ...`: the face engine for people and scripts."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from mamoru.images import BadImageError, read_image
from mamoru.settings import get_settings
from mamoru.wiring import open_engine
from models.engine import FaceEngine, cosine
from models.face import DetectedFace

app = typer.Typer(help="Detect and compare faces with the active model pack.")

PackOption = Annotated[str | None, typer.Option(help="model pack; default: the configured one")]
AcceptOption = Annotated[
    bool, typer.Option("--accept-licence", help="accept the pack's non-commercial licence")
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


class Policy(str, Enum):
    registration = "registration"
    matching = "matching"


class NoFaceError(BadImageError):
    """The image is readable but holds no face the detector can find."""


def _emit(payload: dict[str, Any]) -> None:
    json.dump(payload, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _engine_line(engine: FaceEngine) -> str:
    info = engine.info
    return f"pack {info.pack} (licence: {info.licence}); threshold {info.threshold:.3f}"


@app.command("detect")
def detect(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    policy: Annotated[Policy, typer.Option(help="quality limits to apply")] = Policy.registration,
    pack: PackOption = None,
    accept_licence: AcceptOption = False,
    as_json: JsonOption = False,
) -> None:
    """Every face with box, landmarks, detector score and the quality verdict."""
    settings = get_settings()
    limits = getattr(settings.quality, policy.value)
    loaded = [(path, read_image(path)) for path in images]
    engine = open_engine(settings, pack=pack, accept_licence=accept_licence)
    results: list[dict[str, Any]] = []
    for path, image in loaded:
        faces = [
            {**face.to_dict(), "quality": engine.assess(image, face, limits).to_dict()}
            for face in engine.detect(image)
        ]
        results.append({"image": str(path), "faces": faces})
    if as_json:
        _emit({"engine": engine.info.to_dict(), "policy": policy.value, "images": results})
    else:
        typer.echo(_engine_line(engine))
        for result in results:
            typer.echo(f"{result['image']}: {len(result['faces'])} face(s)")
            for i, face in enumerate(result["faces"], 1):
                quality = face["quality"]
                verdict = ("passes" if quality["passed"]
                           else "fails: " + "; ".join(quality["reasons"]))
                x1, y1, x2, y2 = face["box"]
                typer.echo(
                    f"  #{i} box ({x1:.0f},{y1:.0f})-({x2:.0f},{y2:.0f}) score {face['score']:.2f} "
                    f"size {quality['face_px']:.0f}px sharpness {quality['sharpness']:.0f} "
                    f"yaw {quality['yaw_deg']:+.0f} pitch {quality['pitch_deg']:+.0f}; "
                    f"{policy.value} gate {verdict}"
                )
    empty = [r["image"] for r in results if not r["faces"]]
    if empty:
        raise NoFaceError(f"no face found in {', '.join(empty)}")


def _best_face(engine: FaceEngine, path: Path, image: npt.NDArray[np.uint8]) -> DetectedFace:
    """The main subject: the largest face, which is what a person means by 'the face'."""
    faces = engine.detect(image)
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    return max(faces, key=lambda f: f.size_px)


@app.command("compare")
def compare(
    image_a: Annotated[Path, typer.Argument(help="first image")],
    image_b: Annotated[Path, typer.Argument(help="second image")],
    pack: PackOption = None,
    accept_licence: AcceptOption = False,
    as_json: JsonOption = False,
) -> None:
    """Similarity of the main face in each image against the pack's threshold."""
    settings = get_settings()
    images = [read_image(image_a), read_image(image_b)]
    engine = open_engine(settings, pack=pack, accept_licence=accept_licence)
    faces = [_best_face(engine, p, img) for p, img in zip((image_a, image_b), images, strict=True)]
    verdicts = [
        engine.assess(img, face, settings.quality.matching)
        for img, face in zip(images, faces, strict=True)
    ]
    embeddings = (engine.embed_faces(images[0], [faces[0]])[0],
                  engine.embed_faces(images[1], [faces[1]])[0])
    similarity = cosine(*embeddings)
    reasons = [f"{p.name}: {r}"
               for p, v in zip((image_a, image_b), verdicts, strict=True) for r in v.reasons]
    if reasons:
        verdict, reason = "unusable", "; ".join(reasons)
    elif similarity >= engine.threshold:
        verdict, reason = "same", f"similarity {similarity:.3f} >= threshold {engine.threshold:.3f}"
    else:
        verdict, reason = (
            "different", f"similarity {similarity:.3f} < threshold {engine.threshold:.3f}")
    if as_json:
        _emit(
            {
                "engine": engine.info.to_dict(),
                "similarity": round(similarity, 4),
                "threshold": engine.threshold,
                "verdict": verdict,
                "reason": reason,
                "faces": [
                    {"image": str(p), **f.to_dict(), "quality": v.to_dict()}
                    for p, f, v in zip((image_a, image_b), faces, verdicts, strict=True)
                ],
            }
        )
        return
    typer.echo(_engine_line(engine))
    typer.echo(f"{verdict}: {reason}")

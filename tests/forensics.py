"""What an auditor (or an erasure requester's lawyer) does with a box: open every file.

`faces_of` walks folders, opens each file every way mamoru could have
written it (any sealed kind, `kernel.sealed`, named by its magic, this format
or the previous one, under every derived key and every context a file can be
sealed to: none, its name, its stem; plain images too), decodes whatever is an image, and
runs the real engine on it: a file "still holds him" when a face in it
matches his embedding at the engine's threshold. Lifetime tests assert that
this finds nothing once a copy's lifetime has ended.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from kernel.errors import SealedFileError
from kernel.sealed import OUTBOX, Sealer, kind_of
from models.engine import FaceEngine
from registry.keys.master import MasterKey

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Finding:
    path: Path
    score: float


def plaintexts(path: Path, keys: list[bytes]) -> Iterator[bytes]:
    """Every plaintext this file yields under any key and format mamoru uses, and itself."""
    blob = path.read_bytes()
    yield blob
    kind = kind_of(blob)
    if kind is None:
        return
    contexts = {b"", path.name.encode(), path.name.partition(".")[0].encode()}
    for key in keys:
        for context in contexts:
            try:
                plain = Sealer(kind, key).open(blob, name=path.name, context=context)
            except SealedFileError:
                continue
            yield plain
            if kind == OUTBOX:  # an alert: the snapshot is base64 PNG in JSON
                try:
                    snapshot = json.loads(plain)["snapshot_png_b64"]
                    yield base64.b64decode(snapshot, validate=True)
                except (ValueError, KeyError, TypeError, binascii.Error):
                    pass


def images_in(path: Path, keys: list[bytes]) -> Iterator[Image]:
    for plain in plaintexts(path, keys):
        if not plain:
            continue
        decoded = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        if decoded is not None:
            yield decoded


def all_keys(master: MasterKey) -> list[bytes]:
    return [master.derive(purpose)
            for purpose in ("evidence", "edge", "backup", "index", "joint-use")]


def faces_of(embedding: npt.NDArray[np.float32], roots: list[Path], master: MasterKey,
             engine: FaceEngine, *, skip: frozenset[Path] = frozenset()) -> list[Finding]:
    """Files under `roots` that decrypt to an image in which the engine finds this person."""
    found: list[Finding] = []
    keys = all_keys(master)
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in skip):
            for image in images_in(path, keys):
                faces = engine.detect(image)
                if not faces:
                    continue
                scores = engine.embed_faces(image, faces) @ embedding
                if float(scores.max()) >= engine.threshold:
                    found.append(Finding(path, float(scores.max())))
    return found


def images_equal_to(target: Image, roots: list[Path], master: MasterKey) -> list[Path]:
    """Files under `roots` that decrypt to exactly this image (e.g. a dismissed snapshot)."""
    keys = all_keys(master)
    return [path for root in roots for path in sorted(root.rglob("*")) if path.is_file()
            for image in images_in(path, keys)
            if image.shape == target.shape and np.array_equal(image, target)]

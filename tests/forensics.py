"""What an auditor (or an erasure requester's lawyer) does with a box: open every file.

`faces_of` walks folders, decrypts each file every way mamoru could have
written it (evidence/snapshot files under the evidence and edge keys, outbox
files under the edge key, plain images), decodes whatever is an image, and
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
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kernel.evidence import AAD_PREFIX
from kernel.evidence import MAGIC as EVIDENCE_MAGIC
from models.engine import FaceEngine
from registry.keys.master import MasterKey

Image = npt.NDArray[np.uint8]
_NONCE = 12
_OUTBOX_MAGIC = b"MOB1"


@dataclass(frozen=True)
class Finding:
    path: Path
    score: float


def _decrypt(key: bytes, blob: bytes, magic: bytes, aad: bytes) -> bytes | None:
    if not blob.startswith(magic) or len(blob) < len(magic) + _NONCE + 16:
        return None
    nonce = blob[len(magic) : len(magic) + _NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(magic) + _NONCE :], aad)
    except InvalidTag:
        return None


def plaintexts(path: Path, keys: list[bytes]) -> Iterator[bytes]:
    """Every plaintext this file yields under any key and format mamoru uses, and itself."""
    blob = path.read_bytes()
    yield blob
    stem = path.name[: -len(".bin")] if path.name.endswith(".bin") else path.stem
    for key in keys:
        for magic, aad in ((EVIDENCE_MAGIC, AAD_PREFIX + stem.encode()),
                           (_OUTBOX_MAGIC, path.name.encode())):
            plain = _decrypt(key, blob, magic, aad)
            if plain is None:
                continue
            yield plain
            if magic == _OUTBOX_MAGIC:  # an alert: the snapshot is base64 PNG in JSON
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
    return [master.derive(purpose) for purpose in ("evidence", "edge", "backup", "index")]


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

"""Encrypted evidence images on disk.

Evidence images (the masked photo a registration rests on, later alert
snapshots) are raw images outside the database, so they are protected the
same way as the database: encrypted at rest (G-SEC-2). A stolen NVR box then
holds ciphertext, not faces, which is what keeps a theft from becoming a
reportable leak of every registered face (G-BRE-3).

One file `<image_id>.bin` is a sealed file (`kernel.sealed`, kind
EVIDENCE) of the PNG bytes. Its context is the image id, so a file renamed
to another id (swapping the evidence of two entries) fails authentication
instead of showing the wrong person.

Images are decrypted in memory only; no plaintext ever touches the disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from kernel.durable import make_private_dir, wipe_file
from kernel.errors import RegistryError, SealedFileError
from kernel.png import PngError, clean_png
from kernel.sealed import EVIDENCE, Sealer

KEY_BYTES = 32  # AES-256
SUFFIX = ".bin"
_ID_PATTERN = re.compile(r"[0-9a-f-]{8,64}")


class EvidenceError(RegistryError):
    """An evidence image cannot be stored or read."""


class EvidenceNotFoundError(EvidenceError):
    """No evidence image is stored under this id (never stored, or erased)."""


class EvidenceIntegrityError(EvidenceError):
    """A stored file fails authentication: altered, renamed, or under another key. Refused."""


@dataclass(frozen=True)
class StoredImage:
    """What the registry records about a stored image: its id and a hash, not the picture.

    `sha256` is over the encoded (masked) PNG bytes before encryption, so the
    audit trail can prove which image an entry rests on without holding it.
    """

    image_id: str
    sha256: str


def validate_image_id(image_id: str) -> str:
    """Return `image_id` if it is a plain hex/uuid-like name; `ValueError` otherwise.

    Ids become file names, so anything that could be a path ("../x", "/etc")
    is refused before it reaches the file system.
    """
    if not isinstance(image_id, str) or _ID_PATTERN.fullmatch(image_id) is None:
        raise ValueError(
            "image_id must be 8 to 64 characters of lower-case hex digits and '-' "
            f"(got {image_id!r})"
        )
    return image_id


@dataclass(frozen=True)
class EncodedPng:
    """PNG bytes ready to be kept as evidence: encoded here (`EncodedPng.of`: lossless PNG
    of its pixels), or received and cleaned (`kernel.png.clean_png`).

    `put` stores it as it is, so that work (milliseconds of CPU for a camera
    frame) runs before the registry's writer turn is taken (an alert's
    snapshot, registry.alerts.queue.ReceivedSnapshot).
    """

    data: bytes = field(repr=False)

    @classmethod
    def of(cls, image: npt.NDArray[np.uint8]) -> EncodedPng:
        return cls(encode_png(image))


class EvidenceImages(ABC):
    """Where the registry keeps its sealed evidence images: this folder store, or a chain's
    database (`registry.storage.postgres.evidence`). Same sealing, same ids, same errors;
    a back-end says only how sealed bytes are kept (`_put_new`, `get_bytes`, ...)."""

    def put(self, image: npt.NDArray[np.uint8] | EncodedPng, *,
            image_id: str | None = None) -> StoredImage:
        """Encrypt and store one image as lossless PNG; refuses to overwrite an existing id.

        Evidence is write-once: replacing it under the same id would break the
        hash the audit trail recorded. Erase and store under a new id instead.
        An `EncodedPng` is stored as it was encoded.
        """
        image_id = validate_image_id(image_id) if image_id is not None else uuid.uuid4().hex
        png = image.data if isinstance(image, EncodedPng) else encode_png(image)
        return self._put_new(image_id, png)

    def put_png(self, png: bytes, *, image_id: str | None = None) -> StoredImage:
        """Encrypt and store PNG bytes from outside (e.g. a joint-use member's evidence).

        Only the picture is kept (`kernel.png.clean_png`: the chunks that make it,
        no text, Exif or times, nothing after its end), and it must decode as an
        8-bit image. The pixels are not re-encoded: a PNG as mamoru writes it is
        kept byte for byte, so its SHA-256 is the same as at the store that made it.
        """
        image_id = validate_image_id(image_id) if image_id is not None else uuid.uuid4().hex
        try:
            kept = clean_png(png)
        except PngError as exc:
            raise EvidenceError(str(exc)) from None
        return self._put_new(image_id, kept)

    def get(self, image_id: str) -> npt.NDArray[np.uint8]:
        """The stored image, decrypted in memory (pixel-exact)."""
        return decode_png(image_id, self.get_bytes(image_id))

    @abstractmethod
    def get_bytes(self, image_id: str) -> bytes:
        """The decrypted PNG bytes, e.g. to serve over HTTPS without re-encoding."""

    @abstractmethod
    def delete(self, image_id: str) -> bool:
        """Erase an image for real (G-REG-4). Idempotent."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every stored image id."""

    @abstractmethod
    def _put_new(self, image_id: str, png: bytes) -> StoredImage:
        """Seal and keep new PNG bytes under an id not yet used."""


class EvidenceStore(EvidenceImages):
    """A folder of AES-256-GCM encrypted PNG images, one file per image id."""

    def __init__(self, folder: Path, key: bytes) -> None:
        """`key` is 32 bytes the caller derived from the master key (HKDF), never the master key."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"evidence key must be {KEY_BYTES} bytes")
        self.folder = Path(folder)
        make_private_dir(self.folder)
        os.chmod(self.folder, 0o700)  # it may exist from before, made with a looser mode
        self._sealer = Sealer(EVIDENCE, bytes(key))

    def __repr__(self) -> str:
        return f"EvidenceStore(folder={str(self.folder)!r})"  # never the key

    def get_bytes(self, image_id: str) -> bytes:
        """The decrypted PNG bytes, e.g. to serve over HTTPS without re-encoding."""
        return self._open(image_id, self._read(image_id), self._sealer)

    def delete(self, image_id: str) -> bool:
        """Erase an image for real (G-REG-4): zero its bytes, fsync, unlink. Idempotent.

        Returns True if a file existed. On flash storage and copy-on-write or
        journaling file systems the overwrite may not reach every old block;
        what makes any remnant unreadable is the encryption, and rotating the
        key (`rekey`) and destroying the old one erases such remnants too.
        """
        return wipe_file(self.path(image_id))

    def ids(self) -> set[str]:
        """Ids of the images present, to sweep orphans (stored but never recorded) after a crash."""
        found: set[str] = set()
        for entry in self.folder.iterdir():
            stem = entry.name[: -len(SUFFIX)] if entry.name.endswith(SUFFIX) else ""
            if _ID_PATTERN.fullmatch(stem) and entry.is_file():
                found.add(stem)
        return found

    def rekey(self, new_key: bytes) -> EvidenceStore:
        """Re-encrypt every image under `new_key`, each file atomically; returns the new store.

        Resumable: a file that already opens under the new key is left as it
        is, so after a crash half-way the same call finishes the job. Keep the
        old key until this returns, then destroy it.
        """
        new_store = EvidenceStore(self.folder, new_key)
        for image_id in sorted(self.ids()):
            blob = self._read(image_id)
            try:
                self._open(image_id, blob, new_store._sealer)
                continue  # already under the new key
            except EvidenceIntegrityError:
                pass
            new_store._write(image_id, self._open(image_id, blob, self._sealer))
        return new_store

    def path(self, image_id: str) -> Path:
        """The file of one image id (which need not exist): the one place that names it."""
        return self.folder / f"{validate_image_id(image_id)}{SUFFIX}"

    def _put_new(self, image_id: str, png: bytes) -> StoredImage:
        if self.path(image_id).exists():
            raise EvidenceError(f"evidence {image_id} already exists; evidence is write-once")
        self._write(image_id, png)
        return StoredImage(image_id=image_id, sha256=hashlib.sha256(png).hexdigest())

    @staticmethod
    def _open(image_id: str, blob: bytes, sealer: Sealer) -> bytes:
        try:
            return sealer.open(blob, name=f"evidence {image_id}", context=image_id.encode())
        except SealedFileError as exc:
            raise EvidenceIntegrityError(str(exc)) from None

    def _read(self, image_id: str) -> bytes:
        try:
            return self.path(image_id).read_bytes()
        except FileNotFoundError:
            raise EvidenceNotFoundError(f"no evidence image {image_id}") from None

    def _write(self, image_id: str, png: bytes) -> None:
        """Sealed to its id; a crash leaves the old file or the new one, never half of one."""
        self._sealer.write(self.path(image_id), png, context=image_id.encode())


def decode_png(image_id: str, png: bytes) -> npt.NDArray[np.uint8]:
    """The pixels of a decrypted evidence image; a non-PNG or non-8-bit one is refused."""
    decoded = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise EvidenceIntegrityError(f"evidence {image_id} decrypted but is not a PNG image")
    if decoded.dtype != np.uint8:
        raise EvidenceIntegrityError(f"evidence {image_id} is not an 8-bit PNG image")
    return decoded.astype(np.uint8, copy=False)


def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    """Lossless PNG in memory: evidence must round-trip pixel-exactly."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise EvidenceError("an evidence image must be a uint8 numpy array")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise EvidenceError(f"an evidence image must be HxW or HxWx(3|4), got {image.shape}")
    if image.size == 0:
        raise EvidenceError("an evidence image must not be empty")
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise EvidenceError("the image could not be encoded as PNG")
    return encoded.tobytes()

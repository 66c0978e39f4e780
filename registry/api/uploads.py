"""Photos uploaded by people (registration evidence, quality checks): checked before decoding.

An upload is refused with a clear 4xx when it is larger than `MAX_PHOTO_BYTES`,
is not an image a camera or phone produces (JPEG, PNG, WebP, BMP, TIFF,
PGM/PPM), or declares more pixels than `MAX_PHOTO_PIXELS` (a small file can
inflate to gigabytes). The header is read first, so nothing huge is decoded.

    photo = photo_from_upload(upload)          # approval.Photo, BGR pixels
"""

from __future__ import annotations

import io
import warnings
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from fastapi import UploadFile
from PIL import Image as PILImage
from starlette.formparsers import MultiPartParser

from kernel.errors import RuleViolationError
from registry.watchlist.approval import Photo

MAX_PHOTO_BYTES = 8 * 1024 * 1024
MAX_PHOTOS = 5
MAX_PHOTO_PIXELS = 40_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "PPM", "MPO"})
_MAX_LABEL_CHARS = 80


# Starlette spools an uploaded file part to a temporary file on disk past 1 MB; a phone
# photo of a face is often larger, and that clear copy would outlive the request on the
# disk's blocks. Every accepted photo fits in memory (MAX_PHOTO_BYTES each, MAX_PHOTOS per
# request, and the body limit refuses more), so parts stay in memory up to that size.
# Issue 10 ("temporary files of uploads"): tests/registry/test_upload_lifetime.py.
MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, MAX_PHOTO_BYTES + 64 * 1024)


class NotAnImageError(RuleViolationError):
    """The upload is not a photo the registry can read."""


class UploadTooLargeError(RuleViolationError):
    """The upload, or the image in it, is larger than accepted."""


def _label(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").strip()
    printable = "".join(c for c in name if c.isprintable())[:_MAX_LABEL_CHARS]
    return printable or f"photo {index + 1}"


def decode_photo(data: bytes, label: str) -> npt.NDArray[np.uint8]:
    """BGR pixels of an uploaded photo, or a typed refusal that says why not."""
    if len(data) > MAX_PHOTO_BYTES:
        raise UploadTooLargeError(
            f"{label}: too large ({len(data)} bytes); at most {MAX_PHOTO_BYTES // (1024 * 1024)} "
            "MB per photo"
        )
    if not data:
        raise NotAnImageError(f"{label}: not an image (the file is empty)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PILImage.open(io.BytesIO(data)) as header:  # reads the header only
                kind, (width, height) = header.format, header.size
    except Exception:  # PIL raises many types for non-images; all mean the same here
        raise NotAnImageError(
            f"{label}: not an image (send a JPEG or PNG photo)"
        ) from None
    if kind not in ACCEPTED_FORMATS:
        raise NotAnImageError(f"{label}: not a photo format the registry reads ({kind})")
    if width * height > MAX_PHOTO_PIXELS:
        raise UploadTooLargeError(
            f"{label}: too large ({width}x{height} pixels); at most {MAX_PHOTO_PIXELS} pixels"
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise NotAnImageError(f"{label}: not an image (it is damaged and does not decode)")
    return cast(npt.NDArray[np.uint8], image)


def photo_from_upload(upload: UploadFile, index: int = 0) -> Photo:
    """Read one uploaded file (at most `MAX_PHOTO_BYTES` are read) as a registration photo."""
    label = _label(upload, index)
    if upload.size is not None and upload.size > MAX_PHOTO_BYTES:
        raise UploadTooLargeError(
            f"{label}: too large ({upload.size} bytes); at most "
            f"{MAX_PHOTO_BYTES // (1024 * 1024)} MB per photo"
        )
    upload.file.seek(0)
    data = upload.file.read(MAX_PHOTO_BYTES + 1)
    return Photo(label, decode_photo(data, label))


def photos_from_uploads(uploads: list[UploadFile]) -> list[Photo]:
    """1 to `MAX_PHOTOS` photos, each checked; the first bad one is refused by name."""
    if not uploads:
        raise RuleViolationError("registration needs at least one photo as evidence")
    if len(uploads) > MAX_PHOTOS:
        raise RuleViolationError(f"at most {MAX_PHOTOS} photos per registration")
    return [photo_from_upload(u, i) for i, u in enumerate(uploads)]

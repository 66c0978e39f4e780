"""An uploaded face photo never reaches the disk in the clear (issue 10: temporary files).

Starlette spools a multipart file part to a temporary file past its
`spool_max_size`; a registration photo of several megabytes must stay in
memory, like every other clear copy of a face, and be gone with the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import cv2
import numpy as np
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

import registry.api.uploads as uploads  # noqa: F401  (the app's configuration of the parser)
from tests.registries import OBAMA, Registry


def _large_png(registry: Registry) -> bytes:
    """A real face photo as a PNG of a few megabytes (noise keeps it incompressible)."""
    photo = cv2.resize(registry.image(OBAMA), None, fx=2.0, fy=2.0)
    noise = np.random.default_rng(0).integers(0, 8, photo.shape, dtype=np.uint8)
    ok, png = cv2.imencode(".png", cv2.add(photo, noise))
    assert ok
    return png.tobytes()


def test_a_multi_megabyte_photo_upload_is_parsed_in_memory(registry: Registry) -> None:
    png = _large_png(registry)
    assert 2 * 1024 * 1024 < len(png) <= uploads.MAX_PHOTO_BYTES
    boundary = "mamoru-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photos\"; "
            f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})

    async def stream() -> AsyncGenerator[bytes, None]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async def parse() -> UploadFile:
        form = await MultiPartParser(headers, stream()).parse()
        upload = form["photos"]
        assert isinstance(upload, UploadFile)
        return upload

    upload = asyncio.run(parse())
    spooled = upload.file
    assert not getattr(spooled, "_rolled", True), "the photo was spooled to a temporary file"
    assert spooled.read() == png
    assert getattr(spooled, "name", None) is None, "no file behind it"

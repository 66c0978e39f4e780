"""The one reader of PNG images that come from outside: an edge box's snapshot, a joint-use
member's evidence.

Such an image is kept as evidence, so nothing but its pixels may survive: a
box (or whoever got hold of one) can put a name in a `tEXt` chunk, a camera
serial in `eXIf`, a time in `tIME`, a whole file after `IEND`. The registry
once decoded every snapshot and encoded its pixels again to get rid of all
that: ~14 ms of CPU per alert (decode 4.5 ms, deflate 9 ms for a 640x360
frame), the larger part of an alert's cost under a burst (issue 15: 2,000
boxes, `benchmarks/chain.py --only load`).

`clean_png` keeps the image's own compressed pixels instead: it walks the
chunks, checks every CRC, and rebuilds the file from an allow-list of the
chunks that make the picture (`KEPT_CHUNKS`: IHDR, PLTE, tRNS, IDAT, IEND),
dropping every ancillary chunk; an unknown critical chunk, a bad CRC or bytes
after IEND are refused. The rebuilt bytes are then decoded once, the check
that they are a whole 8-bit image of sane size (the caps come before the
decode: a small PNG can inflate to gigabytes). What is stored is exactly what
was decoded, pixel for pixel what the box sent.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from kernel.errors import RuleViolationError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that carry the picture (PNG spec 1.2, section 4.1; tRNS for transparency).
KEPT_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
MAX_PNG_PIXELS = 40_000_000  # 8K UHD is 33 Mpx
_IHDR_BYTES = 13
_CHUNK_OVERHEAD = 12  # length, type, CRC
_MAX_CHUNK = 2**31 - 1  # PNG spec: a chunk's length is at most 2^31 - 1
_BIT_DEPTHS = {0: (1, 2, 4, 8), 2: (8,), 3: (1, 2, 4, 8), 4: (8,), 6: (8,)}


class PngError(RuleViolationError):
    """Bytes the registry does not keep as a PNG image; `problem` says why, as a phrase
    ("a damaged PNG (...)") the caller puts after its own subject ("the snapshot is ...")."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the image is {problem}")
        self.problem = problem


class PngTooLargeError(PngError):
    """More bytes or pixels than the caller accepts; refused before anything is decoded."""


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields the checks need."""

    width: int
    height: int
    bit_depth: int
    color_type: int


def clean_png(data: bytes, *, max_bytes: int | None = None,
              max_pixels: int = MAX_PNG_PIXELS) -> bytes:
    """`data` rebuilt from its picture chunks only, after checking it decodes as an 8-bit
    image of at most `max_pixels`; `PngError` (`PngTooLargeError`) otherwise."""
    if max_bytes is not None and len(data) > max_bytes:
        raise PngTooLargeError(f"{len(data)} bytes; at most {max_bytes} are accepted")
    png = strip_png(data, max_pixels=max_pixels)
    decoded = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise PngError("a damaged PNG (it does not decode)")
    if decoded.dtype != np.uint8:
        raise PngError("not an 8-bit PNG")
    return png


def strip_png(data: bytes, *, max_pixels: int = MAX_PNG_PIXELS) -> bytes:
    """The PNG rebuilt from `KEPT_CHUNKS` (no decode): every CRC checked, IHDR first,
    IEND last with nothing after it, no unknown critical chunk, at most `max_pixels`."""
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("not a PNG image (send lossless PNG, not JPEG)")
    view = memoryview(data)
    kept: list[memoryview | bytes] = [PNG_SIGNATURE]
    at = len(PNG_SIGNATURE)
    first = True
    while True:
        kind, end = _chunk(view, at)
        if first:
            if kind != b"IHDR":
                raise PngError("a damaged PNG (it does not start with IHDR)")
            _check_header(_header(view[at + 8:end - 4]), max_pixels)
            first = False
        elif kind == b"IHDR":
            raise PngError("a damaged PNG (a second IHDR chunk)")
        if kind in KEPT_CHUNKS:
            kept.append(view[at:end])
        elif not kind[0] & 0x20:  # upper-case first letter: critical, needed to decode
            raise PngError(f"a PNG with an unknown critical chunk {kind.decode('ascii')}")
        at = end
        if kind == b"IEND":
            break
    if at != len(data):
        raise PngError(f"a PNG with {len(data) - at} bytes after its end (IEND); "
                       "send the image alone")
    return b"".join(kept)


def _chunk(view: memoryview, at: int) -> tuple[bytes, int]:
    """The type of the chunk at `at` and where it ends, its CRC checked."""
    if at + _CHUNK_OVERHEAD > len(view):
        raise PngError("a damaged PNG (it ends before IEND)")
    (length,) = struct.unpack_from(">I", view, at)
    kind = bytes(view[at + 4:at + 8])
    if length > _MAX_CHUNK or not kind.isalpha() or not kind.isascii():
        raise PngError("a damaged PNG (a malformed chunk header)")
    end = at + _CHUNK_OVERHEAD + length
    if end > len(view):
        raise PngError(f"a damaged PNG (chunk {kind.decode('ascii')} is cut short)")
    (crc,) = struct.unpack_from(">I", view, end - 4)
    if zlib.crc32(view[at + 4:end - 4]) != crc:
        raise PngError(f"a damaged PNG (chunk {kind.decode('ascii')} fails its CRC)")
    return kind, end


def _header(body: memoryview) -> PngHeader:
    if len(body) != _IHDR_BYTES:
        raise PngError("a damaged PNG (IHDR is not 13 bytes)")
    width, height, bit_depth, color_type = struct.unpack_from(">IIBB", body)
    return PngHeader(width, height, bit_depth, color_type)


def _check_header(header: PngHeader, max_pixels: int) -> None:
    if header.width == 0 or header.height == 0 or header.width * header.height > max_pixels:
        raise PngTooLargeError(f"{header.width}x{header.height} pixels; at most {max_pixels} "
                               "pixels are accepted")
    depths = _BIT_DEPTHS.get(header.color_type)
    if depths is None:
        raise PngError(f"a damaged PNG (colour type {header.color_type})")
    if header.bit_depth not in depths:
        raise PngError(f"not an 8-bit PNG (bit depth {header.bit_depth})")

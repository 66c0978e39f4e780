"""PNG files as a box or an attacker could shape them: extra chunks, a broken CRC, a tail.

Shared by the kernel's PNG reader tests and the edge API's (tests/kernel/test_png.py,
tests/registry/test_api_edge.py).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_AFTER_IHDR = len(SIGNATURE) + 12 + 13


def png_of(image: np.ndarray) -> bytes:
    """The PNG OpenCV writes (IHDR, IDAT, IEND only)."""
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def chunk(kind: bytes, data: bytes) -> bytes:
    """One well-formed chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """`png` with `chunks` right after IHDR (where text and Exif usually sit)."""
    assert png[12:16] == b"IHDR"
    return png[:_AFTER_IHDR] + b"".join(chunks) + png[_AFTER_IHDR:]


def with_bad_crc(png: bytes) -> bytes:
    """`png` with one bit of the first IDAT's data flipped (its CRC no longer matches)."""
    at = png.index(b"IDAT") + 4
    return png[:at] + bytes([png[at] ^ 0x01]) + png[at + 1:]


def chunk_types(png: bytes) -> list[bytes]:
    """The chunk types of `png`, in order (it must be well-formed)."""
    kinds, at = [], len(SIGNATURE)
    while at < len(png):
        (length,) = struct.unpack_from(">I", png, at)
        kinds.append(png[at + 4:at + 8])
        at += 12 + length
    return kinds

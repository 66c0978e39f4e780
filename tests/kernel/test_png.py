"""The one reader of inbound PNGs (kernel/png.py): only the picture survives.

An edge box's snapshot and a joint-use member's evidence are kept for weeks
(G-RET-1); whatever else the file carries (a name in tEXt, a camera's Exif, a
time, a file glued after IEND) must not be kept with it, and the pixels must
be exactly the ones sent. Real photos from the packaged face data, encoded by
OpenCV as a box does, then shaped as a box or an attacker could.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from kernel.png import KEPT_CHUNKS, PngError, PngTooLargeError, clean_png, strip_png
from tests.faces import image
from tests.pngs import chunk, chunk_types, png_of, with_bad_crc, with_chunks
from tests.registries import OBAMA2

NAME = b"Yamada Taro"


@pytest.fixture(scope="module")
def photo(face_data: Path) -> np.ndarray:
    return image(face_data, OBAMA2)


def decoded(png: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None
    return pixels


def test_a_png_as_opencv_writes_it_is_kept_byte_for_byte(photo: np.ndarray) -> None:
    png = png_of(photo)
    assert clean_png(png) == png  # same SHA-256 as at the box or member that made it


def test_text_exif_time_and_colour_profile_chunks_are_dropped(photo: np.ndarray) -> None:
    png = png_of(photo)
    dressed = with_chunks(
        png,
        chunk(b"tEXt", b"Author\0" + NAME),
        chunk(b"iTXt", b"Comment\0\0\0en\0\0" + NAME),
        chunk(b"zTXt", b"Title\0\0" + zlib.compress(NAME)),
        chunk(b"eXIf", b"MM\0*\0\0\0\x08" + b"serial AB-1234" + NAME),
        chunk(b"tIME", bytes([0x07, 0xEA, 1, 20, 9, 15, 2])),
        chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"profile " + NAME)),
        chunk(b"acTL", bytes(8)),  # APNG: an animation is kept as its default image
    )
    kept = clean_png(dressed)
    assert NAME not in kept and b"serial" not in kept and zlib.compress(NAME) not in kept
    assert set(chunk_types(kept)) <= KEPT_CHUNKS
    assert kept == png
    assert np.array_equal(decoded(kept), photo)


def test_palette_and_transparency_are_kept(photo: np.ndarray) -> None:
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    png = png_of(grey)
    # A grey PNG with tRNS (one grey level transparent) and a text chunk.
    dressed = with_chunks(png, chunk(b"tRNS", b"\0\0"), chunk(b"tEXt", b"Author\0" + NAME))
    kept = clean_png(dressed)
    kinds = chunk_types(kept)
    assert [k for i, k in enumerate(kinds) if k != kinds[i - 1]] == [
        b"IHDR", b"tRNS", b"IDAT", b"IEND"]
    assert np.array_equal(decoded(kept), decoded(dressed))


@pytest.mark.parametrize(("shape", "needle"), [
    ("tail", "bytes after its end"),
    ("bad crc", "fails its CRC"),
    ("unknown critical", "unknown critical chunk"),
    ("no iend", "ends before IEND"),
    ("two ihdr", "second IHDR"),
    ("jpeg", "not a PNG image"),
])
def test_a_malformed_png_is_refused_with_why(photo: np.ndarray, shape: str, needle: str) -> None:
    png = png_of(photo)
    ok, jpeg = cv2.imencode(".jpg", photo)
    assert ok
    shaped = {
        "tail": png + b"PK\x03\x04 a zip file with " + NAME,
        "bad crc": with_bad_crc(png),
        "unknown critical": with_chunks(png, chunk(b"ABCD", b"x")),
        "no iend": png[:-12],
        "two ihdr": with_chunks(png, png[8:33]),
        "jpeg": jpeg.tobytes(),
    }[shape]
    with pytest.raises(PngError) as caught:
        clean_png(shaped)
    assert needle in str(caught.value)
    assert NAME.decode() not in str(caught.value)


def test_sizes_are_capped_before_anything_is_decoded(photo: np.ndarray) -> None:
    png = png_of(photo)
    with pytest.raises(PngTooLargeError, match="at most 100 are accepted"):
        clean_png(png, max_bytes=100)
    height, width = photo.shape[:2]
    with pytest.raises(PngTooLargeError, match="pixels"):
        strip_png(png, max_pixels=height * width - 1)
    assert strip_png(png, max_pixels=height * width) == png


def test_a_16_bit_png_is_refused(photo: np.ndarray) -> None:
    sixteen = png_of(photo.astype(np.uint16) * 257)
    with pytest.raises(PngError, match="not an 8-bit PNG"):
        clean_png(sixteen)


def test_pixels_that_do_not_inflate_are_refused(photo: np.ndarray) -> None:
    png = png_of(photo)
    at = png.index(b"IDAT") - 4
    broken_idat = chunk(b"IDAT", b"not deflate at all")
    end = at + 12 + int.from_bytes(png[at:at + 4], "big")
    with pytest.raises(PngError, match="does not decode"):
        clean_png(png[:at] + broken_idat + png[end:])

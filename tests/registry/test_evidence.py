"""The encrypted evidence store (G-SEC-2 encryption at rest, G-REG-4 real erasure).

The images stored are real faces (t1.jpg, masked as registration would mask
them), so "no raw pixels on disk" is checked against real image content.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from kernel.evidence import (
    EvidenceError,
    EvidenceIntegrityError,
    EvidenceNotFoundError,
    EvidenceStore,
    StoredImage,
)
from kernel.masking import mask_faces
from models.engine import FaceEngine
from tests import pngs
from tests.faces import image

Image = npt.NDArray[np.uint8]
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
ID_A = "0123456789abcdef0123456789abcdef"
ID_B = "fedcba9876543210fedcba9876543210"


@pytest.fixture(scope="module")
def evidence_image(engines: dict[str, FaceEngine], face_data: Path) -> Image:
    """t1.jpg with every face but the subject's masked: what registration stores."""
    img = image(face_data, "insightface/t1.jpg")
    faces = engines["yunet-sface"].detect(img)
    return mask_faces(img, faces, keep=faces[0])


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence", KEY)


def _file(store: EvidenceStore, image_id: str) -> Path:
    return store.folder / f"{image_id}.bin"


def test_put_get_round_trips_pixel_exactly(store: EvidenceStore, evidence_image: Image) -> None:
    stored = store.put(evidence_image)
    assert isinstance(stored, StoredImage)
    assert len(stored.image_id) == 32
    back = store.get(stored.image_id)
    assert back.dtype == np.uint8 and back.shape == evidence_image.shape
    assert np.array_equal(back, evidence_image)


def test_sha256_is_of_the_png_before_encryption(
    store: EvidenceStore, evidence_image: Image
) -> None:
    stored = store.put(evidence_image, image_id=ID_A)
    png = store.get_bytes(ID_A)
    assert png.startswith(b"\x89PNG")
    assert hashlib.sha256(png).hexdigest() == stored.sha256
    assert stored.sha256 not in _file(store, ID_A).read_bytes().hex()


def test_file_on_disk_holds_neither_png_nor_raw_pixels(
    store: EvidenceStore, evidence_image: Image
) -> None:
    # G-SEC-2: a copied disk yields ciphertext, not a face.
    store.put(evidence_image, image_id=ID_A)
    blob = _file(store, ID_A).read_bytes()
    assert b"\x89PNG" not in blob and b"IHDR" not in blob and b"IDAT" not in blob
    raw = evidence_image.tobytes()
    row = evidence_image.shape[1] * 3
    for y in range(300, 400, 20):  # the subject's face rows: textured, not masked
        window = raw[y * row + 470 * 3 : y * row + 470 * 3 + 48]
        assert len(set(window)) > 4
        assert window not in blob
    assert len(blob) < len(raw)  # it is the compressed PNG that was encrypted


def test_gray_and_bgra_images_round_trip(store: EvidenceStore, evidence_image: Image) -> None:
    gray = cv2.cvtColor(evidence_image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(evidence_image, cv2.COLOR_BGR2BGRA)
    for img in (gray, bgra):
        assert np.array_equal(store.get(store.put(img).image_id), img)


def test_wrong_key_is_refused_without_leaking_the_key(
    tmp_path: Path, evidence_image: Image
) -> None:
    EvidenceStore(tmp_path / "ev", KEY).put(evidence_image, image_id=ID_A)
    with pytest.raises(EvidenceIntegrityError) as caught:
        EvidenceStore(tmp_path / "ev", OTHER_KEY).get(ID_A)
    message = str(caught.value) + repr(caught.value)
    for key in (KEY, OTHER_KEY):
        assert key.hex() not in message and repr(key) not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert KEY.hex() not in repr(EvidenceStore(tmp_path / "ev", KEY))


@pytest.mark.parametrize("where", [0, 4, 10, 200, -1])
def test_a_flipped_byte_is_refused(store: EvidenceStore, evidence_image: Image, where: int) -> None:
    store.put(evidence_image, image_id=ID_A)
    path = _file(store, ID_A)
    blob = bytearray(path.read_bytes())
    blob[where] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(EvidenceIntegrityError):
        store.get(ID_A)


def test_a_truncated_file_is_refused(store: EvidenceStore, evidence_image: Image) -> None:
    store.put(evidence_image, image_id=ID_A)
    path = _file(store, ID_A)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(EvidenceIntegrityError):
        store.get(ID_A)


def test_a_file_renamed_to_another_id_is_refused(
    store: EvidenceStore, evidence_image: Image
) -> None:
    # The AAD binds the id: swapping two entries' evidence cannot show the wrong person.
    store.put(evidence_image, image_id=ID_A)
    os.replace(_file(store, ID_A), _file(store, ID_B))
    with pytest.raises(EvidenceIntegrityError):
        store.get(ID_B)


def test_delete_erases_and_is_idempotent(store: EvidenceStore, evidence_image: Image) -> None:
    # G-REG-4: erasure is real.
    store.put(evidence_image, image_id=ID_A)
    assert store.delete(ID_A) is True
    assert not _file(store, ID_A).exists()
    assert store.ids() == set()
    with pytest.raises(EvidenceNotFoundError):
        store.get(ID_A)
    with pytest.raises(EvidenceError):
        store.get_bytes(ID_A)
    assert store.delete(ID_A) is False


def test_delete_overwrites_the_bytes_before_unlinking(
    store: EvidenceStore, evidence_image: Image
) -> None:
    store.put(evidence_image, image_id=ID_A)
    path = _file(store, ID_A)
    size = path.stat().st_size
    # A second hard link survives the unlink and shows what was written to the inode.
    witness = store.folder.parent / "witness"
    os.link(path, witness)
    store.delete(ID_A)
    assert witness.read_bytes() == bytes(size)


@pytest.mark.parametrize(
    "bad", ["../x", "../../etc/passwd", "/etc/passwd", "a/b/c/d/e/f", "ABCDEF12", "short", "",
            "0123456789abcdef.bin", "x" * 10, "0" * 65, "abc def0123"]
)
def test_path_like_ids_are_rejected(store: EvidenceStore, evidence_image: Image, bad: str) -> None:
    with pytest.raises(ValueError):
        store.put(evidence_image, image_id=bad)
    with pytest.raises(ValueError):
        store.get(bad)
    with pytest.raises(ValueError):
        store.delete(bad)


def test_files_are_0600_in_a_0700_folder(tmp_path: Path, evidence_image: Image) -> None:
    old = os.umask(0)
    try:
        store = EvidenceStore(tmp_path / "open" / "evidence", KEY)
        store.put(evidence_image, image_id=ID_A)
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(_file(store, ID_A).stat().st_mode) == 0o600
    assert sorted(p.name for p in store.folder.iterdir()) == [f"{ID_A}.bin"]  # no temp left


def test_existing_folder_is_tightened_to_0700(tmp_path: Path) -> None:
    folder = tmp_path / "loose"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    EvidenceStore(folder, KEY)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_evidence_is_write_once(store: EvidenceStore, evidence_image: Image) -> None:
    store.put(evidence_image, image_id=ID_A)
    with pytest.raises(EvidenceError):
        store.put(evidence_image[::2, ::2].copy(), image_id=ID_A)
    assert np.array_equal(store.get(ID_A), evidence_image)


def test_ids_lists_stored_images_and_ignores_other_files(
    store: EvidenceStore, evidence_image: Image
) -> None:
    a = store.put(evidence_image).image_id
    b = store.put(evidence_image, image_id=ID_B).image_id
    (store.folder / ".partial-abc.tmp").write_bytes(b"x")
    (store.folder / "notes.txt").write_bytes(b"x")
    assert store.ids() == {a, b}


def test_rekey_moves_every_file_to_the_new_key(
    store: EvidenceStore, evidence_image: Image
) -> None:
    first = store.put(evidence_image, image_id=ID_A)
    small = np.ascontiguousarray(evidence_image[200:450, 400:650])
    second = store.put(small, image_id=ID_B)
    new = store.rekey(OTHER_KEY)
    assert new.ids() == {ID_A, ID_B}
    assert np.array_equal(new.get(ID_A), evidence_image)
    assert np.array_equal(new.get(ID_B), small)
    # The PNG bytes are unchanged, so the hashes in the audit trail stay valid.
    assert hashlib.sha256(new.get_bytes(ID_A)).hexdigest() == first.sha256
    assert hashlib.sha256(new.get_bytes(ID_B)).hexdigest() == second.sha256
    for image_id in (ID_A, ID_B):
        with pytest.raises(EvidenceIntegrityError):
            store.get(image_id)  # the old key no longer opens anything
    # Resumable: running it again (e.g. after a crash) leaves files readable.
    again = store.rekey(OTHER_KEY)
    assert np.array_equal(again.get(ID_A), evidence_image)


def test_key_must_be_32_bytes(tmp_path: Path) -> None:
    for bad in (b"", b"k" * 16, b"k" * 31, b"k" * 33):
        with pytest.raises(ValueError) as caught:
            EvidenceStore(tmp_path / "k", bad)
        assert "kkkk" not in str(caught.value) and "6b6b" not in str(caught.value)


def test_non_images_are_refused(store: EvidenceStore) -> None:
    with pytest.raises(EvidenceError):
        store.put(np.zeros((10, 10, 3), dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(EvidenceError):
        store.put(np.zeros((0, 10, 3), dtype=np.uint8))


def test_a_png_from_outside_keeps_its_picture_only(store: EvidenceStore,
                                                    evidence_image: Image) -> None:
    """A joint-use member's evidence (`put_png`): a name in tEXt or Exif, or a file after
    IEND, is not kept with the face (kernel/png.py); the pixels and, for a PNG as mamoru
    writes it, the bytes and their SHA-256 are."""
    png = pngs.png_of(evidence_image)
    name = b"Yamada Taro"
    dressed = pngs.with_chunks(png, pngs.chunk(b"tEXt", b"Author\0" + name),
                               pngs.chunk(b"eXIf", b"MM\0*\0\0\0\x08" + name))
    stored = store.put_png(dressed, image_id=ID_A)
    assert store.get_bytes(ID_A) == png
    assert stored.sha256 == hashlib.sha256(png).hexdigest()
    assert np.array_equal(store.get(ID_A), evidence_image)
    for shaped in (png + b"PK\x03\x04" + name, pngs.with_bad_crc(png)):
        with pytest.raises(EvidenceError) as caught:
            store.put_png(shaped, image_id=ID_B)
        assert "damaged PNG" in str(caught.value) or "after its end" in str(caught.value)
    assert store.ids() == {ID_A}

"""The one sealed-file format (kernel/sealed.py): every encrypted file mamoru keeps (G-SEC-2).

Each refusal is checked on real bytes: a wrong key, a file renamed to another
name or id, a file of another kind, a flipped version or header byte, every
truncation. Files of the previous release are built here byte by byte with
`cryptography`'s AESGCM exactly as that release wrote them, and must still
open through the stores that keep them for years (evidence, backups,
joint-use keys): an upgrade may not lose them (G-RET-1 lifetimes run on).
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.outbox import Outbox
from kernel.durable import write_private_file
from kernel.errors import (
    ForeignFileError,
    RegistryError,
    SealedFileError,
    SealedIntegrityError,
    UnknownVersionError,
)
from kernel.evidence import EvidenceIntegrityError, EvidenceStore
from kernel.sealed import (
    BACKUP,
    EVIDENCE,
    JOINT_USE_KEYS,
    KINDS,
    OUTBOX,
    WATCHLIST_INDEX,
    SealedKind,
    Sealer,
    kind_of,
    read_header,
)
from registry.backup.archive import BackupError, check_backup, unpacked_backup
from registry.joint_use.errors import StoreKeysError
from registry.joint_use.keys import load_store_keys, rekey_store_keys
from registry.keys.master import MasterKey

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PLAIN = b"a face would be here" * 10
CONTEXT = b"0123456789abcdef"
HEADER = b"\x00\x01clear but authenticated"
VERSION_AT = 8  # magic 0-7, version 8, clear-header length 9-10
IMAGE_ID = "0123456789abcdef"


def _sealed(kind: SealedKind = EVIDENCE, header: bytes = b"") -> bytes:
    return Sealer(kind, KEY).seal(PLAIN, context=CONTEXT, header=header)


def _old_file(magic: bytes, key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """A file as the previous release wrote it: `magic | nonce | AESGCM`, own AAD per kind."""
    nonce = os.urandom(12)
    return magic + nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


# --- the format ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_round_trips_with_its_clear_header(kind: SealedKind) -> None:
    blob = _sealed(kind, HEADER)
    assert blob.startswith(kind.magic) and blob[VERSION_AT] == 1
    assert PLAIN not in blob
    header, plain = Sealer(kind, KEY).open_with_header(blob, name="f", context=CONTEXT)
    assert (header, plain) == (HEADER, PLAIN)
    assert kind_of(blob) == kind


def test_magics_name_one_kind_each() -> None:
    magics = [kind.magic for kind in KINDS]
    assert len(set(magics)) == len(KINDS) and {len(m) for m in magics} == {8}


def test_two_seals_of_the_same_plaintext_differ() -> None:
    """A random nonce per file: equal plaintexts never give equal files."""
    assert _sealed() != _sealed()


def test_a_wrong_key_fails_authentication_without_showing_a_key() -> None:
    with pytest.raises(SealedIntegrityError, match="fails authentication") as raised:
        Sealer(EVIDENCE, OTHER_KEY).open(_sealed(), name="f", context=CONTEXT)
    shown = f"{raised.value} {raised.value!r}"
    for key in (KEY, OTHER_KEY):
        assert key.hex() not in shown and repr(key) not in shown
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert KEY.hex() not in repr(Sealer(EVIDENCE, KEY))


def test_a_file_renamed_to_another_context_fails_authentication() -> None:
    with pytest.raises(SealedIntegrityError):
        Sealer(EVIDENCE, KEY).open(_sealed(), name="f", context=b"fedcba9876543210")
    with pytest.raises(SealedIntegrityError):
        Sealer(EVIDENCE, KEY).open(_sealed(), name="f")


def test_a_file_moved_to_another_kind_is_refused() -> None:
    """As it is (foreign magic), and with its magic rewritten (the magic is authenticated)."""
    blob = _sealed(EVIDENCE)
    with pytest.raises(ForeignFileError, match="not a mamoru outbox alert file"):
        Sealer(OUTBOX, KEY).open(blob, name="f", context=CONTEXT)
    relabelled = OUTBOX.magic + blob[len(EVIDENCE.magic):]
    with pytest.raises(SealedIntegrityError):
        Sealer(OUTBOX, KEY).open(relabelled, name="f", context=CONTEXT)


def test_a_flipped_version_byte_is_an_unknown_version() -> None:
    blob = bytearray(_sealed())
    blob[VERSION_AT] ^= 0x01
    with pytest.raises(UnknownVersionError, match="version 0; this release reads versions 1 and 2"):
        Sealer(EVIDENCE, KEY).open(bytes(blob), name="f", context=CONTEXT)


def test_every_flipped_byte_is_refused() -> None:
    original = _sealed(header=HEADER)
    sealer = Sealer(EVIDENCE, KEY)
    for position in range(len(original)):
        blob = bytearray(original)
        blob[position] ^= 0x01
        with pytest.raises(SealedFileError):
            sealer.open(bytes(blob), name="f", context=CONTEXT)


def test_every_truncation_is_refused() -> None:
    original = _sealed(header=HEADER)
    sealer = Sealer(EVIDENCE, KEY)
    for length in range(len(original)):
        expected = ForeignFileError if length < len(EVIDENCE.magic) else SealedIntegrityError
        with pytest.raises(expected):
            sealer.open(original[:length], name="f", context=CONTEXT)


@pytest.mark.parametrize("foreign", [b"", b"SQLite format 3\x00" + bytes(64),
                                     b"\x89PNG\r\n\x1a\n" + bytes(64), b"MMRS" + bytes(64)])
def test_a_foreign_file_is_refused_before_decrypting(foreign: bytes) -> None:
    with pytest.raises(ForeignFileError, match="not a mamoru evidence image file"):
        Sealer(EVIDENCE, KEY).open(foreign, name="f")
    assert kind_of(foreign) is None


def test_the_clear_header_reads_without_a_key_but_cannot_be_changed() -> None:
    blob = _sealed(WATCHLIST_INDEX, HEADER)
    handle = io.BytesIO(blob)
    assert read_header(WATCHLIST_INDEX, handle, "f") == HEADER
    assert handle.tell() == 11 + len(HEADER)  # the nonce comes next
    changed = blob.replace(HEADER, HEADER.upper(), 1)
    assert read_header(WATCHLIST_INDEX, io.BytesIO(changed), "f") == HEADER.upper()
    with pytest.raises(SealedIntegrityError):
        Sealer(WATCHLIST_INDEX, KEY).open(changed, name="f", context=CONTEXT)
    with pytest.raises(ForeignFileError):
        read_header(BACKUP, io.BytesIO(blob), "f")


def test_a_key_of_the_wrong_length_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="32 bytes") as raised:
        Sealer(EVIDENCE, KEY[:16])
    assert KEY[:16].hex() not in str(raised.value)


def test_the_error_family_is_a_registry_error() -> None:
    """CLI and API handlers catch RegistryError: every refusal is one line, never a trace."""
    for error in (ForeignFileError, UnknownVersionError, SealedIntegrityError):
        assert issubclass(error, SealedFileError) and issubclass(error, RegistryError)


def test_write_is_private_and_atomic(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        Sealer(BACKUP, KEY).write(tmp_path / "x.backup", PLAIN)
    finally:
        os.umask(previous)
    path = tmp_path / "x.backup"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.backup"]
    assert Sealer(BACKUP, KEY).read(path) == PLAIN


# --- files of the previous release -------------------------------------------


def test_previous_evidence_files_still_open_and_a_rekey_upgrades_them(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[2:5, 3:7] = (10, 200, 30)
    ok, png = cv2.imencode(".png", image)
    assert ok
    store = EvidenceStore(tmp_path / "ev", KEY)
    store.path(IMAGE_ID).write_bytes(_old_file(
        b"MEV1", KEY, png.tobytes(), b"mamoru-evidence-v1:" + IMAGE_ID.encode()))
    assert np.array_equal(store.get(IMAGE_ID), image)
    os.replace(store.path(IMAGE_ID), store.path("fedcba9876543210"))  # renamed: refused
    with pytest.raises(EvidenceIntegrityError):
        store.get("fedcba9876543210")
    os.replace(store.path("fedcba9876543210"), store.path(IMAGE_ID))
    rotated = store.rekey(OTHER_KEY)
    assert store.path(IMAGE_ID).read_bytes().startswith(EVIDENCE.magic)
    assert np.array_equal(rotated.get(IMAGE_ID), image)


def test_previous_backups_still_open(tmp_path: Path) -> None:
    master = MasterKey(KEY)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("manifest.json", json.dumps({"format": 1}).encode()),
                           ("registry.db", b"sqlcipher pages")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    magic = b"MAMORU-BACKUP-1\n"
    path = tmp_path / "mamoru-20240101T000000000000Z.backup"
    path.write_bytes(_old_file(magic, master.derive("backup"), buffer.getvalue(), magic))
    with unpacked_backup(master, path, tmp_path / "scratch") as unpacked:
        assert unpacked.manifest == {"format": 1}
        assert {name: file.read_bytes() for name, file in unpacked.files.items()} == {
            "registry.db": b"sqlcipher pages"}
    with pytest.raises(BackupError, match="fails authentication"):
        check_backup(MasterKey(OTHER_KEY), path)


def test_previous_joint_use_key_files_still_open_and_a_rotation_upgrades_them(
    tmp_path: Path,
) -> None:
    master = MasterKey(KEY)
    signing, encryption = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
    body = json.dumps({
        "member_id": "store-a",
        "signing": base64.b64encode(signing.private_bytes_raw()).decode("ascii"),
        "encryption": base64.b64encode(encryption.private_bytes_raw()).decode("ascii"),
    }).encode()
    magic = b"MAMORU-JUKEYS-1\n"
    path = tmp_path / "joint-use.keys"
    write_private_file(path, _old_file(magic, master.derive("joint-use"), body, magic))
    keys = load_store_keys(path, master)
    assert keys.member_id == "store-a"
    assert keys.signing.private_bytes_raw() == signing.private_bytes_raw()
    with pytest.raises(StoreKeysError):
        load_store_keys(path, MasterKey(OTHER_KEY))
    rekey_store_keys(path, master, MasterKey(OTHER_KEY))
    assert path.read_bytes().startswith(JOINT_USE_KEYS.magic)
    assert load_store_keys(path, MasterKey(OTHER_KEY)).member_id == "store-a"


def test_previous_outbox_files_still_open(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", KEY, None)
    name = "00000000000000000001-alert-1.alert"
    (tmp_path / "outbox" / name).write_bytes(
        _old_file(b"MOB1", KEY, b'{"alert_id": "alert-1"}', name.encode()))
    assert outbox._read(tmp_path / "outbox" / name) == {"alert_id": "alert-1"}


def test_a_previous_file_of_one_kind_does_not_open_as_another() -> None:
    magic = b"MAMORU-BACKUP-1\n"
    old = _old_file(magic, KEY, PLAIN, magic)
    assert kind_of(old) == BACKUP
    with pytest.raises(ForeignFileError):
        Sealer(JOINT_USE_KEYS, KEY).open(old, name="f")
    assert Sealer(BACKUP, KEY).open(old, name="f") == PLAIN

"""This store's own joint-use keys: Ed25519 to sign, X25519 to receive.

`mamoru joint-use keys init` generates both once; their public halves go into
the scheme file, the private halves into one file in the data folder, mode
0600 and sealed at rest (`kernel.sealed`, kind JOINT_USE_KEYS: AES-256-GCM)
under a key derived from the master key (purpose "joint-use"). A key
rotation re-encrypts the file with the databases (`rekey_store_keys`), so
the store's identity in the scheme survives a rotation of its master key.

The sealed plaintext is JSON {member_id, signing, encryption}.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kernel.durable import make_private_dir, write_private_file
from kernel.errors import SealedFileError
from kernel.sealed import JOINT_USE_KEYS, Sealer
from registry.joint_use.errors import StoreKeysError
from registry.keys.master import MasterKey


def public_b64(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    """The raw 32-byte public key in standard base64, as the scheme file lists it."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, repr=False)
class StoreKeys:
    """The private signing and encryption keys of one member store."""

    member_id: str
    signing: Ed25519PrivateKey
    encryption: X25519PrivateKey

    @property
    def signing_public(self) -> str:
        return public_b64(self.signing)

    @property
    def encryption_public(self) -> str:
        return public_b64(self.encryption)

    def __repr__(self) -> str:
        return f"StoreKeys(member_id={self.member_id!r}, <private keys redacted>)"


def _sealer(master: MasterKey) -> Sealer:
    return Sealer(JOINT_USE_KEYS, master.derive("joint-use"))


def _seal(keys: StoreKeys, master: MasterKey) -> bytes:
    body = json.dumps({
        "member_id": keys.member_id,
        "signing": base64.b64encode(keys.signing.private_bytes_raw()).decode("ascii"),
        "encryption": base64.b64encode(keys.encryption.private_bytes_raw()).decode("ascii"),
    }).encode("utf-8")
    return _sealer(master).seal(body)


def _open(blob: bytes, master: MasterKey, path: Path) -> StoreKeys:
    try:
        body = json.loads(_sealer(master).open(blob, name=str(path)))
    except SealedFileError as exc:
        raise StoreKeysError(str(exc)) from None
    return StoreKeys(
        member_id=str(body["member_id"]),
        signing=Ed25519PrivateKey.from_private_bytes(base64.b64decode(body["signing"])),
        encryption=X25519PrivateKey.from_private_bytes(base64.b64decode(body["encryption"])),
    )


def create_store_keys(path: Path, master: MasterKey, member_id: str) -> StoreKeys:
    """Generate this store's key pairs; never replaces an existing key file."""
    if path.exists():
        raise StoreKeysError(
            f"joint-use keys already exist at {path}; replacing them would cut this store "
            "out of the scheme until every member updates its scheme file"
        )
    make_private_dir(path.parent)
    os.chmod(path.parent, 0o700)
    keys = StoreKeys(member_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())
    write_private_file(path, _seal(keys, master))
    return keys


def load_store_keys(path: Path, master: MasterKey) -> StoreKeys:
    if not path.is_file():
        raise StoreKeysError(
            f"no joint-use keys at {path}: run `mamoru joint-use keys init` and give the "
            "printed public keys to the scheme's managing party"
        )
    if os.stat(path).st_mode & 0o077:
        raise StoreKeysError(f"{path} is readable by others; run `chmod 600 {path}`")
    return _open(path.read_bytes(), master, path)


def rekey_store_keys(path: Path, old: MasterKey, new: MasterKey) -> None:
    """Re-encrypt the key file under `new`; resumable (a file already under `new` is kept)."""
    if not path.is_file():
        return
    blob = path.read_bytes()
    try:
        _open(blob, new, path)
        return
    except StoreKeysError:
        pass
    write_private_file(path, _seal(_open(blob, old, path), new))

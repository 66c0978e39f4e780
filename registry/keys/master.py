"""The master key and the keys derived from it.

One random 256-bit master key lives in a key file (0600, never on a command
line, never in a log). Each use gets its own key derived with HKDF-SHA256, so
the edge box can be given the index key without being able to open the
database, and a leaked backup key opens no live file.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kernel.durable import make_private_dir, write_private_file
from kernel.errors import KeyFileError, NotInitialisedError, StoreDamagedError

KEY_BYTES = 32
Purpose = Literal["database", "audit", "index", "evidence", "backup", "edge", "joint-use",
                  "database-fields"]  # the last: sealed personal columns on PostgreSQL


def key_file_damaged(path: Path, problem: str) -> StoreDamagedError:
    """Without the key nothing can be decrypted, backups included."""
    return StoreDamagedError(
        path, problem,
        "put the key file back from its offline custody copy (it cannot be recovered from "
        "anything else); nothing was changed",
    )


class MasterKey:
    """A master key that refuses to show itself in reprs, logs or tracebacks."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise KeyFileError(f"a master key has {KEY_BYTES} bytes")
        self._raw = raw

    def derive(self, purpose: Purpose) -> bytes:
        """A 32-byte key for one purpose; the same master always gives the same key."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                    info=b"mamoru/v1/" + purpose.encode())
        return hkdf.derive(self._raw)

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    __str__ = __repr__


def sqlcipher_pragma_value(key: bytes) -> str:
    """The raw-key form SQLCipher takes (no passphrase KDF: the key is already random)."""
    return f"\"x'{key.hex()}'\""


def new_master_key() -> MasterKey:
    return MasterKey(secrets.token_bytes(KEY_BYTES))


def write_key_file(path: Path, key: MasterKey, *, replace: bool = False) -> None:
    """Write a key file with 0600 permissions, atomically.

    Without `replace` an existing key file is never touched: overwriting it
    would make the registry unreadable for good.
    """
    make_private_dir(path.parent)
    if path.exists() and not replace:
        raise KeyFileError(f"a key file already exists at {path}; refusing to replace it")
    write_private_file(path, (key._raw.hex() + "\n").encode("ascii"))


def create_key_file(path: Path) -> MasterKey:
    """A new random master key, written to a new key file."""
    key = new_master_key()
    write_key_file(path, key)
    return key


def load_key_file(path: Path) -> MasterKey:
    """Read the master key, refusing a file that others can read."""
    if not path.is_file():
        raise NotInitialisedError(
            f"no key file at {path}: run `mamoru registry init` (or set MAMORU_KEY_FILE)"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise key_file_damaged(path, "not a hex-encoded key") from None
    if len(raw) != KEY_BYTES:
        raise key_file_damaged(path, f"does not hold a {KEY_BYTES * 8}-bit key")
    return MasterKey(raw)

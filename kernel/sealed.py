"""One sealed-file format for every encrypted file mamoru keeps (G-SEC-2, G-BRE-3).

Outbox alerts, evidence images, backups, the watchlist index and the
joint-use key file are all the same thing on disk (all integers big-endian)::

    magic (8 bytes, names the kind) | version u8 | clear-header length u16 |
    clear header | nonce (12 random bytes) | AES-256-GCM ciphertext + 16-byte tag

The associated data of the encryption is everything before the nonce
followed by the caller's context (the file name of an outbox alert, the id of
an evidence image): a file renamed to another name or id, copied into a
folder of another kind, or with any header byte changed fails
authentication instead of showing the wrong thing. The clear header is
authenticated but not secret: the index keeps its version and pack there so
a box can poll them without the key (`read_header`).

Files written by the previous release (each kind had its own
`magic | nonce | ciphertext` layout and its own associated data) are read
through `_LEGACY`, the one place that knows them; only the format above is
ever written, so a rotation or a rewrite upgrades a file. The previous index
layout is not read: the registry republishes an index it cannot read
(`RegistryContext.publish_index_if_stale`), and alerts in an outbox are
minutes old, but their previous layout costs one line, so it is read too.

All cryptography is `cryptography`'s AESGCM; nothing here is hand-rolled.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kernel.durable import write_private_file
from kernel.errors import ForeignFileError, SealedIntegrityError, UnknownVersionError

VERSION = 1
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce, random per file: 2^-32 collision bound is far away
TAG_BYTES = 16
MAX_HEADER_BYTES = 0xFFFF
_PREFIX = struct.Struct(">8sBH")  # magic, version, clear-header length


@dataclass(frozen=True)
class SealedKind:
    """One kind of sealed file: the magic that names it and what a person calls it."""

    name: str
    magic: bytes


OUTBOX = SealedKind("outbox alert", b"MMRSOBOX")
EVIDENCE = SealedKind("evidence image", b"MMRSEVID")
BACKUP = SealedKind("backup", b"MMRSBKUP")
WATCHLIST_INDEX = SealedKind("watchlist index", b"MMRSINDX")
JOINT_USE_KEYS = SealedKind("joint-use key", b"MMRSJUKY")
# One personal value in a chain's PostgreSQL database (registry/storage/postgres): the
# same format as a file, bound by its context to the table, column and row it belongs in.
DATABASE_FIELD = SealedKind("database field", b"MMRSDBFD")
# What changed between two index versions (issue 15, item 4): what a box fetches instead of
# the whole index, under the same index key.
WATCHLIST_DELTA = SealedKind("watchlist index delta", b"MMRSIDLT")
# The registry's index key as a chain's box keeps it (issue 15), sealed under the box's own
# key, so the box restarts while the registry is down; the box never holds the master key.
INDEX_KEY = SealedKind("watchlist index key", b"MMRSIKEY")
KINDS = (OUTBOX, EVIDENCE, BACKUP, WATCHLIST_INDEX, JOINT_USE_KEYS, DATABASE_FIELD,
         WATCHLIST_DELTA, INDEX_KEY)


@dataclass(frozen=True)
class _LegacyLayout:
    """A kind's layout of the previous release: `magic | nonce | ciphertext + tag`."""

    kind: SealedKind
    magic: bytes
    associated_data: Callable[[bytes], bytes]  # from the caller's context


_MEV1, _BACKUP1, _JUKEYS1 = b"MEV1", b"MAMORU-BACKUP-1\n", b"MAMORU-JUKEYS-1\n"
_LEGACY = (
    _LegacyLayout(EVIDENCE, _MEV1, lambda image_id: b"mamoru-evidence-v1:" + image_id),
    _LegacyLayout(BACKUP, _BACKUP1, lambda _: _BACKUP1),
    _LegacyLayout(JOINT_USE_KEYS, _JUKEYS1, lambda _: _JUKEYS1),
    _LegacyLayout(OUTBOX, b"MOB1", lambda file_name: file_name),
)


def kind_of(blob: bytes) -> SealedKind | None:
    """The kind a file's first bytes name (this format or the previous one), if any."""
    for kind in KINDS:
        if blob.startswith(kind.magic):
            return kind
    return next((legacy.kind for legacy in _LEGACY if blob.startswith(legacy.magic)), None)


def read_header(kind: SealedKind, handle: BinaryIO, name: str) -> bytes:
    """The clear header, read from `handle`'s position on; not authenticated, no key needed.

    Good for polling and display (the index's version), never for trusting:
    `Sealer.open` authenticates it.
    """
    prefix = handle.read(_PREFIX.size)
    header_length = _check_prefix(kind, prefix, name)
    header = handle.read(header_length)
    if len(header) != header_length:
        raise SealedIntegrityError(f"{name} is truncated: no complete {kind.name} header")
    return header


def _check_prefix(kind: SealedKind, prefix: bytes, name: str) -> int:
    """The clear-header length, once magic and version are this kind's and this release's."""
    if not prefix.startswith(kind.magic):
        raise ForeignFileError(f"{name} is not a mamoru {kind.name} file (bad magic)")
    if len(prefix) < _PREFIX.size:
        raise SealedIntegrityError(f"{name} is truncated: no complete {kind.name} header")
    _, version, header_length = _PREFIX.unpack_from(prefix)
    if version != VERSION:
        raise UnknownVersionError(
            f"{name} is a {kind.name} file of sealed-file version {version}; this release "
            f"reads version {VERSION} (written by a newer mamoru?)"
        )
    return int(header_length)


class Sealer:
    """Seals and opens one kind of file under one AES-256 key."""

    def __init__(self, kind: SealedKind, key: bytes) -> None:
        """`key`: 32 bytes derived for this purpose; never shown in any message."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"a {kind.name} key must be {KEY_BYTES} bytes (AES-256)")
        self.kind = kind
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return f"Sealer({self.kind.name!r})"  # never the key

    def seal(self, plaintext: bytes, *, context: bytes = b"", header: bytes = b"") -> bytes:
        """The sealed file's bytes; `context` must be given again to open them."""
        if len(header) > MAX_HEADER_BYTES:
            raise ValueError(f"a clear header holds at most {MAX_HEADER_BYTES} bytes")
        clear = _PREFIX.pack(self.kind.magic, VERSION, len(header)) + header
        nonce = os.urandom(NONCE_BYTES)
        return clear + nonce + self._aead.encrypt(nonce, plaintext, clear + context)

    def write(self, path: Path, plaintext: bytes, *, context: bytes = b"",
              header: bytes = b"") -> None:
        """Seal and replace `path` atomically and durably, mode 0600 (`kernel.durable`)."""
        write_private_file(path, self.seal(plaintext, context=context, header=header))

    def open(self, blob: bytes, *, name: str, context: bytes = b"") -> bytes:
        """The plaintext of an authentic file of this kind; `name` is for messages only."""
        return self.open_with_header(blob, name=name, context=context)[1]

    def open_with_header(self, blob: bytes, *, name: str,
                         context: bytes = b"") -> tuple[bytes, bytes]:
        """The authenticated clear header and the plaintext.

        Files of the previous release are opened through `_LEGACY` (empty header).
        """
        legacy = next((old for old in _LEGACY if old.kind == self.kind
                       and blob.startswith(old.magic)), None)
        if legacy is not None:
            return b"", self._decrypt(blob, len(legacy.magic), legacy.associated_data(context),
                                      name)
        header_end = _PREFIX.size + _check_prefix(self.kind, blob[: _PREFIX.size], name)
        return blob[_PREFIX.size : header_end], self._decrypt(
            blob, header_end, blob[:header_end] + context, name)

    def read(self, path: Path, *, context: bytes = b"") -> bytes:
        """`open` of the file at `path` (FileNotFoundError passes through)."""
        return self.open(path.read_bytes(), name=str(path), context=context)

    def _decrypt(self, blob: bytes, nonce_at: int, associated: bytes, name: str) -> bytes:
        ciphertext_at = nonce_at + NONCE_BYTES
        if len(blob) < ciphertext_at + TAG_BYTES:
            raise SealedIntegrityError(f"{name} is truncated: too short to be a {self.kind.name}")
        try:
            # A memoryview, not a slice: a large index is not copied once more.
            return self._aead.decrypt(blob[nonce_at:ciphertext_at],
                                      memoryview(blob)[ciphertext_at:], associated)
        except InvalidTag:
            raise SealedIntegrityError(
                f"{name} fails authentication: altered, truncated, renamed or moved, or "
                f"sealed under another key; the {self.kind.name} is refused"
            ) from None

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

A file too large for one message (a backup: AESGCM in `cryptography` refuses
more than 2^31 bytes at once, and one message must be held whole in memory) is
written as version 2, a chunked stream (`Sealer.stream_writer`,
`Sealer.stream_reader`)::

    magic | version u8 = 2 | clear-header length u16 | clear header |
    chunk size u32 | salt (32 random bytes) | nonce prefix (7 random bytes) |
    chunk 0 | chunk 1 | ... | chunk n-1        (each: AES-256-GCM ciphertext + tag)

This is the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár,
"Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance"
(CRYPTO 2015, eprint.iacr.org/2015/189), laid out as Tink's AES-GCM-HKDF
streaming AEAD (developers.google.com/tink/streaming-aead/aes_gcm_hkdf_streaming):
each file gets its own AES-256 key, HKDF-SHA256 of the kind's key with the
file's random salt as salt (so a chunk moved into another file, even one of
the same kind and key, fails), and chunk i is sealed under the nonce
`nonce prefix | i (u32) | final flag (1 byte)`, the flag 1 on the last chunk
only. age (c2sp.org/age, "payload") and libsodium's secretstream mark the last
chunk the same way. The associated data of chunk i is the whole stream header
(everything before chunk 0), the caller's context, then i (u64) and the final
flag, so reordering, dropping or duplicating a chunk, changing the header,
and cutting the file anywhere (a cut exactly between two chunks leaves a last
chunk sealed as not final) all fail. Every chunk holds `chunk size`
plaintext bytes except the last, which holds 1 to `chunk size` (0 only when
the whole plaintext is empty, as in age). The u32 counter allows 2^32 chunks:
4 PiB at the default 1 MiB, where one message stopped at 2 GiB.

A reader releases a chunk's plaintext only once that chunk has authenticated,
but the stream as a whole is only known complete once the final chunk has:
a caller keeps what it read aside (a scratch folder) until `finish` returned.
Every reader of a kind reads all its layouts (`Sealer.open` a stream,
`Sealer.stream_reader` a one-message or previous-release file), so the choice
of layout is the writer's alone.

All cryptography is `cryptography`'s AESGCM and HKDF; nothing here is hand-rolled.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kernel.durable import write_private_file
from kernel.errors import ForeignFileError, SealedIntegrityError, UnknownVersionError

VERSION = 1  # one AES-GCM message
STREAM_VERSION = 2  # chunked stream (module docstring)
VERSIONS = (VERSION, STREAM_VERSION)
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce, random per file: 2^-32 collision bound is far away
TAG_BYTES = 16
MAX_HEADER_BYTES = 0xFFFF
_PREFIX = struct.Struct(">8sBH")  # magic, version, clear-header length
CHUNK_BYTES = 1 << 20  # plaintext per chunk of a stream: 1 MiB, as a backup is read back
MAX_CHUNK_BYTES = 1 << 24  # a reader allocates no more than this for a chunk, whatever the header
SALT_BYTES = 32  # the file's own key is derived with it (Tink: as long as the key)
NONCE_PREFIX_BYTES = 7  # + 4 counter + 1 flag = GCM's 12
MAX_CHUNKS = 1 << 32  # the nonce's u32 counter
_STREAM_FIELDS = struct.Struct(f">I{SALT_BYTES}s{NONCE_PREFIX_BYTES}s")
_COUNTER = struct.Struct(">IB")  # in the nonce: chunk index, final flag
_POSITION = struct.Struct(">QB")  # in the associated data: chunk index, final flag
_READ_BYTES = 1 << 16  # what a stream is read in when its plaintext is copied whole


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
    header_length = _check_prefix(kind, prefix, name)[1]
    header = handle.read(header_length)
    if len(header) != header_length:
        raise SealedIntegrityError(f"{name} is truncated: no complete {kind.name} header")
    return header


def _check_prefix(kind: SealedKind, prefix: bytes, name: str) -> tuple[int, int]:
    """The version and the clear-header length, once magic and version are this kind's and
    this release's."""
    if not prefix.startswith(kind.magic):
        raise ForeignFileError(f"{name} is not a mamoru {kind.name} file (bad magic)")
    if len(prefix) < _PREFIX.size:
        raise SealedIntegrityError(f"{name} is truncated: no complete {kind.name} header")
    _, version, header_length = _PREFIX.unpack_from(prefix)
    if version not in VERSIONS:
        raise UnknownVersionError(
            f"{name} is a {kind.name} file of sealed-file version {version}; this release "
            f"reads versions {VERSION} and {STREAM_VERSION} (written by a newer mamoru?)"
        )
    return int(version), int(header_length)


class Sealer:
    """Seals and opens one kind of file under one AES-256 key."""

    def __init__(self, kind: SealedKind, key: bytes) -> None:
        """`key`: 32 bytes derived for this purpose; never shown in any message."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"a {kind.name} key must be {KEY_BYTES} bytes (AES-256)")
        self.kind = kind
        self._key = bytes(key)
        self._aead = AESGCM(self._key)

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

        Files of the previous release are opened through `_LEGACY` (empty header),
        a chunked stream (version 2) through `stream_reader`.
        """
        legacy = next((old for old in _LEGACY if old.kind == self.kind
                       and blob.startswith(old.magic)), None)
        if legacy is not None:
            return b"", self._decrypt(blob, len(legacy.magic), legacy.associated_data(context),
                                      name)
        version, header_length = _check_prefix(self.kind, blob[: _PREFIX.size], name)
        header_end = _PREFIX.size + header_length
        if version == STREAM_VERSION:
            with self.stream_reader(io.BytesIO(blob), name=name, context=context) as reader:
                return reader.header, reader.read()
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

    # --- chunked streams (version 2, module docstring) ---------------------------

    def stream_writer(self, sink: BinaryIO, *, context: bytes = b"", header: bytes = b"",
                      chunk_bytes: int = CHUNK_BYTES) -> SealingWriter:
        """A file-like whose `write`s are sealed chunk by chunk onto `sink` (bounded memory).

        Use it as a context manager: a clean exit seals the final chunk; an
        exception leaves the stream without one, so it never opens.
        """
        if len(header) > MAX_HEADER_BYTES:
            raise ValueError(f"a clear header holds at most {MAX_HEADER_BYTES} bytes")
        if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"a chunk holds 1 to {MAX_CHUNK_BYTES} bytes")
        salt, nonce_prefix = os.urandom(SALT_BYTES), os.urandom(NONCE_PREFIX_BYTES)
        clear = (_PREFIX.pack(self.kind.magic, STREAM_VERSION, len(header)) + header
                 + _STREAM_FIELDS.pack(chunk_bytes, salt, nonce_prefix))
        sink.write(clear)
        return SealingWriter(_ChunkCipher(self._file_aead(salt), nonce_prefix, clear + context),
                             sink, chunk_bytes)

    def stream_reader(self, source: BinaryIO, *, name: str,
                      context: bytes = b"") -> OpeningReader:
        """A file-like of the plaintext of the sealed file `source` is positioned at.

        Reads every layout of this kind: a stream chunk by chunk (bounded
        memory), a one-message or previous-release file whole (they were
        written whole, under 2 GiB). `name` is for messages only.
        """
        prefix = source.read(_PREFIX.size)
        legacy = any(old.kind == self.kind and prefix.startswith(old.magic[: _PREFIX.size])
                     for old in _LEGACY)
        if legacy or _check_prefix(self.kind, prefix, name)[0] == VERSION:
            # One message, read whole: this release's version 1 or the previous layout.
            header, plain = self.open_with_header(prefix + source.read(), name=name,
                                                  context=context)
            return OpeningReader(header, iter((plain,)))
        header_length = _check_prefix(self.kind, prefix, name)[1]
        header = source.read(header_length)
        fields = source.read(_STREAM_FIELDS.size)
        if len(header) != header_length or len(fields) != _STREAM_FIELDS.size:
            raise SealedIntegrityError(f"{name} is truncated: no complete {self.kind.name} "
                                       "header")
        chunk_bytes, salt, nonce_prefix = _STREAM_FIELDS.unpack(fields)
        if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise SealedIntegrityError(f"{name} is altered: its header names chunks of "
                                       f"{chunk_bytes} bytes; the {self.kind.name} is refused")
        cipher = _ChunkCipher(self._file_aead(salt), nonce_prefix,
                              prefix + header + fields + context)
        return OpeningReader(header, _open_chunks(cipher, source, chunk_bytes, name,
                                                  self.kind))

    def _file_aead(self, salt: bytes) -> AESGCM:
        """The file's own AES-256-GCM: HKDF-SHA256 of this kind's key, salted by the file."""
        info = b"mamoru sealed stream v2 " + self.kind.magic
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                       info=info).derive(self._key)
        return AESGCM(derived)


@dataclass(frozen=True)
class _ChunkCipher:
    """Seals and opens chunk i of one stream: its nonce and associated data (module docstring)."""

    aead: AESGCM
    nonce_prefix: bytes
    bound: bytes  # the stream header, then the caller's context

    def seal(self, index: int, final: bool, plaintext: bytes) -> bytes:
        nonce, associated = self._position(index, final)
        return self.aead.encrypt(nonce, plaintext, associated)

    def open(self, index: int, final: bool, ciphertext: bytes) -> bytes | None:
        """The chunk's plaintext, or None if it does not authenticate at this position."""
        nonce, associated = self._position(index, final)
        try:
            return self.aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            return None

    def _position(self, index: int, final: bool) -> tuple[bytes, bytes]:
        if not 0 <= index < MAX_CHUNKS:
            raise ValueError(f"a sealed stream holds at most {MAX_CHUNKS} chunks")
        return (self.nonce_prefix + _COUNTER.pack(index, final),
                self.bound + _POSITION.pack(index, final))


class SealingWriter:
    """The writing end of a sealed stream: buffers at most one chunk, seals it, writes it on.

    A full chunk is held back until the next byte arrives, so the last chunk
    is always known when it is sealed (its final flag), even when the
    plaintext ends exactly on a chunk boundary.
    """

    def __init__(self, cipher: _ChunkCipher, sink: BinaryIO, chunk_bytes: int) -> None:
        self._cipher, self._sink, self._chunk_bytes = cipher, sink, chunk_bytes
        self._buffer = bytearray()
        self._index = 0
        self._written = 0
        self._finished = False

    def __enter__(self) -> SealingWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.finish()

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._finished:
            raise ValueError("the sealed stream is finished")
        self._buffer += data
        while len(self._buffer) > self._chunk_bytes:
            self._emit(bytes(self._buffer[: self._chunk_bytes]), final=False)
            del self._buffer[: self._chunk_bytes]
        self._written += len(data)
        return len(data)

    def finish(self) -> None:
        """Seal what is left as the final chunk (idempotent)."""
        if not self._finished:
            self._emit(bytes(self._buffer), final=True)
            self._buffer.clear()
            self._finished = True

    def _emit(self, plaintext: bytes, *, final: bool) -> None:
        self._sink.write(self._cipher.seal(self._index, final, plaintext))
        self._index += 1

    # What `tarfile` asks of a file object; a stream only goes forward.
    def tell(self) -> int:
        return self._written

    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("a sealing stream is written, not read")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("a sealed stream is written front to back")

    def close(self) -> None:
        """Nothing: `finish` (or the context manager) ends the stream, the caller the sink."""


class OpeningReader:
    """The reading end: plaintext chunk by chunk, each authenticated before it is returned.

    `finish` (called by a clean exit of the context manager too) reads to the
    end and raises unless the final chunk authenticated: only then is the
    plaintext known to be whole.
    """

    def __init__(self, header: bytes, chunks: Iterator[bytes]) -> None:
        self.header = header  # the clear header, authenticated with the first chunk
        self._chunks = chunks
        self._buffer = bytearray()
        self._position = 0
        self._done = False

    def __enter__(self) -> OpeningReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:
            self.finish()

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            self._pull()
        taken = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:taken])
        del self._buffer[:taken]
        self._position += taken
        return data

    def finish(self) -> None:
        """Read (and drop) the rest; raises `SealedFileError` unless the stream is whole."""
        self._buffer.clear()
        while not self._done:
            self._pull()
            self._buffer.clear()

    def _pull(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._done = True
        else:
            self._buffer += chunk

    def tell(self) -> int:
        return self._position

    def write(self, data: bytes, /) -> int:
        raise io.UnsupportedOperation("an opening stream is read, not written")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("a sealed stream is read front to back")

    def close(self) -> None:
        """Nothing: the caller owns the source."""


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """`size` bytes, fewer only at the end of `source` (a pipe may return less per read)."""
    parts = []
    left = size
    while left > 0:
        part = source.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _open_chunks(cipher: _ChunkCipher, source: BinaryIO, chunk_bytes: int, name: str,
                 kind: SealedKind) -> Iterator[bytes]:
    """Each chunk's plaintext in order; raises at the first one out of place or altered.

    A chunk is the last exactly when nothing follows it; it must then be
    sealed as final, and every other chunk as not final.
    """
    sealed_bytes = chunk_bytes + TAG_BYTES
    current = _read_exactly(source, sealed_bytes)
    index = 0
    while True:
        if len(current) < TAG_BYTES:
            raise SealedIntegrityError(f"{name} is truncated: chunk {index} of the "
                                       f"{kind.name} is missing or cut short")
        following = _read_exactly(source, sealed_bytes) if len(current) == sealed_bytes else b""
        final = not following
        plaintext = cipher.open(index, final, current)
        if plaintext is None:
            raise SealedIntegrityError(_chunk_failure(cipher, index, final, current, name, kind))
        yield plaintext
        if final:
            return
        current, index = following, index + 1


def _chunk_failure(cipher: _ChunkCipher, index: int, final: bool, sealed: bytes, name: str,
                   kind: SealedKind) -> str:
    """Why chunk `index` failed, said as precisely as the other final flag allows."""
    if cipher.open(index, not final, sealed) is not None:
        if final:
            return (f"{name} is truncated: it ends after chunk {index}, which is not the "
                    f"{kind.name}'s last; the {kind.name} is refused")
        return f"{name} has data after its final chunk {index}; the {kind.name} is refused"
    return (f"{name} fails authentication at chunk {index}: altered, truncated, reordered or "
            f"spliced, renamed or moved, or sealed under another key; the {kind.name} is "
            "refused")


def copy_plaintext(reader: OpeningReader, sink: BinaryIO) -> int:
    """Copy the rest of `reader` onto `sink` in bounded pieces; the bytes copied."""
    copied = 0
    while piece := reader.read(_READ_BYTES):
        sink.write(piece)
        copied += len(piece)
    return copied

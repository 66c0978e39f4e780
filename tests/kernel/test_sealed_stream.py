"""The chunked sealed stream (kernel/sealed.py, version 2): files larger than one AES-GCM message.

Issue 15, item 2: a backup sealed as one AES-GCM message fails past 2^31 bytes
(`cryptography` refuses it) and is held whole in memory. The stream seals
chunks under nonces `prefix | counter | final flag` with associated data
binding the header, the chunk index and the flag (STREAM, Tink's
AES-GCM-HKDF streaming). Each attack on the chunk sequence is made here on real
bytes and must be refused with one `kernel.errors` error naming the file
(G-SEC-2): reordered, dropped, duplicated, truncated (also exactly between two
chunks), spliced from another file, extended after the final chunk.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.errors import (
    ForeignFileError,
    RegistryError,
    SealedFileError,
    SealedIntegrityError,
    UnknownVersionError,
)
from kernel.sealed import (
    BACKUP,
    CHUNK_BYTES,
    EVIDENCE,
    MAX_CHUNKS,
    NONCE_PREFIX_BYTES,
    SALT_BYTES,
    STREAM_VERSION,
    TAG_BYTES,
    Sealer,
    copy_plaintext,
    kind_of,
    read_header,
)
from tests import REPO

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NAME = "/backups/mamoru-x.backup"
SMALL = 64  # a chunk size that makes many chunks out of a few hundred bytes
HEADER = b"clear header"
PREFIX_BYTES = 8 + 1 + 2  # magic, version, clear-header length
FIELDS_BYTES = 4 + SALT_BYTES + NONCE_PREFIX_BYTES  # chunk size, salt, nonce prefix


def _plain(size: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def _stream(plaintext: bytes, *, chunk_bytes: int = SMALL, header: bytes = HEADER,
            context: bytes = b"", key: bytes = KEY, pieces: int = 7) -> bytes:
    """`plaintext` sealed as a stream, written in uneven pieces as tar writes it."""
    sink = io.BytesIO()
    with Sealer(BACKUP, key).stream_writer(sink, context=context, header=header,
                                           chunk_bytes=chunk_bytes) as writer:
        at = 0
        while at < len(plaintext):
            writer.write(plaintext[at:at + pieces])
            at += pieces
    return sink.getvalue()


def _open(blob: bytes, *, context: bytes = b"", key: bytes = KEY) -> bytes:
    with Sealer(BACKUP, key).stream_reader(io.BytesIO(blob), name=NAME,
                                           context=context) as reader:
        return reader.read()


def _split(blob: bytes, chunk_bytes: int = SMALL,
           header: bytes = HEADER) -> tuple[bytes, list[bytes]]:
    """The stream header and the sealed chunks, cut where the format says they are."""
    start = PREFIX_BYTES + len(header) + FIELDS_BYTES
    sealed = chunk_bytes + TAG_BYTES
    return blob[:start], [blob[i:i + sealed] for i in range(start, len(blob), sealed)]


def _refused(blob: bytes, match: str = "", **kwargs: bytes) -> SealedFileError:
    """The error opening `blob` raises: a `kernel.errors` one, naming the file, no chain."""
    with pytest.raises(SealedFileError, match=match) as raised:
        _open(blob, **kwargs)
    error = raised.value
    assert NAME in str(error) and isinstance(error, RegistryError)
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    for key in (KEY, OTHER_KEY):
        assert key.hex() not in str(error)
    return error


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1,
                                  3 * CHUNK_BYTES + 12345])
def test_round_trip_at_the_default_chunk_size(size: int) -> None:
    plaintext = os.urandom(size)
    blob = _stream(plaintext, chunk_bytes=CHUNK_BYTES, pieces=65536 + 3)
    assert _open(blob) == plaintext
    header, chunks = _split(blob, CHUNK_BYTES)
    assert len(chunks) == max(1, -(-size // CHUNK_BYTES))  # an empty final chunk only if empty
    assert all(len(c) == CHUNK_BYTES + TAG_BYTES for c in chunks[:-1])
    assert blob[8] == STREAM_VERSION and kind_of(blob) == BACKUP
    assert Sealer(BACKUP, KEY).open_with_header(blob, name=NAME) == (HEADER, plaintext)


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 2 * SMALL, 5 * SMALL + 9])
@pytest.mark.parametrize("pieces", [1, 13, SMALL, 1000])
def test_round_trip_across_chunk_boundaries(size: int, pieces: int) -> None:
    plaintext = _plain(size)
    blob = _stream(plaintext, pieces=pieces)
    assert plaintext[:16] not in blob[PREFIX_BYTES + len(HEADER) + FIELDS_BYTES:] or size < 16
    with Sealer(BACKUP, KEY).stream_reader(io.BytesIO(blob), name=NAME) as reader:
        assert reader.header == HEADER
        read = b"".join(iter(lambda: reader.read(5), b""))
    assert read == plaintext


def test_two_streams_of_the_same_plaintext_share_no_ciphertext() -> None:
    """A random salt (the file's own key) and nonce prefix per file."""
    plaintext = _plain(4 * SMALL)
    first, second = _split(_stream(plaintext)), _split(_stream(plaintext))
    assert first[0][-FIELDS_BYTES + 4:] != second[0][-FIELDS_BYTES + 4:]
    assert not set(first[1]) & set(second[1])


def test_the_clear_header_reads_without_a_key() -> None:
    assert read_header(BACKUP, io.BytesIO(_stream(b"x")), NAME) == HEADER


def test_one_message_files_still_open_through_the_stream_reader() -> None:
    """A reader reads every layout: backups written as one message by earlier releases."""
    old = Sealer(BACKUP, KEY).seal(_plain(300), header=HEADER)
    with Sealer(BACKUP, KEY).stream_reader(io.BytesIO(old), name=NAME) as reader:
        assert (reader.header, reader.read()) == (HEADER, _plain(300))


# --- the size limit is gone ------------------------------------------------------


def test_the_limit_is_the_chunk_counter_not_one_message() -> None:
    """One AES-GCM message stops at 2^31 bytes; a stream at 2^32 chunks of 1 MiB (4 PiB)."""
    assert MAX_CHUNKS * CHUNK_BYTES == 2 ** 52
    assert CHUNK_BYTES + TAG_BYTES < 2 ** 31  # what AESGCM is given at once


class _Loopback:
    """A writer's sink that is a reader's source: ciphertext is made as it is read."""

    def __init__(self, plaintext_bytes: int) -> None:
        self._pending = bytearray()
        self._zeros = memoryview(bytes(CHUNK_BYTES))
        self._left = plaintext_bytes
        self._writer = Sealer(BACKUP, KEY).stream_writer(self)  # type: ignore[arg-type]

    def write(self, data: bytes) -> int:
        self._pending += data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        while len(self._pending) < size and (self._left or self._writer is not None):
            if self._left:
                piece = min(self._left, CHUNK_BYTES)
                self._writer.write(self._zeros[:piece])
                self._left -= piece
            else:
                self._writer.finish()
                self._writer = None  # type: ignore[assignment]
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data


@pytest.mark.slow
def test_more_than_two_gibibytes_stream_through() -> None:
    """2 GiB + 1 MiB + 1 byte sealed and opened in one pass, never on disk nor in memory."""
    size = 2 ** 31 + CHUNK_BYTES + 1
    source = _Loopback(size)
    with Sealer(BACKUP, KEY).stream_reader(source, name=NAME) as reader:  # type: ignore[arg-type]
        total = 0
        while piece := reader.read(CHUNK_BYTES):
            total += len(piece)
    assert total == size


# --- tampering -----------------------------------------------------------------


def _chunks_of(size: int = 5 * SMALL + 9) -> tuple[bytes, list[bytes]]:
    return _split(_stream(_plain(size)))


def test_reordered_chunks_are_refused() -> None:
    head, chunks = _chunks_of()
    chunks[1], chunks[2] = chunks[2], chunks[1]
    _refused(head + b"".join(chunks), "fails authentication at chunk 1")


def test_a_dropped_chunk_is_refused() -> None:
    head, chunks = _chunks_of()
    del chunks[2]
    _refused(head + b"".join(chunks), "fails authentication at chunk 2")


def test_a_duplicated_chunk_is_refused() -> None:
    head, chunks = _chunks_of()
    chunks.insert(2, chunks[1])
    _refused(head + b"".join(chunks), "fails authentication at chunk 2")


@pytest.mark.parametrize("kept", [1, 3, 5])
def test_a_cut_exactly_between_two_chunks_is_refused(kept: int) -> None:
    """What a per-chunk tag alone would miss: the last chunk left is not sealed as final."""
    head, chunks = _chunks_of()
    assert len(chunks) == 6
    _refused(head + b"".join(chunks[:kept]),
             f"truncated: it ends after chunk {kept - 1}, which is not the backup's last")


def test_the_header_alone_is_refused() -> None:
    head, _ = _chunks_of()
    _refused(head, "truncated: chunk 0 of the backup is missing")


def test_every_truncation_is_refused() -> None:
    blob = _stream(_plain(3 * SMALL + 5))
    for length in range(len(blob)):
        expected = ForeignFileError if length < len(BACKUP.magic) else SealedIntegrityError
        with pytest.raises(expected):
            _open(blob[:length])


def test_every_flipped_byte_is_refused() -> None:
    blob = _stream(_plain(2 * SMALL + 5))
    for position in range(len(blob)):
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        with pytest.raises(SealedFileError):
            _open(bytes(flipped))


def test_chunks_spliced_from_another_file_are_refused() -> None:
    """Same key, same kind, same clear header, same length: still another file."""
    head_a, chunks_a = _chunks_of()
    head_b, chunks_b = _chunks_of()
    _refused(head_a + chunks_a[0] + chunks_b[1] + b"".join(chunks_a[2:]),
             "fails authentication at chunk 1")
    _refused(head_b + b"".join(chunks_a), "fails authentication at chunk 0")


def test_data_after_the_final_chunk_is_refused() -> None:
    full_head, full = _split(_stream(_plain(3 * SMALL)))
    _refused(full_head + b"".join(full) + full[0], "data after its final chunk 2")
    short_head, short = _chunks_of()
    _refused(short_head + b"".join(short) + b"\x00", "fails authentication at chunk 5")


def test_a_wrong_key_or_context_is_refused() -> None:
    blob = _stream(_plain(100), context=b"ctx")
    assert _open(blob, context=b"ctx") == _plain(100)
    _refused(blob, "fails authentication at chunk 0", context=b"other")
    _refused(blob, "sealed under another key", context=b"ctx", key=OTHER_KEY)


def test_an_implausible_chunk_size_is_refused_before_reading_a_chunk() -> None:
    head, chunks = _chunks_of()
    size_at = PREFIX_BYTES + len(HEADER)
    forged = head[:size_at] + (2 ** 31).to_bytes(4, "big") + head[size_at + 4:]
    _refused(forged + b"".join(chunks), "altered: its header names chunks of 2147483648 bytes")


def test_another_kind_or_version_is_refused() -> None:
    blob = _stream(b"x")
    with pytest.raises(ForeignFileError, match="not a mamoru evidence image file"):
        Sealer(EVIDENCE, KEY).stream_reader(io.BytesIO(blob), name=NAME)
    relabelled = EVIDENCE.magic + blob[len(EVIDENCE.magic):]
    with pytest.raises(SealedIntegrityError):
        Sealer(EVIDENCE, KEY).open(relabelled, name=NAME)
    newer = blob[:8] + bytes([3]) + blob[9:]
    _refused(newer, "version 3; this release reads versions 1 and 2")
    assert issubclass(UnknownVersionError, SealedFileError)


def test_a_writer_left_by_an_exception_never_opens() -> None:
    """An interrupted backup has no final chunk: it is refused, never taken as complete."""
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), \
            Sealer(BACKUP, KEY).stream_writer(sink, chunk_bytes=SMALL) as writer:
        writer.write(_plain(3 * SMALL))
        raise RuntimeError("disk full")
    _refused(sink.getvalue(), "truncated")


# --- bounded memory ------------------------------------------------------------

_MEMORY_PROBE = """
import hashlib, json, re, sys
from pathlib import Path
from kernel.sealed import BACKUP, CHUNK_BYTES, Sealer, copy_plaintext

class Digest:
    def __init__(self): self.sha = hashlib.sha256()
    def write(self, data): self.sha.update(data); return len(data)

path, size = Path(sys.argv[1]), int(sys.argv[2])
block = bytes(range(256)) * (CHUNK_BYTES // 256)
sealer, written = Sealer(BACKUP, bytes(32)), hashlib.sha256()
# VmHWM, the peak RSS of this process alone: getrusage's ru_maxrss survives execve and so
# starts at the parent's (pytest's) peak.
status = Path("/proc/self/status")
peak = lambda: int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read_text())[1]) * 1024
base = peak()
with path.open("wb") as sink, sealer.stream_writer(sink) as writer:
    for i in range(size // CHUNK_BYTES):
        piece = i.to_bytes(8, "big") + block[8:]
        writer.write(piece)
        written.update(piece)
after_write = peak()
read = Digest()
with path.open("rb") as source, sealer.stream_reader(source, name=str(path)) as reader:
    copied = copy_plaintext(reader, read)
after_read = peak()
held = bytearray(size // 10)  # the control: holding 30 MiB shows as ~30 MiB of growth
held[::4096] = b"x" * len(held[::4096])
print(json.dumps({"write": after_write - base, "read": after_read - base,
                  "control": peak() - base, "same": read.sha.digest() == written.digest(),
                  "copied": copied, "file": path.stat().st_size}))
"""


def test_memory_stays_flat_writing_and_reading_300_mb(tmp_path: Path) -> None:
    """A 300 MiB stream written and read back in a fresh process: peak RSS grows by a few
    chunks, not by the file (one message would hold it at least twice)."""
    size = 300 * CHUNK_BYTES
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path / "big.backup"),
                           str(size)], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    seen = json.loads(done.stdout)
    assert seen["same"] and seen["copied"] == size and seen["file"] > size
    print(f"\nMEMORY 300 MiB stream: peak RSS growth write={seen['write'] / 2 ** 20:.1f} MiB "  # noqa: T201
          f"read={seen['read'] / 2 ** 20:.1f} MiB control(30 MiB held)="
          f"{seen['control'] / 2 ** 20:.1f} MiB")
    assert seen["write"] < 32 * 2 ** 20, seen
    assert seen["read"] < 32 * 2 ** 20, seen
    assert seen["control"] > 25 * 2 ** 20, seen  # the probe does see memory held


def test_copy_plaintext_copies_everything() -> None:
    blob = _stream(_plain(5 * SMALL + 3))
    sink = io.BytesIO()
    with Sealer(BACKUP, KEY).stream_reader(io.BytesIO(blob), name=NAME) as reader:
        assert copy_plaintext(reader, sink) == 5 * SMALL + 3
    assert sink.getvalue() == _plain(5 * SMALL + 3)

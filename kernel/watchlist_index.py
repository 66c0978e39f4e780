"""The encrypted watchlist index: what the edge box searches every face against.

The registry publishes one file per watchlist version, built from the active
templates only (the caller passes exactly those). A store box that is stolen
must not hand out every registered face (G-SEC-2, G-BRE-3), so the file is
encrypted with AES-256-GCM and decrypted only in the reader's memory: no
plaintext copy of the index is ever written, not even to a temporary file.
Erasure is real (G-REG-4): an erased or expired subject is simply left out of
the next published version, and the atomic replace means a reader sees either
the old or the new version, never a mix, and never a half-written file.

File layout: a sealed file (`kernel.sealed`, kind WATCHLIST_INDEX) with
(all integers big-endian)::

    clear header   index version u64 | pack (UTF-8)
    plaintext      JSON header length u32 | JSON header | faiss.serialize_index

The file's format is the sealed file's version byte; the payload's own format
is in the JSON header, checked once the file is authenticated.

The sealed format authenticates the clear header without making it secret:
a file cannot be replayed as another version or pack (changing the clear
version or pack breaks the tag), and `read_index_version`
can poll for a new version without the key. What the clear header reveals:
the pack name, the version number and, through the file size, roughly how many
templates there are; no face data and no entry ids. The JSON header (format,
version, pack, dim, count, created_at, index kind, template_id -> entry_id) is
inside the ciphertext.

Which FAISS index: `kernel.ann` chooses by size (exact inner product for a
store's list, an approximate index above `kernel.ann.EXACT_MAX` templates) and
says why, with the measurements; the kind is recorded in the JSON header.

The `key` (32 bytes) comes from the caller's key store; this module never
logs, prints or puts key bytes into an exception message. Python cannot wipe
a `bytes` object, so the decrypted plaintext lives in the reader's process
memory until it is garbage-collected right after `load`; the FAISS index
keeps its own copy of the vectors in memory, which is what searching needs.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import faiss
import numpy as np
import numpy.typing as npt

from kernel import ann
from kernel.durable import make_private_dir, temp_prefix, write_private_file
from kernel.errors import RegistryError, SealedFileError, UnknownVersionError
from kernel.sealed import WATCHLIST_DELTA, WATCHLIST_INDEX, Sealer, read_header

FORMAT_VERSION = 1
KEY_BYTES = 32  # AES-256 (G-SEC-2: data at rest encrypted to a high standard, G-BRE-3)
MAX_PACK_BYTES = 255
FILE_MODE = 0o600


# A template must be unit length so that inner product is the engine's cosine.
_UNIT_TOLERANCE = 1e-3
_MAX_FAISS_ID = 2**63 - 1

# The index version; the pack's bytes are the rest of the clear header.
_HEADER = struct.Struct(">Q")
# A delta's clear header: from version, to version; the pack's bytes are the rest.
_DELTA_HEADER = struct.Struct(">QQ")
_JSON_LENGTH = struct.Struct(">I")

# What parsing an authenticated but wrongly written plaintext can raise.
_MALFORMED = (struct.error, ValueError, KeyError, TypeError, AttributeError, RuntimeError)

KIND_FLAT = ann.KIND_FLAT
KIND_HNSW = ann.KIND_HNSW


class WatchlistIndexError(RegistryError):
    """The watchlist index cannot be published, read or searched as asked."""


class IndexIntegrityError(WatchlistIndexError):
    """Wrong key, altered or truncated file: refused, never partly used.

    The message names the file and what failed, never key bytes.
    """


class DeltaMismatchError(IndexIntegrityError):
    """An authentic delta that does not fit the index it is applied to: refused whole."""


class DeltaUnsupportedError(WatchlistIndexError):
    """This kind of index cannot take a delta (HNSW cannot remove): fetch the whole index."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays has no single truth value
class IndexedTemplate:
    """One active template: what the registry hands over to be published."""

    template_id: int
    entry_id: str
    vector: npt.NDArray[np.float32]  # unit length, the pack's embedding dimension


@dataclass(frozen=True)
class Hit:
    """One search result: which watchlist entry, through which template, how close."""

    entry_id: str
    template_id: int
    score: float  # inner product = cosine similarity of unit vectors


@dataclass(frozen=True)
class IndexHeader:
    """The clear (authenticated, not secret) part of an index file."""

    version: int
    pack: str


@dataclass(frozen=True)
class IndexMetadata:
    """The encrypted JSON header, as the reader found it after authenticating the file."""

    format: int
    version: int
    pack: str
    dim: int
    count: int
    created_at: str
    kind: str


# --- publishing -------------------------------------------------------------


def publish_index(
    path: Path,
    *,
    key: bytes,
    version: int,
    pack: str,
    dim: int,
    templates: Sequence[IndexedTemplate],
    ann_threshold: int = ann.EXACT_MAX,
) -> None:
    """Build, encrypt and atomically write one version of the watchlist index.

    `templates` must be the active templates only: whatever is left out (an
    erased or expired subject, G-REG-4) is absent from this version. The
    version must be higher than the one already at `path`, so a stale
    publisher can never bring back a subject that a newer version erased.
    """
    sealer = _sealer(key)
    _check_identity(version, pack, dim)
    _refuse_older_version(path, version)
    ids, entries, matrix = _stack_templates(templates, dim)
    index, kind = _build_index(ids, matrix, ann_threshold)
    _write_atomically(path, _seal_index(sealer, index, version=version, pack=pack, kind=kind,
                                        ids=ids.tolist(), entries=entries))


def _seal_index(sealer: Sealer, index: faiss.Index, *, version: int, pack: str, kind: str,
                ids: list[int], entries: list[str]) -> bytes:
    """The sealed file of a built index; `ids` and `entries` aligned, in FAISS id order."""
    header = {
        "format": FORMAT_VERSION,
        "version": version,
        "pack": pack,
        "dim": int(index.d),
        "count": len(ids),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": kind,
        # template_id -> entry_id, as two aligned lists in FAISS id order: a third
        # of the parse time of a JSON object with 100k string keys.
        "template_ids": ids,
        "entry_ids": entries,
    }
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    plaintext = b"".join(
        (_JSON_LENGTH.pack(len(header_bytes)), header_bytes, faiss.serialize_index(index).tobytes())
    )
    return sealer.seal(plaintext, header=_HEADER.pack(version) + pack.encode("utf-8"))


def _sealer(key: bytes) -> Sealer:
    """The index's sealer for `key`; the error says only what is wrong with it, not what it is."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise WatchlistIndexError(f"the index key must be {KEY_BYTES} bytes (AES-256), got {size}")
    return Sealer(WATCHLIST_INDEX, bytes(key))


def _check_identity(version: int, pack: str, dim: int) -> bytes:
    if not 0 <= version < 2**64:
        raise WatchlistIndexError(f"index version must fit in 64 unsigned bits, got {version}")
    pack_bytes = pack.encode("utf-8")
    if not pack_bytes or len(pack_bytes) > MAX_PACK_BYTES:
        raise WatchlistIndexError(f"pack name must be 1-{MAX_PACK_BYTES} bytes, got {pack!r}")
    if dim < 1:
        raise WatchlistIndexError(f"embedding dimension must be positive, got {dim}")
    return pack_bytes


def _refuse_older_version(path: Path, version: int) -> None:
    """Refuse to go backwards; a damaged existing file may be replaced."""
    try:
        current = read_index_version(path)
    except IndexIntegrityError:
        return
    if current is not None and version <= current:
        raise WatchlistIndexError(
            f"{path} already holds index version {current}; a new version must be higher "
            f"than that, got {version}"
        )


def _stack_templates(
    templates: Sequence[IndexedTemplate], dim: int
) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.float32]]:
    """Ids, entry ids and one (n, dim) float32 matrix, refusing anything FAISS would misuse."""
    ids = np.fromiter((t.template_id for t in templates), dtype=np.int64, count=len(templates))
    if ids.size and (ids.min() < 0 or ids.max() > _MAX_FAISS_ID):
        raise WatchlistIndexError("template ids must be non-negative 63-bit integers")
    if np.unique(ids).size != ids.size:
        raise WatchlistIndexError("template ids must be unique within one index")
    entries = [t.entry_id for t in templates]
    if any(not isinstance(e, str) or not e for e in entries):
        raise WatchlistIndexError("every template needs a non-empty entry id")
    matrix = np.empty((len(templates), dim), dtype=np.float32)
    for row, template in enumerate(templates):
        vector = np.asarray(template.vector, dtype=np.float32).reshape(-1)
        if vector.shape != (dim,):
            raise WatchlistIndexError(
                f"template {template.template_id} has {vector.size} values, expected {dim}"
            )
        matrix[row] = vector
    if not np.isfinite(matrix).all():
        raise WatchlistIndexError("a template holds a non-finite value")
    norms = np.linalg.norm(matrix, axis=1)
    if norms.size and np.abs(norms - 1.0).max() > _UNIT_TOLERANCE:
        bad = int(ids[int(np.argmax(np.abs(norms - 1.0)))])
        raise WatchlistIndexError(
            f"template {bad} is not unit length: inner product would not be the engine's cosine"
        )
    return ids, entries, matrix


def _build_index(
    ids: npt.NDArray[np.int64], matrix: npt.NDArray[np.float32], ann_threshold: int
) -> tuple[faiss.Index, str]:
    """Exact up to `ann_threshold` templates, approximate above (`kernel.ann`)."""
    inner, kind = ann.new_index(matrix, exact_max=ann_threshold)
    index = faiss.IndexIDMap2(inner)
    if len(ids):
        index.add_with_ids(matrix, ids)
    return index, kind


def _write_atomically(path: Path, data: bytes) -> None:
    """Old version or new one after a crash; stale temps of crashed publishes go first."""
    make_private_dir(path.parent)
    _remove_stale_temps(path)
    write_private_file(path, data)


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files a crashed publish left behind (G-REG-4).

    They are encrypted, but they hold an older version, i.e. possibly subjects
    erased since: erasure must reach them too. Publishers are serialised by
    the registry's write lock, so no other publish is writing one now.
    """
    for stale in path.parent.glob(f"{temp_prefix(path)}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


# --- deltas (issue 15, item 4) --------------------------------------------------
#
# A sealed file of kind WATCHLIST_DELTA under the index key (all integers big-endian):
#
#     clear header   since u64 | version u64 | pack (UTF-8)
#     plaintext      JSON header length u32 | JSON header | added vectors, float32 LE, row-major
#
# The JSON header holds format, since, version, pack, dim, the added template and entry
# ids (aligned with the vector rows) and the removed template and entry ids. Authenticated
# like an index: a delta cannot be replayed onto another version or pack.


@dataclass(frozen=True, eq=False)
class IndexDelta:
    """What changed from index version `since` to `version`, authenticated and parsed."""

    since: int
    version: int
    pack: str
    dim: int
    added_ids: npt.NDArray[np.int64]
    added_entries: list[str]
    vectors: npt.NDArray[np.float32]  # (len(added_ids), dim), unit rows
    removed: dict[int, str]  # template id -> entry id

    def removed_entries(self) -> frozenset[str]:
        return frozenset(self.removed.values())


def seal_delta(*, key: bytes, since: int, version: int, pack: str, dim: int,
               added: Sequence[IndexedTemplate], removed: Mapping[int, str]) -> bytes:
    """The sealed delta a box applies to its `since` index to hold `version`."""
    _sealer(key)  # the same checks and message as the index's
    sealer = Sealer(WATCHLIST_DELTA, bytes(key))
    pack_bytes = _check_identity(version, pack, dim)
    _check_identity(since, pack, dim)
    ids, entries, matrix = _stack_templates(added, dim)
    header = {"format": FORMAT_VERSION, "since": since, "version": version, "pack": pack,
              "dim": dim, "added_template_ids": ids.tolist(), "added_entry_ids": entries,
              "removed_template_ids": list(removed), "removed_entry_ids": list(removed.values())}
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    plaintext = b"".join((_JSON_LENGTH.pack(len(header_bytes)), header_bytes,
                          matrix.astype("<f4", copy=False).tobytes()))
    return sealer.seal(plaintext, header=_DELTA_HEADER.pack(since, version) + pack_bytes)


def open_delta(blob: bytes, *, key: bytes, name: str) -> IndexDelta:
    """Authenticate and parse a sealed delta; `IndexIntegrityError` if it is not whole and ours."""
    _sealer(key)
    try:
        clear, plaintext = Sealer(WATCHLIST_DELTA, bytes(key)).open_with_header(blob, name=name)
    except SealedFileError as exc:
        raise _refusal(exc) from None
    try:
        since, version = _DELTA_HEADER.unpack_from(clear)
        pack = clear[_DELTA_HEADER.size :].decode("utf-8")
        (json_length,) = _JSON_LENGTH.unpack_from(plaintext, 0)
        start = _JSON_LENGTH.size
        header: dict[str, Any] = json.loads(plaintext[start : start + json_length])
        dim = int(header["dim"])
        added_ids = np.asarray(header["added_template_ids"], dtype=np.int64)
        added_entries = [str(e) for e in header["added_entry_ids"]]
        vectors = np.frombuffer(plaintext, dtype="<f4", offset=start + json_length).astype(
            np.float32).reshape(len(added_ids), dim)
        removed = dict(zip((int(t) for t in header["removed_template_ids"]),
                           (str(e) for e in header["removed_entry_ids"]), strict=True))
        consistent = (
            int(header["format"]) == FORMAT_VERSION
            and (int(header["since"]), int(header["version"]), str(header["pack"]))
            == (since, version, pack)
            and len(added_entries) == len(added_ids)
        )
    except (*_MALFORMED, UnicodeDecodeError) as exc:
        raise IndexIntegrityError(f"{name}: authenticated but malformed ({exc})") from None
    if not consistent:
        raise IndexIntegrityError(f"{name}: encrypted header disagrees with the delta")
    return IndexDelta(int(since), int(version), pack, dim, added_ids, added_entries,
                      vectors, removed)


# --- reading ----------------------------------------------------------------


def read_index_header(path: Path) -> IndexHeader | None:
    """The clear header, without the key (None if there is no file).

    Not authenticated here: `WatchlistIndex.load` authenticates it. Good for
    polling and display, never for trusting the content.
    """
    try:
        with path.open("rb") as handle:
            return read_index_header_from(handle, path)
    except FileNotFoundError:
        return None


def read_index_header_from(handle: BinaryIO, path: Path) -> IndexHeader:
    """The clear header from an open file, read from its current position.

    Whoever serves the file reads header and bytes through one handle, so both
    come from the same version even if a new one is published meanwhile.
    """
    try:
        clear = read_header(WATCHLIST_INDEX, handle, str(path))
    except SealedFileError as exc:
        raise _refusal(exc) from None
    return _parse_header(path, clear)


def read_index_version(path: Path) -> int | None:
    """The published version, read from the clear header only: cheap enough to poll."""
    header = read_index_header(path)
    return header.version if header is not None else None


def _refusal(exc: SealedFileError) -> WatchlistIndexError:
    """A newer sealed-file version is not damage; anything else is (wrong key, altered...)."""
    if isinstance(exc, UnknownVersionError):
        return WatchlistIndexError(str(exc))
    return IndexIntegrityError(str(exc))


def _parse_header(path: Path, clear: bytes) -> IndexHeader:
    """Version and pack from the clear header."""
    if len(clear) < _HEADER.size:
        raise IndexIntegrityError(f"{path} is truncated: no complete index header")
    (version,) = _HEADER.unpack_from(clear)
    try:
        pack = clear[_HEADER.size :].decode("utf-8")
    except UnicodeDecodeError:
        raise IndexIntegrityError(f"{path}: the pack name in the header is not UTF-8") from None
    return IndexHeader(int(version), pack)


def _decrypt_file(path: Path, key: bytes) -> tuple[IndexHeader, bytes]:
    """Authenticate the whole file and return its clear header and plaintext.

    The file's bytes are released when this returns (the sealer decrypts from
    a memoryview, so a large index is not copied once more).
    """
    sealer = _sealer(key)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise WatchlistIndexError(f"no watchlist index at {path}") from None
    try:
        clear, plaintext = sealer.open_with_header(blob, name=str(path))
    except SealedFileError as exc:
        raise _refusal(exc) from None
    return _parse_header(path, clear), plaintext


class _ViewReader:
    """Feeds FAISS a memoryview chunk by chunk: no second whole copy of the plaintext."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def read(self, size: int) -> bytes:
        chunk = self._view[self._position : self._position + size]
        self._position += len(chunk)
        return chunk.tobytes()


def _read_faiss(view: memoryview) -> faiss.Index:
    """Deserialise an index; SWIG's read_index already returns the concrete class.

    (Never wrap the result in `faiss.downcast_index`: that proxy does not own
    the C++ object, which is freed with the original proxy.)
    """
    reader = faiss.PyCallbackIOReader(_ViewReader(view).read)  # type: ignore[attr-defined]
    return faiss.read_index(reader)

class WatchlistIndex:
    """One authenticated, decrypted watchlist version, searchable in memory."""

    def __init__(
        self, index: faiss.Index, metadata: IndexMetadata, entries: dict[int, str]
    ) -> None:
        self._index = index
        self.metadata = metadata
        self._entries = entries

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        key: bytes,
        expected_pack: str | None = None,
        min_version: int | None = None,
    ) -> WatchlistIndex:
        """Authenticate and decrypt `path` in memory; nothing in clear touches the disk.

        Wrong key, tampering or truncation raise `IndexIntegrityError`. A pack
        other than `expected_pack` (templates from another model cannot be
        compared with this engine's probes) or a version below `min_version`
        (an old file put back would resurrect erased subjects, G-REG-4) raise
        `WatchlistIndexError`.
        """
        clear, plaintext = _decrypt_file(path, key)
        return cls._checked(path, plaintext, clear, expected_pack, min_version)

    @classmethod
    def from_sealed(cls, blob: bytes, *, key: bytes, name: str,
                    expected_pack: str | None = None) -> WatchlistIndex:
        """`load` of a sealed index already in memory (downloaded by a box); `name` for messages.

        Nothing in clear touches the disk here either.
        """
        try:
            clear, plaintext = _sealer(key).open_with_header(blob, name=name)
        except SealedFileError as exc:
            raise _refusal(exc) from None
        return cls._checked(Path(name), plaintext, _parse_header(Path(name), clear),
                            expected_pack, None)

    @classmethod
    def _checked(cls, path: Path, plaintext: bytes, clear: IndexHeader,
                 expected_pack: str | None, min_version: int | None) -> WatchlistIndex:
        loaded = cls._from_plaintext(path, plaintext, clear)
        del plaintext  # the FAISS index holds its own copy; nothing else needs this
        if expected_pack is not None and loaded.pack != expected_pack:
            raise WatchlistIndexError(
                f"{path} holds templates of pack {loaded.pack!r}, but the engine runs "
                f"{expected_pack!r}: their embeddings cannot be compared"
            )
        if min_version is not None and loaded.version < min_version:
            raise WatchlistIndexError(
                f"{path} holds index version {loaded.version}, older than {min_version}: "
                "refusing to roll back"
            )
        return loaded

    @classmethod
    def _from_plaintext(cls, path: Path, plaintext: bytes, clear: IndexHeader) -> WatchlistIndex:
        """Parse an authenticated plaintext; inconsistencies mean a broken writer: refused."""
        try:
            (json_length,) = _JSON_LENGTH.unpack_from(plaintext, 0)
            start = _JSON_LENGTH.size
            header: dict[str, Any] = json.loads(plaintext[start : start + json_length])
            index = _read_faiss(memoryview(plaintext)[start + json_length :])
            metadata = IndexMetadata(
                format=int(header["format"]),
                version=int(header["version"]),
                pack=str(header["pack"]),
                dim=int(header["dim"]),
                count=int(header["count"]),
                created_at=str(header["created_at"]),
                kind=str(header["kind"]),
            )
            template_ids: list[int] = header["template_ids"]
            entry_ids: list[str] = header["entry_ids"]
        except _MALFORMED as exc:
            raise IndexIntegrityError(f"{path}: authenticated but malformed ({exc})") from None
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexIntegrityError(f"{path}: holds a {type(index).__name__}, not an id map")
        faiss_ids = faiss.vector_to_array(index.id_map).tolist()
        if metadata.format != FORMAT_VERSION:
            raise WatchlistIndexError(f"{path} has index format {metadata.format}; this reader "
                                      f"understands format {FORMAT_VERSION}")
        inconsistent = (
            (metadata.version, metadata.pack) != (clear.version, clear.pack)
            or index.d != metadata.dim
            or index.ntotal != metadata.count
            or len(entry_ids) != metadata.count
            or faiss_ids != template_ids
        )
        if inconsistent:
            raise IndexIntegrityError(f"{path}: encrypted header disagrees with the index")
        return cls(index, metadata, dict(zip(template_ids, entry_ids, strict=True)))

    @property
    def version(self) -> int:
        return self.metadata.version

    @property
    def pack(self) -> str:
        return self.metadata.pack

    @property
    def dim(self) -> int:
        return self.metadata.dim

    @property
    def size(self) -> int:
        return self.metadata.count

    def __len__(self) -> int:
        return self.metadata.count

    def entry_ids(self) -> frozenset[str]:
        """The entries this version holds: what a box may still keep anything about."""
        return frozenset(self._entries.values())

    def apply(self, delta: IndexDelta) -> WatchlistIndex:
        """A new index: this one with `delta`'s templates removed and added; this one untouched.

        The copy is what lets the box keep searching the old version until the
        new one is complete, and a delta that does not fit leave it as it was.
        Refused (`DeltaMismatchError`) unless the delta starts at this version,
        for this pack and dimension, removes only templates held here (of the
        entry held here) and adds only templates not held. An HNSW index cannot
        remove vectors (`DeltaUnsupportedError`): the box fetches the whole index.
        Measured with ``python -m benchmarks.index_delta``.
        """
        self._check_delta(delta)
        if self.metadata.kind == KIND_HNSW:  # flat and IVF indexes remove in place
            raise DeltaUnsupportedError(
                f"a {self.metadata.kind} index cannot remove templates; fetch the whole index")
        index = faiss.clone_index(self._index)
        if delta.removed:
            # faiss's Python wrapper turns an id array into a selector; its stubs do not know.
            index.remove_ids(np.fromiter(delta.removed, dtype=np.int64,  # type: ignore[arg-type]
                                         count=len(delta.removed)))
        if delta.added_ids.size:
            index.add_with_ids(delta.vectors, delta.added_ids)
        entries = {t: e for t, e in self._entries.items() if t not in delta.removed}
        entries.update(zip(delta.added_ids.tolist(), delta.added_entries, strict=True))
        if index.ntotal != len(entries):
            raise DeltaMismatchError("the delta left the index and its entry map disagreeing")
        metadata = IndexMetadata(format=FORMAT_VERSION, version=delta.version, pack=self.pack,
                                 dim=self.dim, count=len(entries),
                                 created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                                 kind=self.metadata.kind)
        return WatchlistIndex(index, metadata, entries)

    def _check_delta(self, delta: IndexDelta) -> None:
        if (delta.since, delta.pack, delta.dim) != (self.version, self.pack, self.dim):
            raise DeltaMismatchError(
                f"the delta goes from version {delta.since} (pack {delta.pack!r}, dim "
                f"{delta.dim}); this index is version {self.version} (pack {self.pack!r}, "
                f"dim {self.dim})")
        if any(self._entries.get(t) != e for t, e in delta.removed.items()):
            raise DeltaMismatchError("the delta removes a template this index does not hold")
        if any(int(t) in self._entries for t in delta.added_ids):
            raise DeltaMismatchError("the delta adds a template this index already holds")

    def sealed(self, key: bytes) -> bytes:
        """This index as a sealed index file (`publish_index`'s format), e.g. for a box's cache
        after a delta: the cache then holds no template a delta removed (G-REG-4)."""
        index = self._index
        assert isinstance(index, faiss.IndexIDMap2), "load and apply only make id maps"
        ids = faiss.vector_to_array(index.id_map).tolist()
        return _seal_index(_sealer(key), self._index, version=self.version, pack=self.pack,
                           kind=self.metadata.kind, ids=ids,
                           entries=[self._entries[t] for t in ids])

    def search(self, queries: npt.ArrayLike, k: int = 1) -> list[list[Hit]]:
        """Top-`k` templates per query by inner product, best first.

        `queries` is (n, dim) float32 (one (dim,) vector is taken as n = 1).
        Fewer than `k` hits come back when the index holds fewer templates;
        an empty index gives an empty list per query. Whether a hit is a match
        is the caller's decision, at the pack's calibrated threshold.
        """
        if k < 1:
            raise WatchlistIndexError(f"k must be at least 1, got {k}")
        matrix = self._as_queries(queries)
        if self.size == 0:
            return [[] for _ in range(len(matrix))]
        with _single_thread_if(len(matrix) == 1):
            scores, ids = self._index.search(matrix, min(k, self.size))
        return [
            [
                Hit(self._entries[int(i)], int(i), float(s))
                for s, i in zip(row_scores, row_ids, strict=True)
                if i >= 0
            ]
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def _as_queries(self, queries: npt.ArrayLike) -> npt.NDArray[np.float32]:
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise WatchlistIndexError(
                f"queries must be (n, {self.dim}) for pack {self.pack!r}, got {matrix.shape}"
            )
        if not np.isfinite(matrix).all():
            raise WatchlistIndexError("a query holds a non-finite value")
        return np.ascontiguousarray(matrix)


@contextlib.contextmanager
def _single_thread_if(single: bool) -> Iterator[None]:
    """One OpenMP thread for a single query: 2-3x faster than two on the store box.

    (shared/PERFORMANCE-NOTES.md; more threads only pay for batches.) The
    previous setting is restored so batched callers keep their threads.
    """
    if not single:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)

"""Evidence images and alert snapshots as sealed `bytea` in a chain's database (issue 15).

The same `EvidenceImages` interface as the folder store (`kernel.evidence`), the
same sealing (kind EVIDENCE, the key derived for evidence, bound to the image
id): a row holds exactly the bytes an evidence file would, so PostgreSQL sees
ciphertext only, a value copied under another id fails authentication, and
every API host reads the images a box sent to any other host.

Why in the database and not in files next to it: a chain runs several API
hosts and no shared file system; one database keeps an entry's evidence in
the same transaction boundary and the same backup (`pg_dump`) as the entry.
The cost was measured (tests/registry/test_chain_flows.py prints it).

Erasure: `DELETE` removes the row; PostgreSQL reclaims the dead tuple's space
at the next vacuum, until then the sealed bytes stay on its disk, readable
only with the registry's key (as with a file on flash storage, kernel.evidence).
"""

from __future__ import annotations

import hashlib

from kernel.errors import SealedFileError
from kernel.evidence import (
    KEY_BYTES,
    EvidenceError,
    EvidenceImages,
    EvidenceIntegrityError,
    EvidenceNotFoundError,
    StoredImage,
    validate_image_id,
)
from kernel.sealed import EVIDENCE, Sealer
from registry.storage.postgres.base import PgConnection


class PostgresEvidence(EvidenceImages):
    """`EvidenceImages` on the `evidence_images` table; writes join the caller's transaction."""

    def __init__(self, connection: PgConnection, key: bytes) -> None:
        """`key`: 32 bytes derived from the master key for evidence, never the master key."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"evidence key must be {KEY_BYTES} bytes")
        self._db = connection
        self._sealer = Sealer(EVIDENCE, bytes(key))

    def __repr__(self) -> str:
        return "PostgresEvidence()"  # never the key

    def rebind(self, connection: PgConnection) -> None:
        self._db = connection

    def use_key(self, key: bytes) -> None:
        """Seal and open under another evidence key from now on (after a key rotation)."""
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"evidence key must be {KEY_BYTES} bytes")
        self._sealer = Sealer(EVIDENCE, bytes(key))

    def get_bytes(self, image_id: str) -> bytes:
        row = self._db.execute("SELECT png FROM evidence_images WHERE image_id = %s",
                               (validate_image_id(image_id),)).fetchone()
        if row is None:
            raise EvidenceNotFoundError(f"no evidence image {image_id}")
        try:
            return self._sealer.open(bytes(row[0]), name=f"evidence {image_id}",
                                     context=image_id.encode())
        except SealedFileError as exc:
            raise EvidenceIntegrityError(str(exc)) from None

    def delete(self, image_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM evidence_images WHERE image_id = %s",
                                  (validate_image_id(image_id),))
        return cursor.rowcount > 0

    def ids(self) -> set[str]:
        return {str(row[0]) for row in
                self._db.execute("SELECT image_id FROM evidence_images").fetchall()}

    def _put_new(self, image_id: str, png: bytes) -> StoredImage:
        sealed = self._sealer.seal(png, context=image_id.encode())
        # One statement, one round trip (no savepoint around it): a used id inserts nothing
        # instead of failing, so a unit of work around it stays usable.
        inserted = self._db.execute(
            "INSERT INTO evidence_images (image_id, png) VALUES (%s, %s) "
            "ON CONFLICT (image_id) DO NOTHING RETURNING 1", (image_id, sealed)).fetchone()
        if inserted is None:
            raise EvidenceError(f"evidence {image_id} already exists; evidence is write-once")
        return StoredImage(image_id=image_id, sha256=hashlib.sha256(png).hexdigest())

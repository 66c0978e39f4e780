"""Key rotation on a chain's PostgreSQL registry: every sealed value under the new key (issue 15).

SQLCipher re-keys a file; here the application sealed each personal column
(`schema.PERSONAL_COLUMNS`) and each evidence image itself, so the rotation
opens every one of them under the old key and seals it again under the new
one, bound to the same table, column and row key, then seals the key canary
under the new key: all in ONE transaction, so the database is under the old
key or the new one, never half of each.

Resumable like SQLCipher's rotation: a value that already opens under the new
key is left as it is. After a crash between this transaction's commit and
the key file's promotion, the next open finds the canary under the pending key
and runs the rotation again: it then changes nothing but the canary's seal.

`ROW_KEYS` says, per table, the SQL expression of the row key each store seals
with (the third argument of `FieldSealer.seal`); a test checks it covers
every personal column, and the rotation tests open each value through the
repository afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kernel.errors import RegistryError, SealedFileError
from kernel.sealed import EVIDENCE, Sealer
from registry.keys.master import MasterKey
from registry.storage.postgres.base import FieldSealer, PgConnection
from registry.storage.postgres.schema import PERSONAL_COLUMNS

# table (without schema) -> the SQL expression of its row key, as the stores seal with it
ROW_KEYS: Mapping[str, str] = {
    "entries": "entry_id",
    "incidents": "incident_id::text",
    "templates": "template_id::text",
    "alerts": "alert_id",
    "emergency_shares": "share_id",
    "emergency_share_checks": "share_id || '/' || user_id::text",
    "data_requests": "request_id",
    "entry_reviews": "review_id::text",
    "audit_texts": "entry_id || '/' || sha256",
    # Breach records have no PostgreSQL store yet: their primary key, the natural choice. A
    # row sealed otherwise fails to open, and the whole rotation is rolled back.
    "breach_incidents": "incident_id",
    "breach_actions": "action_id::text",
}
EVIDENCE_TABLE = "evidence_images"  # sealed by `PostgresEvidence` (kind EVIDENCE), not fields


class RotationError(RegistryError):
    """A sealed value opens under neither key: nothing was changed."""


@dataclass(frozen=True)
class Resealed:
    """How many values moved to the new key, and how many were already under it."""

    moved: int
    already_new: int


class _Keys:
    def __init__(self, old: MasterKey, new: MasterKey) -> None:
        self.old_fields = FieldSealer(old.derive("database-fields"))
        self.new_fields = FieldSealer(new.derive("database-fields"))
        self.old_evidence = Sealer(EVIDENCE, old.derive("evidence"))
        self.new_evidence = Sealer(EVIDENCE, new.derive("evidence"))


def _reseal_field(keys: _Keys, table: str, column: str, row: str,
                  blob: bytes) -> bytes | None:
    """The value sealed under the new key; None when it already is."""
    try:
        keys.new_fields.open(table, column, row, blob)
        return None
    except SealedFileError:
        pass
    try:
        clear = keys.old_fields.open(table, column, row, blob)
    except SealedFileError:
        raise RotationError(f"registry.{table}.{column} of one row opens under neither the old "
                            "nor the new key: the rotation was rolled back, nothing changed"
                            ) from None
    return keys.new_fields.seal(table, column, row, clear)


def _reseal_table(conn: PgConnection, keys: _Keys, table: str,
                  columns: tuple[str, ...]) -> Resealed:
    moved = already = 0
    listed = ", ".join(columns)
    rows = conn.execute(f"SELECT ctid, {ROW_KEYS[table]}, {listed} FROM registry.{table}"
                        ).fetchall()
    for row in rows:
        changes: dict[str, bytes] = {}
        for column, blob in zip(columns, row[2:], strict=True):
            if blob is None:
                continue
            sealed = _reseal_field(keys, table, column, str(row[1]), bytes(blob))
            if sealed is None:
                already += 1
            else:
                changes[column] = sealed
        if changes:
            assignments = ", ".join(f"{c} = %s" for c in changes)
            conn.execute(f"UPDATE registry.{table} SET {assignments} WHERE ctid = %s",
                         (*changes.values(), row[0]))
            moved += len(changes)
    return Resealed(moved, already)


def _reseal_evidence(conn: PgConnection, keys: _Keys) -> Resealed:
    moved = already = 0
    ids = [str(r[0]) for r in conn.execute(
        f"SELECT image_id FROM registry.{EVIDENCE_TABLE} ORDER BY image_id").fetchall()]
    for image_id in ids:
        row = conn.execute(f"SELECT png FROM registry.{EVIDENCE_TABLE} WHERE image_id = %s",
                           (image_id,)).fetchone()
        assert row is not None
        blob, context = bytes(row[0]), image_id.encode()
        try:
            keys.new_evidence.open(blob, name=f"evidence {image_id}", context=context)
            already += 1
            continue
        except SealedFileError:
            pass
        try:
            png = keys.old_evidence.open(blob, name=f"evidence {image_id}", context=context)
        except SealedFileError:
            raise RotationError(f"evidence {image_id} opens under neither the old nor the new "
                                "key: the rotation was rolled back, nothing changed") from None
        conn.execute(f"UPDATE registry.{EVIDENCE_TABLE} SET png = %s WHERE image_id = %s",
                     (keys.new_evidence.seal(png, context=context), image_id))
        moved += 1
    return Resealed(moved, already)


def reseal_database(conn: PgConnection, old: MasterKey, new: MasterKey,
                    write_canary: Callable[[PgConnection, MasterKey], None]) -> Resealed:
    """Every personal column and evidence image under `new`, then the canary; one transaction.

    `write_canary(conn, new)` seals the key canary (passed in: it lives with the open checks).
    Every sealed table is locked against writers for the transaction's length.
    """
    keys = _Keys(old, new)
    tables = [name.removeprefix("registry.") for name in PERSONAL_COLUMNS]
    moved = already = 0
    with conn.transaction():
        conn.execute("LOCK TABLE " + ", ".join(f"registry.{t}" for t in tables)
                     + " IN EXCLUSIVE MODE")
        for table in tables:
            if table == EVIDENCE_TABLE:
                done = _reseal_evidence(conn, keys)
            else:
                done = _reseal_table(conn, keys, table,
                                     tuple(PERSONAL_COLUMNS[f"registry.{table}"]))
            moved, already = moved + done.moved, already + done.already_new
        write_canary(conn, new)
    return Resealed(moved, already)

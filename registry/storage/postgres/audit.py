"""The hash-chained audit trail (schema `audit`) and its free texts, on PostgreSQL (issue 15).

`AuditTrail` (registry/audit/trail.py) reads the head with `last_audit`,
computes the next record's hash over (seq, content, previous hash) and writes
it with `append_audit`. On SQLCipher one writer at a time holds the file; a
chain's database takes appends from several API workers at once, and two of
them reading the same head would fork the chain (two records claiming the
same predecessor). Two guards keep it one chain:

- inside a transaction, `last_audit` first takes a transaction-level advisory
  lock (`pg_advisory_xact_lock`), held until the use case commits or rolls
  back, so the next worker reads the head only after this one's record is
  committed (READ COMMITTED: its next statement sees it). The application
  role may not `SELECT ... FOR UPDATE` the audit tables (SELECT/INSERT only),
  and a row lock could not cover a head that does not exist yet anyway;
- `append_audit` takes the same lock, re-reads the head and refuses a record
  whose `prev_hash` is not the head's hash (`ConflictError`), so a record
  written outside a unit of work, where no lock spans read and write, fails
  loudly instead of forking. The record's `seq` is the head's plus one, given
  explicitly (the column has no default, as the hash covers it).

Both run server-side, one round trip each (`audit.locked_head`, `audit.append`,
schema step 7): as separate statements they were seven per alert (issue 15,
2,000 boxes). Inside a function each statement takes a fresh snapshot, so the
head is still read after the lock is held.

The application role cannot update or delete records (grants and triggers,
schema.py); pruning is the SECURITY DEFINER function `audit.prune`, which
writes the anchor before it deletes, in the caller's transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import pq

from kernel.errors import ConflictError
from registry.repository import AuditRow
from registry.storage.postgres.base import PostgresStore

# pg_advisory_xact_lock key of the trail's head: "mamoruAT" (the migration lock is "mamoru"),
# taken by the functions `audit.locked_head` and `audit.append` (schema step 7)
AUDIT_HEAD_LOCK = 0x6D616D6F72754154
_HEAD_MOVED = "MA409"  # SQLSTATE of `audit.append` refusing a record that does not follow
# Rows fetched per round trip while a server-side cursor walks the trail
_BATCH = 1000
_cursor_names = itertools.count(1)


@dataclass(frozen=True)
class _AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    entry_id: str | None
    details: str
    prev_hash: str
    hash: str


class PostgresAudit(PostgresStore):
    """`AuditRepository`: `audit.records`, `audit.prune_anchors` and `registry.audit_texts`."""

    def _in_transaction(self) -> bool:
        return self._db.info.transaction_status == pq.TransactionStatus.INTRANS

    def append_audit(
        self, at: str, actor: str, action: str, entry_id: str | None, details: str,
        prev_hash: str, hash_: str,
    ) -> int:
        # One round trip: lock, head check and insert in `audit.append` (schema step 7).
        try:
            row = self._one("SELECT audit.append(%s, %s, %s, %s, %s, %s, %s)",
                            (at, actor, action, entry_id, details, prev_hash, hash_))
        except psycopg.Error as exc:
            if exc.sqlstate == _HEAD_MOVED:
                raise ConflictError(
                    "the audit trail's head moved while this record was prepared (another "
                    "worker appended first); the use case was not recorded, retry it") from None
            raise
        return int(row[0])

    def last_audit(self) -> tuple[int, str] | None:
        if self._in_transaction():
            # The head read of an append: no other worker appends until this one commits.
            row = self._one("SELECT head_seq, head_hash FROM audit.locked_head()")
        else:
            row = self._one("SELECT seq, hash FROM audit.records ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row and row[0] is not None else None

    def audit_hash(self, seq: int) -> str | None:
        row = self._one("SELECT hash FROM audit.records WHERE seq = %s", (seq,))
        return str(row[0]) if row else None

    def last_audit_details(self, action: str) -> str | None:
        row = self._one("SELECT details FROM audit.records WHERE action = %s "
                        "ORDER BY seq DESC LIMIT 1", (action,))
        return str(row[0]) if row else None

    def audit_anchor(self) -> tuple[int, str] | None:
        row = self._one("SELECT seq, hash FROM audit.prune_anchors ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else None

    def prune_audit(self, through_seq: int, hash_: str, record_at: str, pruned_at: str,
                    records: int) -> None:
        # audit.prune checks the record, writes the anchor first, deletes, and counts.
        self._db.execute("SELECT audit.prune(%s, %s, %s, %s, %s)",
                         (through_seq, hash_, record_at, pruned_at, records))

    def audit_rows(self, since_seq: int = 0) -> Iterator[AuditRow]:
        """Every record after `since_seq`, in order, from one snapshot (as a SQLite cursor).

        A server-side cursor WITH HOLD: the trail is read in batches, not loaded
        whole, and other queries may run on the connection while it is walked.
        """
        cursor = self._db.cursor(f"audit_rows_{next(_cursor_names)}", withhold=True)
        cursor.itersize = _BATCH
        try:
            cursor.execute(
                "SELECT seq, at, actor, action, entry_id, details, prev_hash, hash "
                "FROM audit.records WHERE seq > %s ORDER BY seq", (since_seq,))
            for row in cursor:
                yield _AuditRow(*row)
        finally:
            cursor.close()

    def add_audit_text(self, entry_id: str, sha256: str, text: str) -> None:
        self._db.execute(
            "INSERT INTO audit_texts (entry_id, sha256, text) VALUES (%s, %s, %s) "
            "ON CONFLICT (entry_id, sha256) DO NOTHING",
            (entry_id, sha256, self._fields.seal_text("audit_texts", "text",
                                                      _text_key(entry_id, sha256), text)),
        )

    def audit_text(self, entry_id: str, sha256: str) -> str | None:
        row = self._one("SELECT text FROM audit_texts WHERE entry_id = %s AND sha256 = %s",
                        (entry_id, sha256))
        if not row:
            return None
        return self._fields.open_text("audit_texts", "text", _text_key(entry_id, sha256), row[0])


def _text_key(entry_id: str, sha256: str) -> str:
    """The row key an audit text is sealed to: its primary key (entry, digest)."""
    return f"{entry_id}/{sha256}"

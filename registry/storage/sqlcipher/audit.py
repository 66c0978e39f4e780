"""The hash-chained audit trail (the attached `audit` database) and its free texts, on SQLCipher."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from registry.repository import AuditRow
from registry.storage.sqlcipher.base import SqlCipherStore


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


class SqlCipherAudit(SqlCipherStore):
    """`AuditRepository`: the `audit.records`, `audit.prune_anchors` and `audit_texts` tables."""

    def append_audit(
        self, at: str, actor: str, action: str, entry_id: str | None, details: str,
        prev_hash: str, hash_: str,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO audit.records (at, actor, action, entry_id, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, actor, action, entry_id, details, prev_hash, hash_),
        )
        return int(cursor.lastrowid or 0)

    def last_audit(self) -> tuple[int, str] | None:
        row = self._one("SELECT seq, hash FROM audit.records ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else None

    def audit_hash(self, seq: int) -> str | None:
        row = self._one("SELECT hash FROM audit.records WHERE seq = ?", (seq,))
        return str(row[0]) if row else None

    def last_audit_details(self, action: str) -> str | None:
        row = self._one("SELECT details FROM audit.records WHERE action = ? "
                        "ORDER BY seq DESC LIMIT 1", (action,))
        return str(row[0]) if row else None

    def audit_anchor(self) -> tuple[int, str] | None:
        row = self._one("SELECT seq, hash FROM audit.prune_anchors ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else None

    def prune_audit(self, through_seq: int, hash_: str, record_at: str, pruned_at: str,
                    records: int) -> None:
        # The anchor first: the delete trigger allows no record after the newest anchor.
        self._db.execute(
            "INSERT INTO audit.prune_anchors (seq, hash, record_at, pruned_at, records) "
            "VALUES (?, ?, ?, ?, ?)",
            (through_seq, hash_, record_at, pruned_at, records),
        )
        self._db.execute("DELETE FROM audit.records WHERE seq <= ?", (through_seq,))

    def audit_rows(self, since_seq: int = 0) -> Iterator[AuditRow]:
        rows = self._db.execute(
            "SELECT seq, at, actor, action, entry_id, details, prev_hash, hash "
            "FROM audit.records WHERE seq > ? ORDER BY seq",
            (since_seq,),
        )
        for row in rows:
            yield _AuditRow(*row)

    def add_audit_text(self, entry_id: str, sha256: str, text: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO audit_texts (entry_id, sha256, text) VALUES (?, ?, ?)",
            (entry_id, sha256, text),
        )

    def audit_text(self, entry_id: str, sha256: str) -> str | None:
        row = self._one("SELECT text FROM audit_texts WHERE entry_id = ? AND sha256 = ?",
                        (entry_id, sha256))
        return str(row[0]) if row else None

"""The audit trail's head and base anchors in a chain's database (issue 15).

On one box they are side files (`audit.head`, `audit.base`) next to the
SQLCipher files, so cutting records off the end or the start of the trail is
caught. A chain's API hosts share no file system, and a per-host file would
anchor only what that host wrote; so here both live in the database, in
tables the application role can append to and read but never change or
delete, for any role, the owner included (schema.py's triggers):

- the head is the newest row of `audit.head_anchors`, appended after each
  writing use case (`AuditTrail.anchor_head`, same rule: only forward along
  the chain);
- the base is the newest `audit.prune_anchors` row, which `audit.prune`
  writes in the same transaction as it deletes records, so `write_base`
  has nothing left to do before the prune.

What this guards against is weaker than a file on another disk: someone who
can disable the triggers (a superuser) can cut both the records and the
anchors. What it keeps is AuditTrail's verification, unchanged, for every
host at once.
"""

from __future__ import annotations

from kernel.errors import RegistryError
from registry.audit.trail import Pair
from registry.storage.postgres.base import PgConnection


class PostgresAnchors:
    """`TrailAnchors` on `audit.head_anchors` and `audit.prune_anchors`."""

    head_name = "audit.head_anchors"
    base_name = "audit.prune_anchors"

    def __init__(self, connection: PgConnection) -> None:
        self._db = connection

    def rebind(self, connection: PgConnection) -> None:
        self._db = connection

    def head_present(self) -> bool:
        return self.read_head() is not None

    def read_head(self) -> Pair | None:
        row = self._db.execute(
            "SELECT seq, hash FROM audit.head_anchors ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def write_head(self, seq: int, digest: str) -> None:
        self._db.execute("INSERT INTO audit.head_anchors (seq, hash) VALUES (%s, %s) "
                         "ON CONFLICT (seq) DO NOTHING", (seq, digest))

    def clear_head(self) -> None:
        raise RegistryError("the audit trail's head anchors on PostgreSQL are append-only; "
                            "a restore re-bases them with PostgreSQL's own tools")

    def read_base(self) -> Pair | None:
        row = self._db.execute(
            "SELECT seq, hash FROM audit.prune_anchors ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def write_base(self, seq: int, digest: str) -> None:
        """Nothing to do: `audit.prune` writes the anchor in the prune's own transaction."""

"""Watchlist entries, their face data and what the published index follows, on SQLCipher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kernel.errors import NotFoundError
from registry.clock import from_text, to_text
from registry.domain import (
    ConfirmationKind,
    Entry,
    EntryState,
    EvidenceRecord,
    Incident,
    IncidentInput,
    IndexChanges,
    OffenceCategory,
    TemplateRecord,
    net_index_changes,
)
from registry.storage.sqlcipher.base import SqlCipherStore

_ENTRY_COLUMNS = (
    "entry_id, state, store_id, features, display_name, proposed_by, proposed_at, decided_by, "
    "decided_at, decision_reason, expires_at, revision, closed_at, closed_reason"
)


def _entry(row: Any) -> Entry:
    return Entry(
        entry_id=row[0], state=EntryState(row[1]), store_id=row[2], features=row[3],
        display_name=row[4], proposed_by=row[5], proposed_at=from_text(row[6]),
        decided_by=row[7], decided_at=from_text(row[8]) if row[8] else None,
        decision_reason=row[9], expires_at=from_text(row[10]) if row[10] else None,
        revision=row[11], closed_at=from_text(row[12]) if row[12] else None,
        closed_reason=row[13],
    )


def _incident(row: Any) -> Incident:
    return Incident(
        incident_id=row[0], entry_id=row[1], store_id=row[2], category=OffenceCategory(row[3]),
        occurred_at=from_text(row[4]), confirmation_kind=ConfirmationKind(row[5]),
        confirmation_ref=row[6], damage=row[7], description=row[8], recorded_by=row[9],
        recorded_at=from_text(row[10]),
    )


def _entry_params(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.entry_id, entry.state.value, entry.store_id, entry.features, entry.display_name,
        entry.proposed_by, to_text(entry.proposed_at), entry.decided_by,
        to_text(entry.decided_at) if entry.decided_at else None, entry.decision_reason,
        to_text(entry.expires_at) if entry.expires_at else None, entry.revision,
        to_text(entry.closed_at) if entry.closed_at else None, entry.closed_reason,
    )


class SqlCipherEntries(SqlCipherStore):
    """`EntryRepository`: the `entries`, `registration_criteria` and `incidents` tables."""

    def add_entry(self, entry: Entry) -> None:
        self._db.execute(
            f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            _entry_params(entry),
        )

    def entry(self, entry_id: str) -> Entry | None:
        row = self._one(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE entry_id = ?", (entry_id,))
        return _entry(row) if row else None

    def entries(self, states: Sequence[EntryState] | None = None) -> list[Entry]:
        if states is None:
            rows = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY proposed_at")
        else:
            marks = ", ".join("?" * len(states))
            rows = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state IN ({marks}) "
                "ORDER BY proposed_at",
                [s.value for s in states],
            )
        return [_entry(r) for r in rows]

    def set_criteria_version(self, entry_id: str, sha256: str, category: str, criteria: str,
                             at: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO registration_criteria (sha256, category, criteria, "
            "first_used_at) VALUES (?, ?, ?, ?)", (sha256, category, criteria, to_text(at)))
        cursor = self._db.execute("UPDATE entries SET criteria_sha256 = ? WHERE entry_id = ?",
                                  (sha256, entry_id))
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry_id}")

    def criteria_version_of(self, entry_id: str) -> tuple[str, str] | None:
        row = self._one(
            "SELECT e.criteria_sha256, c.criteria FROM entries e JOIN registration_criteria c "
            "ON c.sha256 = e.criteria_sha256 WHERE e.entry_id = ?", (entry_id,))
        return (str(row[0]), str(row[1])) if row else None

    def due_for_expiry(self, now: datetime) -> list[Entry]:
        rows = self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state = 'active' AND expires_at <= ? "
            "ORDER BY expires_at",
            (to_text(now),),
        )
        return [_entry(r) for r in rows]

    def update_entry(self, entry: Entry) -> None:
        params = _entry_params(entry)
        assignments = ", ".join(f"{c.strip()} = ?" for c in _ENTRY_COLUMNS.split(",")[1:])
        cursor = self._db.execute(
            f"UPDATE entries SET {assignments} WHERE entry_id = ?", (*params[1:], params[0])
        )
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry.entry_id}")

    def add_incident(
        self, entry_id: str, store_id: str, incident: IncidentInput, by: int, now: datetime
    ) -> Incident:
        cursor = self._db.execute(
            "INSERT INTO incidents (entry_id, store_id, category, occurred_at, confirmation_kind, "
            "confirmation_ref, damage, description, recorded_by, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry_id, store_id, incident.category.value, to_text(incident.occurred_at),
                incident.confirmation_kind.value, incident.confirmation_ref, incident.damage,
                incident.description, by, to_text(now),
            ),
        )
        return Incident(
            int(cursor.lastrowid or 0), entry_id, store_id, incident.category, incident.occurred_at,
            incident.confirmation_kind, incident.confirmation_ref, incident.damage,
            incident.description, by, now,
        )

    def incidents(self, entry_id: str) -> list[Incident]:
        rows = self._db.execute(
            "SELECT incident_id, entry_id, store_id, category, occurred_at, confirmation_kind, "
            "confirmation_ref, damage, description, recorded_by, recorded_at FROM incidents "
            "WHERE entry_id = ? ORDER BY occurred_at",
            (entry_id,),
        )
        return [_incident(r) for r in rows]


class SqlCipherFaceData(SqlCipherStore):
    """`FaceDataRepository`: the `templates` and `evidence` tables.

    The purge also reaches incidents, alert snapshots and audit texts: one eraser.
    """

    def add_template(
        self, entry_id: str, pack: str, vector: bytes, dim: int, image_id: str, quality: str
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO templates (entry_id, pack, dim, vector, image_id, quality) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry_id, pack, dim, vector, image_id, quality),
        )
        return int(cursor.lastrowid or 0)

    def templates(self, entry_id: str) -> list[TemplateRecord]:
        rows = self._db.execute(
            "SELECT template_id, entry_id, pack, vector, image_id, quality FROM templates "
            "WHERE entry_id = ? ORDER BY template_id",
            (entry_id,),
        )
        return [TemplateRecord(*r) for r in rows]

    def active_templates(self, pack: str) -> list[TemplateRecord]:
        rows = self._db.execute(
            "SELECT t.template_id, t.entry_id, t.pack, t.vector, t.image_id, t.quality "
            "FROM templates t JOIN entries e ON e.entry_id = t.entry_id "
            "WHERE e.state = 'active' AND t.pack = ? "
            "AND e.entry_id NOT IN (SELECT entry_id FROM entry_suspensions) "
            "ORDER BY t.template_id",
            (pack,),
        )
        return [TemplateRecord(*r) for r in rows]

    def add_evidence(self, record: EvidenceRecord) -> None:
        self._db.execute(
            "INSERT INTO evidence (image_id, entry_id, sha256, masked_faces, added_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (record.image_id, record.entry_id, record.sha256, record.masked_faces,
             to_text(record.added_at)),
        )

    def evidence(self, entry_id: str) -> list[EvidenceRecord]:
        rows = self._db.execute(
            "SELECT image_id, entry_id, sha256, masked_faces, added_at FROM evidence "
            "WHERE entry_id = ? ORDER BY added_at, image_id",
            (entry_id,),
        )
        return [EvidenceRecord(r[0], r[1], r[2], r[3], from_text(r[4])) for r in rows]

    def all_evidence_ids(self) -> set[str]:
        rows = self._db.execute(
            "SELECT image_id FROM evidence UNION "
            "SELECT snapshot_image_id FROM alerts WHERE snapshot_image_id IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    def purge_face_data(self, entry_id: str) -> list[str]:
        image_ids = [
            str(r[0])
            for r in self._db.execute(
                "SELECT image_id FROM evidence WHERE entry_id = ?", (entry_id,))
        ]
        image_ids += [
            str(r[0])
            for r in self._db.execute(
                "SELECT snapshot_image_id FROM alerts "
                "WHERE entry_id = ? AND snapshot_image_id IS NOT NULL",
                (entry_id,),
            )
        ]
        for table in ("templates", "evidence", "incidents", "audit_texts"):
            self._db.execute(f"DELETE FROM {table} WHERE entry_id = ?", (entry_id,))
        # The alerts stay as a record that a match happened; the picture of the person and
        # what staff typed about it go (the audit trail keeps that text's hash only).
        self._db.execute(
            "UPDATE alerts SET snapshot_image_id = NULL, decision_reason = '' WHERE entry_id = ?",
            (entry_id,),
        )
        return image_ids


class SqlCipherIndex(SqlCipherStore):
    """`IndexRepository`: the watchlist version in `meta` and the `entry_suspensions` table."""

    def watchlist_version(self) -> int:
        return int(self._one("SELECT value FROM meta WHERE key = 'watchlist_version'")[0])

    def bump_watchlist_version(self) -> int:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'watchlist_version'"
        )
        return self.watchlist_version()

    def raise_watchlist_version(self, at_least: int) -> int:
        self._db.execute(
            "UPDATE meta SET value = max(CAST(value AS INTEGER), ?)"
            " WHERE key = 'watchlist_version'",
            (at_least,),
        )
        return self.watchlist_version()

    def suspend_entry(self, entry_id: str, since: datetime, source: str) -> None:
        self._db.execute(
            "INSERT INTO entry_suspensions (entry_id, since, source) VALUES (?, ?, ?) "
            "ON CONFLICT (entry_id) DO NOTHING",
            (entry_id, to_text(since), source),
        )

    def unsuspend_entry(self, entry_id: str) -> None:
        self._db.execute("DELETE FROM entry_suspensions WHERE entry_id = ?", (entry_id,))

    def suspended_entries(self) -> dict[str, str]:
        return {str(r[0]): str(r[1])
                for r in self._db.execute("SELECT entry_id, source FROM entry_suspensions")}

    def index_members(self) -> dict[int, str]:
        return {int(r[0]): str(r[1])
                for r in self._db.execute("SELECT template_id, entry_id FROM index_members")}

    def log_index_version(self, version: int, added: Mapping[int, str],
                          removed: Mapping[int, str], at: datetime) -> bool:
        newest = self._one("SELECT max(version) FROM index_log_versions")[0]
        if newest is not None and version <= int(newest):
            return False
        self._db.execute("INSERT INTO index_log_versions (version, logged_at) VALUES (?, ?)",
                         (version, to_text(at)))
        if newest is not None:  # the first version is the base: no box holds anything older
            self._db.executemany(
                "INSERT INTO index_log_changes (version, template_id, entry_id, added) "
                "VALUES (?, ?, ?, ?)",
                [(version, t, e, 1) for t, e in added.items()]
                + [(version, t, e, 0) for t, e in removed.items()],
            )
        self._db.executemany("DELETE FROM index_members WHERE template_id = ?",
                             [(t,) for t in removed])
        self._db.executemany("INSERT INTO index_members (template_id, entry_id) VALUES (?, ?)",
                             list(added.items()))
        return True

    def index_changes(self, since: int) -> IndexChanges | None:
        if self._one("SELECT 1 FROM index_log_versions WHERE version = ?", (since,)) is None:
            return None
        newest = int(self._one("SELECT max(version) FROM index_log_versions")[0])
        rows = self._db.execute(
            "SELECT version, template_id, entry_id, added FROM index_log_changes "
            "WHERE version > ? ORDER BY version, template_id", (since,)).fetchall()
        return net_index_changes(since, newest,
                                 [(int(r[0]), int(r[1]), str(r[2]), bool(r[3])) for r in rows])

    def prune_index_log(self, *, keep_versions: int, logged_before: datetime) -> int:
        newest = self._one("SELECT max(version) FROM index_log_versions")[0]
        if newest is None:
            return 0
        doomed = [int(r[0]) for r in self._db.execute(
            "SELECT version FROM index_log_versions WHERE version < ? "
            "AND (version <= ? OR logged_at < ?)",
            (newest, int(newest) - keep_versions, to_text(logged_before)))]
        self._db.executemany("DELETE FROM index_log_changes WHERE version = ?",
                             [(v,) for v in doomed])
        self._db.executemany("DELETE FROM index_log_versions WHERE version = ?",
                             [(v,) for v in doomed])
        return len(doomed)

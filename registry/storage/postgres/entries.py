"""Watchlist entries, their face data and what the published index follows, on PostgreSQL.

The PostgreSQL twin of `registry.storage.sqlcipher.entries` (issue 15): the same
queries and orderings, with the personal columns of `schema.PERSONAL_COLUMNS`
sealed by the application, each bound to its table, column and row key:

- `entries.features`, `display_name`, `decision_reason`, `closed_reason`: the entry id;
- `incidents.confirmation_ref`, `damage`, `description`: the incident id;
- `templates.vector`: the template id;
- `alerts.decision_reason` (blanked by the purge): the alert id.

An identity key is known only once the row exists, and the application role
may not draw from the sequence itself (it holds table privileges only), so a
row sealed under its generated id is inserted with empty placeholders and
sealed by an UPDATE in the same transaction (its own, or the caller's unit of
work): nobody ever sees the placeholder.

No query filters or orders by a sealed column (every ORDER BY is on a time or a
key), so nothing is sorted in Python. Ties on a time are broken by the key,
which PostgreSQL would otherwise leave in any order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

import psycopg

from kernel.errors import NotFoundError
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
from registry.storage.postgres.base import FieldSealer, PgConnection, PostgresStore, utc

_ENTRY_COLUMNS = (
    "entry_id, state, store_id, features, display_name, proposed_by, proposed_at, decided_by, "
    "decided_at, decision_reason, expires_at, revision, closed_at, closed_reason"
)
_INCIDENT_COLUMNS = (
    "incident_id, entry_id, store_id, category, occurred_at, confirmation_kind, "
    "confirmation_ref, damage, description, recorded_by, recorded_at"
)
_TEMPLATE_COLUMNS = "t.template_id, t.entry_id, t.pack, t.vector, t.image_id, t.quality"
_EMPTY = b""  # the placeholder of a column sealed right after its row's key exists
# Rows per round trip when streaming the whole index (chunked results need libpq 17+).
_STREAM_ROWS = 1000 if psycopg.pq.version() >= 170000 else 1

# Module functions rather than methods: the stores are composed into one class with the
# other aggregates' stores, where a private helper's name could collide.


def _at(moment: Any) -> datetime:
    """A NOT NULL time column as an aware UTC datetime."""
    opened = utc(moment)
    assert opened is not None, "a NOT NULL time column came back NULL"
    return opened


def _atomic(db: PgConnection) -> AbstractContextManager[Any]:
    """Several statements as one: in a transaction of their own, or in the caller's unit of
    work as they are (a failure there aborts it whole, so no savepoint round trips)."""
    if db.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        return nullcontext()
    return db.transaction()


def _seal(fields: FieldSealer, table: str, column: str, row: str | int, value: str) -> bytes:
    return fields.seal(table, column, row, value.encode("utf-8"))


def _open(fields: FieldSealer, table: str, column: str, row: str | int, blob: bytes) -> str:
    return fields.open(table, column, row, blob).decode("utf-8")


def _entry(fields: FieldSealer, row: Any) -> Entry:
    entry_id = str(row[0])
    return Entry(
        entry_id=entry_id, state=EntryState(row[1]), store_id=row[2],
        features=_open(fields, "entries", "features", entry_id, row[3]),
        display_name=_open(fields, "entries", "display_name", entry_id, row[4]),
        proposed_by=int(row[5]), proposed_at=_at(row[6]),
        decided_by=None if row[7] is None else int(row[7]), decided_at=utc(row[8]),
        decision_reason=_open(fields, "entries", "decision_reason", entry_id, row[9]),
        expires_at=utc(row[10]), revision=int(row[11]), closed_at=utc(row[12]),
        closed_reason=_open(fields, "entries", "closed_reason", entry_id, row[13]),
    )


def _entry_params(fields: FieldSealer, entry: Entry) -> tuple[Any, ...]:
    row = entry.entry_id
    return (
        row, entry.state.value, entry.store_id,
        _seal(fields, "entries", "features", row, entry.features),
        _seal(fields, "entries", "display_name", row, entry.display_name),
        entry.proposed_by, entry.proposed_at, entry.decided_by, entry.decided_at,
        _seal(fields, "entries", "decision_reason", row, entry.decision_reason),
        entry.expires_at, entry.revision, entry.closed_at,
        _seal(fields, "entries", "closed_reason", row, entry.closed_reason),
    )


def _incident(fields: FieldSealer, row: Any) -> Incident:
    incident_id = int(row[0])
    return Incident(
        incident_id=incident_id, entry_id=row[1], store_id=row[2],
        category=OffenceCategory(row[3]), occurred_at=_at(row[4]),
        confirmation_kind=ConfirmationKind(row[5]),
        confirmation_ref=_open(fields, "incidents", "confirmation_ref", incident_id, row[6]),
        damage=_open(fields, "incidents", "damage", incident_id, row[7]),
        description=_open(fields, "incidents", "description", incident_id, row[8]),
        recorded_by=int(row[9]), recorded_at=_at(row[10]),
    )


def _template(fields: FieldSealer, row: Any) -> TemplateRecord:
    template_id = int(row[0])
    return TemplateRecord(template_id, row[1], row[2],
                          fields.open("templates", "vector", template_id, row[3]), row[4], row[5])


class PostgresEntries(PostgresStore):
    """`EntryRepository`: the `entries`, `registration_criteria` and `incidents` tables."""

    def add_entry(self, entry: Entry) -> None:
        self._db.execute(
            f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})",
            _entry_params(self._fields, entry),
        )

    def entry(self, entry_id: str) -> Entry | None:
        row = self._one(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE entry_id = %s", (entry_id,))
        return _entry(self._fields, row) if row else None

    def entries(self, states: Sequence[EntryState] | None = None) -> list[Entry]:
        if states is None:
            rows = self._all(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY proposed_at, entry_id")
        else:
            rows = self._all(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state = ANY(%s) "
                "ORDER BY proposed_at, entry_id",
                ([s.value for s in states],),
            )
        return [_entry(self._fields, r) for r in rows]

    def due_for_expiry(self, now: datetime) -> list[Entry]:
        rows = self._all(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state = 'active' AND expires_at <= %s "
            "ORDER BY expires_at, entry_id",
            (now,),
        )
        return [_entry(self._fields, r) for r in rows]

    def update_entry(self, entry: Entry) -> None:
        params = _entry_params(self._fields, entry)
        assignments = ", ".join(f"{c.strip()} = %s" for c in _ENTRY_COLUMNS.split(",")[1:])
        cursor = self._db.execute(
            f"UPDATE entries SET {assignments} WHERE entry_id = %s", (*params[1:], params[0])
        )
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry.entry_id}")

    def set_criteria_version(self, entry_id: str, sha256: str, category: str, criteria: str,
                             at: datetime) -> None:
        self._db.execute(
            "INSERT INTO registration_criteria (sha256, category, criteria, first_used_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
            (sha256, category, criteria, at))
        cursor = self._db.execute("UPDATE entries SET criteria_sha256 = %s WHERE entry_id = %s",
                                  (sha256, entry_id))
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry_id}")

    def criteria_version_of(self, entry_id: str) -> tuple[str, str] | None:
        row = self._one(
            "SELECT e.criteria_sha256, c.criteria FROM entries e JOIN registration_criteria c "
            "ON c.sha256 = e.criteria_sha256 WHERE e.entry_id = %s", (entry_id,))
        return (str(row[0]), str(row[1])) if row else None

    def add_incident(
        self, entry_id: str, store_id: str, incident: IncidentInput, by: int, now: datetime
    ) -> Incident:
        # SQLCipher's CHECK (a non-blank reference, G-REG-2) moves here: the column is sealed.
        if not incident.confirmation_ref.strip():
            raise ValueError("an incident needs its confirmation reference (G-REG-2)")
        with _atomic(self._db):
            row = self._one(
                "INSERT INTO incidents (entry_id, store_id, category, occurred_at, "
                "confirmation_kind, confirmation_ref, damage, description, recorded_by, "
                "recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING incident_id",
                (entry_id, store_id, incident.category.value, incident.occurred_at,
                 incident.confirmation_kind.value, _EMPTY, _EMPTY, _EMPTY, by, now),
            )
            incident_id = int(row[0])
            self._db.execute(
                "UPDATE incidents SET confirmation_ref = %s, damage = %s, description = %s "
                "WHERE incident_id = %s",
                (*(_seal(self._fields, "incidents", column, incident_id, value)
                   for column, value in (("confirmation_ref", incident.confirmation_ref),
                                         ("damage", incident.damage),
                                         ("description", incident.description))),
                 incident_id),
            )
        return Incident(
            incident_id, entry_id, store_id, incident.category, incident.occurred_at,
            incident.confirmation_kind, incident.confirmation_ref, incident.damage,
            incident.description, by, now,
        )

    def incidents(self, entry_id: str) -> list[Incident]:
        rows = self._all(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE entry_id = %s "
            "ORDER BY occurred_at, incident_id",
            (entry_id,),
        )
        return [_incident(self._fields, r) for r in rows]


class PostgresFaceData(PostgresStore):
    """`FaceDataRepository`: the `templates` and `evidence` tables.

    The purge also reaches incidents, alert snapshots and audit texts: one eraser,
    in one transaction of its own or inside the caller's unit of work.
    """

    def add_template(
        self, entry_id: str, pack: str, vector: bytes, dim: int, image_id: str, quality: str
    ) -> int:
        with _atomic(self._db):
            row = self._one(
                "INSERT INTO templates (entry_id, pack, dim, vector, image_id, quality) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING template_id",
                (entry_id, pack, dim, _EMPTY, image_id, quality),
            )
            template_id = int(row[0])
            self._db.execute(
                "UPDATE templates SET vector = %s WHERE template_id = %s",
                (self._fields.seal("templates", "vector", template_id, vector), template_id),
            )
        return template_id

    def templates(self, entry_id: str) -> list[TemplateRecord]:
        rows = self._all(
            f"SELECT {_TEMPLATE_COLUMNS} FROM templates t WHERE t.entry_id = %s "
            "ORDER BY t.template_id",
            (entry_id,),
        )
        return [_template(self._fields, r) for r in rows]

    def active_templates(self, pack: str) -> list[TemplateRecord]:
        # One query for the whole published index (10^5..10^6 rows at a chain), streamed in
        # chunks: each vector is opened as it arrives, and the ciphertext is not held twice.
        with self._db.cursor() as cursor:
            return [_template(self._fields, r) for r in cursor.stream(
                f"SELECT {_TEMPLATE_COLUMNS} FROM templates t "
                "JOIN entries e ON e.entry_id = t.entry_id "
                "WHERE e.state = 'active' AND t.pack = %s "
                "AND NOT EXISTS (SELECT 1 FROM entry_suspensions s "
                "WHERE s.entry_id = e.entry_id) "
                "ORDER BY t.template_id",
                (pack,), size=_STREAM_ROWS,
            )]

    def add_evidence(self, record: EvidenceRecord) -> None:
        self._db.execute(
            "INSERT INTO evidence (image_id, entry_id, sha256, masked_faces, added_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (record.image_id, record.entry_id, record.sha256, record.masked_faces,
             record.added_at),
        )

    def evidence(self, entry_id: str) -> list[EvidenceRecord]:
        rows = self._all(
            "SELECT image_id, entry_id, sha256, masked_faces, added_at FROM evidence "
            "WHERE entry_id = %s ORDER BY added_at, image_id",
            (entry_id,),
        )
        return [EvidenceRecord(r[0], r[1], r[2], int(r[3]), _at(r[4])) for r in rows]

    def all_evidence_ids(self) -> set[str]:
        rows = self._all(
            "SELECT image_id FROM evidence UNION "
            "SELECT snapshot_image_id FROM alerts WHERE snapshot_image_id IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    def purge_face_data(self, entry_id: str) -> list[str]:
        # Three statements in one transaction (its own, or the caller's unit of work): a
        # failure part-way leaves the person's face data whole, never half erased.
        with _atomic(self._db):
            alerts = self._all(
                "SELECT alert_id, snapshot_image_id FROM alerts WHERE entry_id = %s "
                "ORDER BY alert_id FOR UPDATE",
                (entry_id,),
            )
            evidence = self._all(
                "WITH t AS (DELETE FROM templates WHERE entry_id = %s), "
                "i AS (DELETE FROM incidents WHERE entry_id = %s), "
                "a AS (DELETE FROM audit_texts WHERE entry_id = %s) "
                "DELETE FROM evidence WHERE entry_id = %s RETURNING image_id",
                (entry_id,) * 4,
            )
            if alerts:
                # The alerts stay as a record that a match happened; the picture of the person
                # and what staff typed about it go (the audit trail keeps that text's hash
                # only). The blank reason is sealed per alert, like any other reason.
                alert_ids = [str(a[0]) for a in alerts]
                blank = [self._fields.seal("alerts", "decision_reason", a, b"")
                         for a in alert_ids]
                self._db.execute(
                    "UPDATE alerts SET snapshot_image_id = NULL, decision_reason = v.reason "
                    "FROM unnest(%s::text[], %s::bytea[]) AS v(alert_id, reason) "
                    "WHERE alerts.alert_id = v.alert_id",
                    (alert_ids, blank),
                )
        image_ids = sorted(str(r[0]) for r in evidence)
        return image_ids + [str(a[1]) for a in alerts if a[1] is not None]


class PostgresIndex(PostgresStore):
    """`IndexRepository`: the watchlist version in `meta` and the `entry_suspensions` table."""

    def watchlist_version(self) -> int:
        return int(self._one("SELECT value FROM meta WHERE key = 'watchlist_version'")[0])

    def bump_watchlist_version(self) -> int:
        row = self._one(
            "UPDATE meta SET value = (value::bigint + 1)::text "
            "WHERE key = 'watchlist_version' RETURNING value::bigint"
        )
        return int(row[0])

    def raise_watchlist_version(self, at_least: int) -> int:
        row = self._one(
            "UPDATE meta SET value = greatest(value::bigint, %s::bigint)::text "
            "WHERE key = 'watchlist_version' RETURNING value::bigint",
            (at_least,),
        )
        return int(row[0])

    def suspend_entry(self, entry_id: str, since: datetime, source: str) -> None:
        self._db.execute(
            "INSERT INTO entry_suspensions (entry_id, since, source) VALUES (%s, %s, %s) "
            "ON CONFLICT (entry_id) DO NOTHING",
            (entry_id, since, source),
        )

    def unsuspend_entry(self, entry_id: str) -> None:
        self._db.execute("DELETE FROM entry_suspensions WHERE entry_id = %s", (entry_id,))

    def suspended_entries(self) -> dict[str, str]:
        return {str(r[0]): str(r[1])
                for r in self._all("SELECT entry_id, source FROM entry_suspensions")}

    def index_members(self) -> dict[int, str]:
        return {int(r[0]): str(r[1])
                for r in self._all("SELECT template_id, entry_id FROM index_members")}

    def log_index_version(self, version: int, added: Mapping[int, str],
                          removed: Mapping[int, str], at: datetime) -> bool:
        with _atomic(self._db):
            # Two API hosts publishing at once: the row lock orders them, the later one finds
            # its version already logged (or older) and writes nothing.
            self._db.execute("SELECT 1 FROM meta WHERE key = 'watchlist_version' FOR UPDATE")
            newest = self._one("SELECT max(version) FROM index_log_versions")[0]
            if newest is not None and version <= int(newest):
                return False
            self._db.execute(
                "INSERT INTO index_log_versions (version, logged_at) VALUES (%s, %s)",
                (version, at))
            if newest is not None:  # the first version is the base: no box holds anything older
                self._db.execute(
                    "INSERT INTO index_log_changes (version, template_id, entry_id, added) "
                    "SELECT %s, * FROM unnest(%s::bigint[], %s::text[], %s::boolean[])",
                    (version, [*added, *removed], [*added.values(), *removed.values()],
                     [True] * len(added) + [False] * len(removed)))
            self._db.execute("DELETE FROM index_members WHERE template_id = ANY(%s::bigint[])",
                             (list(removed),))
            self._db.execute(
                "INSERT INTO index_members (template_id, entry_id) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[])",
                (list(added), list(added.values())))
        return True

    def index_changes(self, since: int) -> IndexChanges | None:
        with _atomic(self._db):  # one snapshot: the newest version and its rows agree
            if self._one("SELECT 1 FROM index_log_versions WHERE version = %s",
                         (since,)) is None:
                return None
            newest = int(self._one("SELECT max(version) FROM index_log_versions")[0])
            rows = self._all(
                "SELECT version, template_id, entry_id, added FROM index_log_changes "
                "WHERE version > %s ORDER BY version, template_id", (since,))
        return net_index_changes(since, newest,
                                 [(int(r[0]), int(r[1]), str(r[2]), bool(r[3])) for r in rows])

    def prune_index_log(self, *, keep_versions: int, logged_before: datetime) -> int:
        with _atomic(self._db):
            rows = self._all(
                "WITH newest AS (SELECT max(version) AS v FROM index_log_versions), "
                "doomed AS (SELECT version FROM index_log_versions, newest "
                "WHERE version < newest.v AND (version <= newest.v - %s OR logged_at < %s)), "
                "c AS (DELETE FROM index_log_changes "
                "WHERE version IN (SELECT version FROM doomed)) "
                "DELETE FROM index_log_versions WHERE version IN (SELECT version FROM doomed) "
                "RETURNING version",
                (keep_versions, logged_before))
        return len(rows)

"""Breach incidents, their steps and the stop-use rights they give, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.breach` (G-BRE-1..4). What does not map 1:1:

- **Sealed text.** Who discovered the leak, how, the summary and each step's
  details are free text that may name people (`schema.PERSONAL_COLUMNS`):
  sealed by the application, the incident's columns bound to its id, a step's
  details to its `action_id` (so the row is inserted with an empty placeholder
  and sealed once its key exists, in one transaction, as `incidents` does).
- `counts`, `affected` and `triage` stay JSON text, as on SQLCipher: counts,
  pseudonymous entry ids and the rule-7 grounds are not personal.
- Times are `registry.instant` (aware UTC datetimes), the triage time inside its
  JSON text as `registry.clock` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import psycopg

from kernel.errors import NotFoundError
from registry.clock import checked
from registry.domain import BreachIncident, Containment, RecordedAction, StopUseRight, Triage
from registry.storage.breach_text import (
    affected_of,
    affected_text,
    counts_of,
    counts_text,
    details_of,
    details_text,
    triage_of,
    triage_text,
)
from registry.storage.postgres.base import PgConnection, PostgresStore

_INCIDENT_COLUMNS = ("incident_id, store_id, discovered_at, discovered_by, how, summary,"
                     " opened_by, opened_at, counts, affected, triage")
_SEALED_INCIDENT_COLUMNS = ("discovered_by", "how", "summary")
_EMPTY = b""  # the placeholder of a step's details until its action_id exists


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _atomic(db: PgConnection) -> AbstractContextManager[Any]:
    """Several statements as one: their own transaction, or the caller's unit of work."""
    if db.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        return nullcontext()
    return db.transaction()


class PostgresBreach(PostgresStore):
    """`BreachRepository`: `breach_incidents` and `breach_actions`, free text sealed."""

    def add_breach_incident(self, incident: BreachIncident) -> None:
        if incident.actions:
            raise ValueError("an incident's steps are added one by one (add_breach_action)")
        key = incident.incident_id
        sealed = [self._fields.seal("breach_incidents", column, key,
                                    str(getattr(incident, column)).encode("utf-8"))
                  for column in _SEALED_INCIDENT_COLUMNS]
        self._db.execute(
            "INSERT INTO breach_incidents (incident_id, store_id, discovered_at, discovered_by,"
            " how, summary, opened_by, opened_at, counts, affected, triage)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (key, incident.store_id, checked(incident.discovered_at), *sealed,
             incident.opened_by, checked(incident.opened_at), counts_text(incident.counts),
             affected_text(incident.affected),
             None if incident.triage is None else triage_text(incident.triage)),
        )

    def breach_incident(self, incident_id: str) -> BreachIncident | None:
        row = self._one(f"SELECT {_INCIDENT_COLUMNS} FROM breach_incidents"
                        " WHERE incident_id = %s", (incident_id,))
        return None if row is None else self._breach_incident(row)

    def breach_incidents(self) -> list[BreachIncident]:
        rows = self._all(f"SELECT {_INCIDENT_COLUMNS} FROM breach_incidents"
                         " ORDER BY discovered_at, incident_id")
        return [self._breach_incident(row) for row in rows]

    def set_breach_triage(self, incident_id: str, triage: Triage) -> None:
        cursor = self._db.execute(
            "UPDATE breach_incidents SET triage = %s WHERE incident_id = %s",
            (triage_text(triage), incident_id))
        if not cursor.rowcount:
            raise NotFoundError(f"no incident {incident_id}")

    def add_breach_action(self, incident_id: str, action: RecordedAction) -> None:
        with _atomic(self._db):
            if self._one("SELECT 1 FROM breach_incidents WHERE incident_id = %s",
                         (incident_id,)) is None:
                raise NotFoundError(f"no incident {incident_id}")
            row = self._one(
                "INSERT INTO breach_actions (incident_id, kind, actor, at, details)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING action_id",
                (incident_id, action.kind.value, action.actor, checked(action.at), _EMPTY))
            action_id = int(row[0])
            self._db.execute(
                "UPDATE breach_actions SET details = %s WHERE action_id = %s",
                (self._fields.seal("breach_actions", "details", action_id,
                                   details_text(action.details).encode("utf-8")), action_id))

    def _breach_incident(self, row: Sequence[Any]) -> BreachIncident:
        key = str(row[0])
        discovered_by, how, summary = (
            self._fields.open("breach_incidents", column, key, blob).decode("utf-8")
            for column, blob in zip(_SEALED_INCIDENT_COLUMNS, row[3:6], strict=True))
        actions = tuple(
            RecordedAction(Containment(kind), actor, _utc(at),
                           details_of(self._fields.open("breach_actions", "details",
                                                        int(action_id), blob).decode("utf-8")))
            for action_id, kind, actor, at, blob in self._all(
                "SELECT action_id, kind, actor, at, details FROM breach_actions"
                " WHERE incident_id = %s ORDER BY action_id", (key,)))
        return BreachIncident(
            incident_id=key, store_id=row[1], discovered_at=_utc(row[2]),
            discovered_by=discovered_by, how=how, summary=summary, opened_by=row[6],
            opened_at=_utc(row[7]), counts=counts_of(row[8]), affected=affected_of(row[9]),
            triage=triage_of(row[10]), actions=actions,
        )


class PostgresStopUse(PostgresStore):
    """`StopUseRepository`: `entry_stop_use_rights` (ids and a time: nothing sealed)."""

    def add_stop_use_right(self, right: StopUseRight) -> bool:
        cursor = self._db.execute(
            "INSERT INTO entry_stop_use_rights (entry_id, incident_id, since)"
            " VALUES (%s, %s, %s) ON CONFLICT (entry_id, incident_id) DO NOTHING",
            (right.entry_id, right.incident_id, checked(right.since)))
        return bool(cursor.rowcount)

    def stop_use_rights(self, entry_id: str | None = None) -> list[StopUseRight]:
        query = "SELECT entry_id, incident_id, since FROM entry_stop_use_rights"
        params: tuple[str, ...] = ()
        if entry_id is not None:
            query, params = query + " WHERE entry_id = %s", (entry_id,)
        return [StopUseRight(entry, incident_id, _utc(since))
                for entry, incident_id, since in self._all(
                    query + " ORDER BY since, incident_id, entry_id", params)]

"""Breach incidents, their steps and the stop-use rights they give, on SQLCipher (G-BRE-1..4)."""

from __future__ import annotations

from typing import Any

from kernel.errors import NotFoundError
from registry.clock import from_text, to_text
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
from registry.storage.sqlcipher.base import SqlCipherStore

_INCIDENT_COLUMNS = ("incident_id, store_id, discovered_at, discovered_by, how, summary,"
                     " opened_by, opened_at, counts, affected, triage")


class SqlCipherBreach(SqlCipherStore):
    """`BreachRepository`: the `breach_incidents` and `breach_actions` tables."""

    def add_breach_incident(self, incident: BreachIncident) -> None:
        if incident.actions:
            raise ValueError("an incident's steps are added one by one (add_breach_action)")
        self._db.execute(
            "INSERT INTO breach_incidents (incident_id, store_id, discovered_at, discovered_by,"
            " how, summary, opened_by, opened_at, counts, affected, triage)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (incident.incident_id, incident.store_id, to_text(incident.discovered_at),
             incident.discovered_by, incident.how, incident.summary, incident.opened_by,
             to_text(incident.opened_at), counts_text(incident.counts),
             affected_text(incident.affected),
             None if incident.triage is None else triage_text(incident.triage)),
        )

    def breach_incident(self, incident_id: str) -> BreachIncident | None:
        row = self._one(f"SELECT {_INCIDENT_COLUMNS} FROM breach_incidents"
                        " WHERE incident_id = ?", (incident_id,))
        return None if row is None else self._breach_incident(row)

    def breach_incidents(self) -> list[BreachIncident]:
        rows = self._db.execute(f"SELECT {_INCIDENT_COLUMNS} FROM breach_incidents"
                                " ORDER BY discovered_at, incident_id").fetchall()
        return [self._breach_incident(row) for row in rows]

    def set_breach_triage(self, incident_id: str, triage: Triage) -> None:
        cursor = self._db.execute(
            "UPDATE breach_incidents SET triage = ? WHERE incident_id = ?",
            (triage_text(triage), incident_id))
        if not cursor.rowcount:
            raise NotFoundError(f"no incident {incident_id}")

    def add_breach_action(self, incident_id: str, action: RecordedAction) -> None:
        if self._one("SELECT 1 FROM breach_incidents WHERE incident_id = ?",
                     (incident_id,)) is None:
            raise NotFoundError(f"no incident {incident_id}")
        self._db.execute(
            "INSERT INTO breach_actions (incident_id, kind, actor, at, details)"
            " VALUES (?, ?, ?, ?, ?)",
            (incident_id, action.kind.value, action.actor, to_text(action.at),
             details_text(action.details)),
        )

    def _breach_incident(self, row: Any) -> BreachIncident:
        actions = tuple(
            RecordedAction(Containment(kind), actor, from_text(at), details_of(details))
            for kind, actor, at, details in self._db.execute(
                "SELECT kind, actor, at, details FROM breach_actions WHERE incident_id = ?"
                " ORDER BY action_id", (row[0],)))
        return BreachIncident(
            incident_id=row[0], store_id=row[1], discovered_at=from_text(row[2]),
            discovered_by=row[3], how=row[4], summary=row[5], opened_by=row[6],
            opened_at=from_text(row[7]), counts=counts_of(row[8]), affected=affected_of(row[9]),
            triage=triage_of(row[10]), actions=actions,
        )


class SqlCipherStopUse(SqlCipherStore):
    """`StopUseRepository`: the `entry_stop_use_rights` table."""

    def add_stop_use_right(self, right: StopUseRight) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO entry_stop_use_rights (entry_id, incident_id, since)"
            " VALUES (?, ?, ?)", (right.entry_id, right.incident_id, to_text(right.since)))
        return bool(cursor.rowcount)

    def stop_use_rights(self, entry_id: str | None = None) -> list[StopUseRight]:
        query = "SELECT entry_id, incident_id, since FROM entry_stop_use_rights"
        params: tuple[str, ...] = ()
        if entry_id is not None:
            query, params = query + " WHERE entry_id = ?", (entry_id,)
        return [StopUseRight(entry, incident_id, from_text(since))
                for entry, incident_id, since in self._db.execute(
                    query + " ORDER BY since, incident_id, entry_id", params)]

"""Alerts and staff's decisions on them, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.alerts`. What the table holds: the alert's
ids (its own, the device, the camera, the entry, the index version), the
score and threshold, its times, its status and who decided it when, and the
snapshot's image id. The snapshot itself is an encrypted file of the evidence
store, never a row. The decision's free-text reason is personal (it may
describe the person) and is sealed bound to `alerts.decision_reason` of the
alert's id (`FieldSealer`), so PostgreSQL never sees it in the clear and a
reason copied onto another alert fails to open. What does not map 1:1:

- **The store.** `alerts.store_id` is the alert's store (`Alert.store_id`, the
  store of the device that sent it, issue 15 item 1), a reference to `stores`;
  lists and counts filter on it when given one (index `alerts_by_store_status`).
- **Ordering** of text uses `COLLATE "C"` (byte order, as SQLite compares text).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from kernel.errors import ConflictError
from registry.clock import checked
from registry.domain import Alert, AlertStatus
from registry.storage.postgres.base import PostgresStore, utc

_ALERT_COLUMNS = (
    "alert_id, device, camera, detected_at, received_at, score, threshold, entry_id, "
    "index_version, snapshot_image_id, status, decided_by, decided_at, decision_reason, "
    "store_id"
)
_ORDER = 'ORDER BY received_at, alert_id COLLATE "C"'


class PostgresAlerts(PostgresStore):
    """`AlertRepository`: the `alerts` table, decision reasons sealed."""

    def _seal_alert_reason(self, alert_id: str, reason: str) -> bytes:
        return self._fields.seal("alerts", "decision_reason", alert_id, reason.encode("utf-8"))

    def _alert(self, row: Any) -> Alert:
        alert_id = str(row[0])
        return Alert(
            alert_id=alert_id, device=row[1], camera=row[2],
            detected_at=row[3].astimezone(UTC), received_at=row[4].astimezone(UTC),
            score=float(row[5]), threshold=float(row[6]), entry_id=row[7],
            index_version=int(row[8]), snapshot_image_id=row[9], status=AlertStatus(row[10]),
            decided_by=None if row[11] is None else int(row[11]), decided_at=utc(row[12]),
            decision_reason=self._fields.open(
                "alerts", "decision_reason", alert_id, row[13]).decode("utf-8"),
            store_id=str(row[14]),
        )

    def add_alert(self, alert: Alert) -> None:
        self._db.execute(
            f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})",
            (
                alert.alert_id, alert.device, alert.camera, checked(alert.detected_at),
                checked(alert.received_at), alert.score, alert.threshold, alert.entry_id,
                alert.index_version, alert.snapshot_image_id, alert.status.value,
                alert.decided_by, checked(alert.decided_at) if alert.decided_at else None,
                self._seal_alert_reason(alert.alert_id, alert.decision_reason), alert.store_id,
            ),
        )

    def alert(self, alert_id: str) -> Alert | None:
        row = self._one(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = %s", (alert_id,))
        return self._alert(row) if row else None

    def alerts(self, status: AlertStatus | None = None, store_id: str | None = None
               ) -> list[Alert]:
        rows = self._all(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE (%s::text IS NULL OR status = %s) "
            f"AND (%s::text IS NULL OR store_id = %s) {_ORDER}",
            (*_twice(status.value if status else None), *_twice(store_id)))
        return [self._alert(r) for r in rows]

    def decide_alert(self, alert: Alert) -> None:
        cursor = self._db.execute(
            "UPDATE alerts SET status = %s, decided_by = %s, decided_at = %s, "
            "decision_reason = %s, snapshot_image_id = %s "
            "WHERE alert_id = %s AND status = 'open'",
            (alert.status.value, alert.decided_by,
             checked(alert.decided_at) if alert.decided_at else None,
             self._seal_alert_reason(alert.alert_id, alert.decision_reason),
             alert.snapshot_image_id, alert.alert_id),
        )
        if cursor.rowcount != 1:
            raise ConflictError(f"alert {alert.alert_id} was already decided")

    def stray_alert_snapshots(self) -> list[tuple[str, str]]:
        """(alert id, snapshot id) of snapshots whose entry is no longer active."""
        rows = self._all(
            "SELECT a.alert_id, a.snapshot_image_id FROM alerts a "
            "LEFT JOIN entries e ON e.entry_id = a.entry_id "
            "WHERE a.snapshot_image_id IS NOT NULL AND (e.state IS NULL OR e.state != 'active') "
            'ORDER BY a.alert_id COLLATE "C"'
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def clear_alert_snapshot(self, alert_id: str) -> None:
        self._db.execute("UPDATE alerts SET snapshot_image_id = NULL WHERE alert_id = %s",
                         (alert_id,))

    def alert_counts(self, store_id: str | None = None) -> list[tuple[str, AlertStatus, int]]:
        rows = self._all(
            "SELECT device, status, count(*) FROM alerts "
            "WHERE %s::text IS NULL OR store_id = %s GROUP BY device, status "
            'ORDER BY device COLLATE "C", status COLLATE "C"', _twice(store_id)
        )
        return [(str(r[0]), AlertStatus(r[1]), int(r[2])) for r in rows]


def _twice(value: str | None) -> tuple[str | None, str | None]:
    """A filter's value for `%s IS NULL OR column = %s` (None: no filter)."""
    return value, value

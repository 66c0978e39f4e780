"""Alerts and staff's decisions on them, on SQLCipher."""

from __future__ import annotations

from typing import Any

from kernel.errors import ConflictError
from registry.clock import from_text, to_text
from registry.domain import (
    Alert,
    AlertStatus,
)
from registry.storage.sqlcipher.base import SqlCipherStore

_ALERT_COLUMNS = (
    "alert_id, device, camera, detected_at, received_at, score, threshold, entry_id, "
    "index_version, snapshot_image_id, status, decided_by, decided_at, decision_reason, "
    "store_id"
)


def _alert(row: Any) -> Alert:
    return Alert(
        alert_id=row[0], device=row[1], camera=row[2], detected_at=from_text(row[3]),
        received_at=from_text(row[4]), score=row[5], threshold=row[6], entry_id=row[7],
        index_version=row[8], snapshot_image_id=row[9], status=AlertStatus(row[10]),
        decided_by=row[11], decided_at=from_text(row[12]) if row[12] else None,
        decision_reason=row[13], store_id=row[14],
    )


class SqlCipherAlerts(SqlCipherStore):
    """`AlertRepository`: the `alerts` table."""

    def add_alert(self, alert: Alert) -> None:
        self._db.execute(
            f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            (
                alert.alert_id, alert.device, alert.camera, to_text(alert.detected_at),
                to_text(alert.received_at), alert.score, alert.threshold, alert.entry_id,
                alert.index_version, alert.snapshot_image_id, alert.status.value,
                alert.decided_by, to_text(alert.decided_at) if alert.decided_at else None,
                alert.decision_reason, alert.store_id,
            ),
        )

    def alert(self, alert_id: str) -> Alert | None:
        row = self._one(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
        return _alert(row) if row else None

    def alerts(self, status: AlertStatus | None = None, store_id: str | None = None
               ) -> list[Alert]:
        where, params = _filter(status=status.value if status else None, store_id=store_id)
        rows = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts {where} ORDER BY received_at, alert_id", params)
        return [_alert(r) for r in rows]

    def decide_alert(self, alert: Alert) -> None:
        cursor = self._db.execute(
            "UPDATE alerts SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, "
            "snapshot_image_id = ? WHERE alert_id = ? AND status = 'open'",
            (alert.status.value, alert.decided_by,
             to_text(alert.decided_at) if alert.decided_at else None, alert.decision_reason,
             alert.snapshot_image_id, alert.alert_id),
        )
        if cursor.rowcount != 1:
            raise ConflictError(f"alert {alert.alert_id} was already decided")

    def stray_alert_snapshots(self) -> list[tuple[str, str]]:
        """(alert id, snapshot id) of snapshots whose entry is no longer active."""
        rows = self._db.execute(
            "SELECT a.alert_id, a.snapshot_image_id FROM alerts a "
            "LEFT JOIN entries e ON e.entry_id = a.entry_id "
            "WHERE a.snapshot_image_id IS NOT NULL AND (e.state IS NULL OR e.state != 'active') "
            "ORDER BY a.alert_id"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def clear_alert_snapshot(self, alert_id: str) -> None:
        self._db.execute("UPDATE alerts SET snapshot_image_id = NULL WHERE alert_id = ?",
                         (alert_id,))

    def alert_counts(self, store_id: str | None = None) -> list[tuple[str, AlertStatus, int]]:
        where, params = _filter(store_id=store_id)
        rows = self._db.execute(
            f"SELECT device, status, count(*) FROM alerts {where} GROUP BY device, status "
            "ORDER BY device, status", params)
        return [(str(r[0]), AlertStatus(r[1]), int(r[2])) for r in rows]


def _filter(**equal: str | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause (or none) for the columns given a value; None means any."""
    given = {column: value for column, value in equal.items() if value is not None}
    if not given:
        return "", ()
    return "WHERE " + " AND ".join(f"{c} = ?" for c in given), tuple(given.values())

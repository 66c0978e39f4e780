"""Edge boxes, their token hashes and their latest status reports, on SQLCipher."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registry.clock import from_text, to_text
from registry.domain import BoxStatus, Device
from registry.storage.sqlcipher.base import SqlCipherStore

_DEVICE_COLUMNS = "device_id, name, created_at, active, store_id"
_STATUS_COLUMNS = ("device, reported_at, index_version, index_state, outbox_pending, "
                   "cameras_live, cameras_total")


def _device(row: Any) -> Device:
    return Device(device_id=row[0], name=row[1], created_at=from_text(row[2]),
                  active=bool(row[3]), store_id=str(row[4]))


def _status(row: Any) -> BoxStatus:
    return BoxStatus(device=row[0], reported_at=from_text(row[1]), index_version=row[2],
                     index_state=row[3], outbox_pending=row[4], cameras_live=row[5],
                     cameras_total=row[6])


class SqlCipherDevices(SqlCipherStore):
    """`DeviceRepository`: the `devices` and `box_status` tables."""

    def add_device(self, name: str, token_sha256: str, now: datetime, store_id: str
                   ) -> Device:
        cursor = self._db.execute(
            "INSERT INTO devices (name, token_sha256, created_at, store_id) VALUES (?, ?, ?, ?)",
            (name, token_sha256, to_text(now), store_id),
        )
        return Device(int(cursor.lastrowid or 0), name, from_text(to_text(now)), True, store_id)

    def device_by_name(self, name: str) -> Device | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE name = ?", (name,))
        return _device(row) if row else None

    def device_by_token_hash(self, token_sha256: str) -> Device | None:
        row = self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token_sha256 = ?", (token_sha256,)
        )
        return _device(row) if row else None

    def devices(self) -> list[Device]:
        return [_device(r) for r in
                self._db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY name")]

    def set_device_active(self, device_id: int, active: bool) -> None:
        self._db.execute(
            "UPDATE devices SET active = ? WHERE device_id = ?", (int(active), device_id)
        )

    def record_box_status(self, status: BoxStatus) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO box_status ({_STATUS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (status.device, to_text(status.reported_at), status.index_version,
             status.index_state, status.outbox_pending, status.cameras_live,
             status.cameras_total))

    def box_statuses(self, store_id: str | None = None) -> list[BoxStatus]:
        if store_id is None:
            rows = self._db.execute(f"SELECT {_STATUS_COLUMNS} FROM box_status ORDER BY device")
        else:
            rows = self._db.execute(
                f"SELECT {_STATUS_COLUMNS} FROM box_status WHERE device IN "
                "(SELECT name FROM devices WHERE store_id = ?) ORDER BY device", (store_id,))
        return [_status(r) for r in rows]

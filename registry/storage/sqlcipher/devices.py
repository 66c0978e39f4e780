"""Edge boxes and their token hashes, on SQLCipher."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registry.clock import from_text, to_text
from registry.domain import (
    Device,
)
from registry.storage.sqlcipher.base import SqlCipherStore

_DEVICE_COLUMNS = "device_id, name, created_at, active"


def _device(row: Any) -> Device:
    return Device(device_id=row[0], name=row[1], created_at=from_text(row[2]),
                  active=bool(row[3]))


class SqlCipherDevices(SqlCipherStore):
    """`DeviceRepository`: the `devices` table."""

    def add_device(self, name: str, token_sha256: str, now: datetime) -> Device:
        cursor = self._db.execute(
            "INSERT INTO devices (name, token_sha256, created_at) VALUES (?, ?, ?)",
            (name, token_sha256, to_text(now)),
        )
        return Device(int(cursor.lastrowid or 0), name, from_text(to_text(now)), True)

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

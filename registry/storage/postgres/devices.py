"""Edge boxes and their token hashes, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.devices`. What does not map 1:1:

- **The store.** Each chain device belongs to a store (`devices.store_id`, a
  reference to `stores`; issue 15, item 1): `add_device` is given it, and the
  store must exist (`StoreRepository.add_store`; the service creates the
  installation's default store on first need). Lookups by name or token are
  not filtered by store: device names and token hashes are unique across the
  chain (the schema's UNIQUE constraints), so a lookup has one answer either
  way. `box_statuses` filters by the device's store when asked.
- Token hashes are SHA-256 of random tokens: not personal, nothing sealed.
- Status reports (`box_status`) are counts and states: nothing sealed either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from registry.clock import checked
from registry.domain import BoxStatus, Device
from registry.storage.postgres.base import PostgresStore

_DEVICE_COLUMNS = "device_id, name, created_at, active, store_id"
_STATUS_COLUMNS = ("device, reported_at, index_version, index_state, outbox_pending, "
                   "cameras_live, cameras_total")


def _device(row: Any) -> Device:
    return Device(device_id=int(row[0]), name=row[1], created_at=row[2].astimezone(UTC),
                  active=bool(row[3]), store_id=str(row[4]))


def _status(row: Any) -> BoxStatus:
    return BoxStatus(device=row[0], reported_at=row[1].astimezone(UTC),
                     index_version=None if row[2] is None else int(row[2]),
                     index_state=row[3], outbox_pending=int(row[4]),
                     cameras_live=int(row[5]), cameras_total=int(row[6]))


class PostgresDevices(PostgresStore):
    """`DeviceRepository`: the `devices` table, each device in its store."""

    def add_device(self, name: str, token_sha256: str, now: datetime, store_id: str
                   ) -> Device:
        at = checked(now)
        row = self._one(
            "INSERT INTO devices (name, store_id, token_sha256, created_at) "
            "VALUES (%s, %s, %s, %s) RETURNING device_id",
            (name, store_id, token_sha256, at),
        )
        return Device(int(row[0]), name, at, True, store_id)

    def device_by_name(self, name: str) -> Device | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE name = %s", (name,))
        return _device(row) if row else None

    def device_by_token_hash(self, token_sha256: str) -> Device | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token_sha256 = %s",
                        (token_sha256,))
        return _device(row) if row else None

    def devices(self) -> list[Device]:
        return [_device(r) for r in
                self._all(f'SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY name COLLATE "C"')]

    def set_device_active(self, device_id: int, active: bool) -> None:
        self._db.execute("UPDATE devices SET active = %s WHERE device_id = %s",
                         (active, device_id))

    def record_box_status(self, status: BoxStatus) -> None:
        self._db.execute(
            f"INSERT INTO box_status ({_STATUS_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device) DO UPDATE SET reported_at = excluded.reported_at, "
            "index_version = excluded.index_version, index_state = excluded.index_state, "
            "outbox_pending = excluded.outbox_pending, cameras_live = excluded.cameras_live, "
            "cameras_total = excluded.cameras_total",
            (status.device, checked(status.reported_at), status.index_version,
             status.index_state, status.outbox_pending, status.cameras_live,
             status.cameras_total))

    def box_statuses(self, store_id: str | None = None) -> list[BoxStatus]:
        return [_status(r) for r in self._all(
            f"SELECT {_STATUS_COLUMNS} FROM box_status WHERE %s::text IS NULL OR device "
            "IN (SELECT name FROM devices WHERE store_id = %s) "
            'ORDER BY device COLLATE "C"', (store_id, store_id))]

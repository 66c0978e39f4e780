"""Edge boxes and their token hashes, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.devices`. What does not map 1:1:

- **The store.** Each chain device belongs to a store (`devices.store_id`, a
  reference to `stores`), but `DeviceRepository` carries no store yet. Until
  the stores dimension reaches the protocols, a device is registered in the
  store the repository stands for: the class attribute `_store_id`, by default
  `DEFAULT_STORE_ID` ("main"), the one store a single-site registry has. Its
  `stores` row is created on first need (`ON CONFLICT DO NOTHING`, so a
  second host or a second device never conflicts). Reads are not filtered by
  store: device names and token hashes are unique across the chain (as the
  schema's UNIQUE constraints say), so a lookup has one answer either way.
- Token hashes are SHA-256 of random tokens: not personal, nothing sealed.
- Status reports (`box_status`) are counts and states: nothing sealed either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from registry.clock import checked
from registry.domain import BoxStatus, Device
from registry.storage.postgres.base import PostgresStore

DEFAULT_STORE_ID = "main"
DEFAULT_STORE_NAME = "main store"  # shown until the chain office names it

_DEVICE_COLUMNS = "device_id, name, created_at, active"
_STATUS_COLUMNS = ("device, reported_at, index_version, index_state, outbox_pending, "
                   "cameras_live, cameras_total")


def _device(row: Any) -> Device:
    return Device(device_id=int(row[0]), name=row[1], created_at=row[2].astimezone(UTC),
                  active=bool(row[3]))


def _status(row: Any) -> BoxStatus:
    return BoxStatus(device=row[0], reported_at=row[1].astimezone(UTC),
                     index_version=None if row[2] is None else int(row[2]),
                     index_state=row[3], outbox_pending=int(row[4]),
                     cameras_live=int(row[5]), cameras_total=int(row[6]))


class PostgresDevices(PostgresStore):
    """`DeviceRepository`: the `devices` table, new devices in the repository's store."""

    _store_id: ClassVar[str] = DEFAULT_STORE_ID

    def _ensure_store(self, now: datetime) -> None:
        """Create this repository's `stores` row the first time a device needs it."""
        self._db.execute(
            "INSERT INTO stores (store_id, name, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (store_id) DO NOTHING",
            (self._store_id, DEFAULT_STORE_NAME, now),
        )

    def add_device(self, name: str, token_sha256: str, now: datetime) -> Device:
        at = checked(now)
        self._ensure_store(at)
        row = self._one(
            "INSERT INTO devices (name, store_id, token_sha256, created_at) "
            "VALUES (%s, %s, %s, %s) RETURNING device_id",
            (name, self._store_id, token_sha256, at),
        )
        return Device(int(row[0]), name, at, True)

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

    def box_statuses(self) -> list[BoxStatus]:
        return [_status(r) for r in self._all(
            f'SELECT {_STATUS_COLUMNS} FROM box_status ORDER BY device COLLATE "C"')]

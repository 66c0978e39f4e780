"""The chain's stores, on PostgreSQL (issue 15, item 1): the `stores` table of step 1.

Store ids and names are the operator's own labels, not personal data: text in
the clear. Ids order in byte order (`COLLATE "C"`), as SQLite compares text.
"""

from __future__ import annotations

from datetime import datetime

from kernel.errors import ConflictError
from registry.clock import checked
from registry.domain import Store
from registry.storage.postgres.base import PostgresStore


class PostgresStores(PostgresStore):
    """`StoreRepository`: the `stores` table."""

    def add_store(self, store: Store, now: datetime) -> None:
        row = self._one(
            "INSERT INTO stores (store_id, name, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (store_id) DO NOTHING RETURNING store_id",
            (store.store_id, store.name, checked(now)))
        if row is None:
            raise ConflictError(f"store {store.store_id} already exists")

    def store(self, store_id: str) -> Store | None:
        row = self._one("SELECT store_id, name FROM stores WHERE store_id = %s", (store_id,))
        return Store(str(row[0]), str(row[1])) if row else None

    def stores(self) -> list[Store]:
        return [Store(str(r[0]), str(r[1])) for r in
                self._all('SELECT store_id, name FROM stores ORDER BY store_id COLLATE "C"')]

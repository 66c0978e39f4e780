"""The operator's stores, on SQLCipher (issue 15, item 1).

A single-store registry holds one row, its own store (`registry.store_id`), written by
migration step 12; a registry may hold more (a small chain on one box).
"""

from __future__ import annotations

from datetime import datetime

from kernel.errors import ConflictError
from registry.clock import to_text
from registry.domain import Store
from registry.storage.sqlcipher.base import SqlCipherStore


class SqlCipherStores(SqlCipherStore):
    """`StoreRepository`: the `stores` table."""

    def add_store(self, store: Store, now: datetime) -> None:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO stores (store_id, name, created_at) VALUES (?, ?, ?)",
            (store.store_id, store.name, to_text(now)))
        if cursor.rowcount != 1:
            raise ConflictError(f"store {store.store_id} already exists")

    def store(self, store_id: str) -> Store | None:
        row = self._one("SELECT store_id, name FROM stores WHERE store_id = ?", (store_id,))
        return Store(str(row[0]), str(row[1])) if row else None

    def stores(self) -> list[Store]:
        return [Store(str(r[0]), str(r[1])) for r in
                self._db.execute("SELECT store_id, name FROM stores ORDER BY store_id")]

"""Encrypted local copies of alert snapshots, and the JSON-lines alert feed for scripts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from edge.alerts import Alert
from kernel.evidence import EvidenceStore


class SnapshotArchive:
    """Keeps each alert's masked snapshot encrypted at rest (G-SEC-2), named by alert id.

    A local copy lives exactly as long as the alert's outbox copy: the outbox
    calls `discard` when the alert is delivered, dropped or wiped, and
    `sweep` ends any copy a crash left without its outbox file.
    """

    def __init__(self, store: EvidenceStore) -> None:
        self._store = store

    def path_of(self, alert: Alert) -> Path:
        return self._store.path(alert.alert_id)

    def __call__(self, alert: Alert) -> None:
        self._store.put_png(alert.snapshot_png, image_id=alert.alert_id)

    def discard(self, alert_id: str) -> None:
        self._store.delete(alert_id)

    def sweep(self, keep: Callable[[], set[str]]) -> int:
        """Wipe every snapshot whose alert has no outbox copy any more; returns how many.

        The archive is listed before `keep()` is asked: an alert reaches the
        outbox before its snapshot is archived, so a snapshot listed here whose
        alert is not kept really was delivered or dropped.
        """
        present = self._store.ids()
        orphans = present - keep()
        for alert_id in orphans:
            self._store.delete(alert_id)
        return len(orphans)

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the snapshots under `new_key` (key rotation)."""
        self._store = self._store.rekey(new_key)


class JsonLinesFeed:
    """One JSON object per alert: camera, time, score, entry id, snapshot path. No image bytes."""

    def __init__(self, stream: TextIO, archive: SnapshotArchive) -> None:
        self._stream = stream
        self._archive = archive
        self._lock = threading.Lock()

    def __call__(self, alert: Alert) -> None:
        line = json.dumps({
            "alert_id": alert.alert_id,
            "camera": alert.camera,
            "time": alert.detected_at.isoformat(),
            "score": round(alert.score, 4),
            "threshold": alert.threshold,
            "entry_id": alert.entry_id,
            "index_version": alert.index_version,
            "snapshot": str(self._archive.path_of(alert)),
        })
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

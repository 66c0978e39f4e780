"""An encrypted local outbox: alerts wait here until the registry has them, and no longer.

An alert is written (AES-256-GCM, atomically) before any attempt to send it,
and its file is wiped only after the registry answered 200 or 201. The
registry stores alerts idempotently by `alert_id`, so a crash between its
answer and our wipe re-sends an alert it already has, and nothing is lost
or duplicated. A registry that is down only delays delivery (with back-off).

Every copy on the box has a lifetime (issue "every copy has a lifetime",
G-REG-4, "what follows" 1):
- delivered: wiped at once; the registry's copy is the one staff judge, and
  a dismissal there must leave no picture of an innocent visitor here;
- the entry left the watchlist (erased, expired, withdrawn, suspended: the
  registry answers 410, or a new index version no longer holds it): wiped;
- refused for another reason (kept aside in `rejected/` for a person to
  look at): wiped after `rejected_retention_hours`;
- never delivered (no registry, or one unreachable for days): wiped after
  `undelivered_retention_days`.
Each ending is counted in `OutboxCounters`, exported as metrics.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from edge.alerts import Alert
from edge.archive import SnapshotArchive
from edge.config import OutboxLifetimes
from kernel.durable import make_private_dir, wipe_file
from kernel.errors import SealedFileError
from kernel.sealed import OUTBOX, Sealer

log = logging.getLogger("mamoru.edge.outbox")

_SUFFIX = ".alert"
_GONE = 410  # the registry's answer for an entry that is no longer on the list


@dataclass(frozen=True)
class Delivery:
    """Where and as whom alerts are delivered, and which certificate to trust there."""

    url: str
    token: str
    ca_file: Path | None = None

    def post(self, client: httpx.Client, path: str, body: object,
             timeout_s: float) -> httpx.Response:
        """POST `body` as JSON to `path` of the registry, as this box (bearer token)."""
        return client.post(f"{self.url.rstrip('/')}{path}", json=body,
                           headers={"Authorization": f"Bearer {self.token}"},
                           timeout=timeout_s)

    def verify(self) -> ssl.SSLContext:
        """TLS verification: the system's roots, or the registry's own certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def __repr__(self) -> str:
        return f"Delivery(url={self.url!r}, token=<redacted>)"


@dataclass
class OutboxCounters:
    """How alert copies left the box; exported as metrics, never with an id."""

    delivered: int = 0
    dropped_entry_gone: int = 0  # 410 or an index version without the entry
    rejected: int = 0  # set aside for a person to look at
    rejected_wiped: int = 0  # ... and wiped after their short lifetime
    undelivered_wiped: int = 0  # never delivered within their lifetime


class Outbox:
    """Alert files in a folder; `deliver_pending` sends them in the order they were raised."""

    def __init__(self, folder: Path, key: bytes, delivery: Delivery | None,
                 *, timeout_s: float = 5.0, lifetimes: OutboxLifetimes | None = None,
                 snapshots: SnapshotArchive | None = None) -> None:
        """`snapshots`: the local snapshot copies, which live as long as the outbox copy."""
        make_private_dir(folder / "rejected")
        self._folder = folder
        self._sealer = Sealer(OUTBOX, key)  # sealed to its file name (kernel.sealed)
        self._delivery = delivery
        self._timeout_s = timeout_s
        self._lifetimes = lifetimes or OutboxLifetimes()
        self._snapshots = snapshots
        self._wake = threading.Event()
        self._files = threading.Lock()  # file moves and wipes; never held over the network
        self._gone_entries: set[str] = set()  # entries that left the list: no new copies
        self.counters = OutboxCounters()

    @property
    def delivered(self) -> int:
        return self.counters.delivered

    def put(self, alert: Alert) -> Path | None:
        """Persist an alert before anything tries to send it (None: its entry already left)."""
        with self._files:
            if alert.entry_id in self._gone_entries:
                self.counters.dropped_entry_gone += 1
                return None
            name = f"{time.time_ns():020d}-{alert.alert_id}{_SUFFIX}"
            path = self._folder / name
            self._sealer.write(path, json.dumps(alert.to_payload()).encode(),
                               context=name.encode())
        self._wake.set()
        return path

    def pending(self) -> list[Path]:
        return sorted(self._folder.glob(f"*{_SUFFIX}"))

    def rejected(self) -> list[Path]:
        return sorted((self._folder / "rejected").glob(f"*{_SUFFIX}"))

    def alert_ids(self) -> set[str]:
        """Ids of every alert with a copy here (pending or set aside)."""
        return {_alert_id(path) for path in [*self.pending(), *self.rejected()]}

    def _read(self, path: Path, sealer: Sealer | None = None) -> dict[str, object]:
        """The alert in one file; ValueError if it is foreign, altered or under another key."""
        try:
            plain = (sealer or self._sealer).open(path.read_bytes(), name=path.name,
                                                   context=path.name.encode())
        except SealedFileError as exc:
            raise ValueError(str(exc)) from None
        data: dict[str, object] = json.loads(plain)
        return data

    def _wipe(self, path: Path) -> bool:
        """Wipe one copy and tell the listener (the snapshot archive) it is gone."""
        existed = wipe_file(path)
        if self._snapshots is not None:
            self._snapshots.discard(_alert_id(path))
        return existed

    def _set_aside(self, path: Path) -> None:
        with self._files:
            if path.exists():
                os.replace(path, self._folder / "rejected" / path.name)
                self.counters.rejected += 1

    def deliver_pending(self, client: httpx.Client) -> bool:
        """Send what is waiting, oldest first; False if the registry could not be reached."""
        if self._delivery is None:
            return False
        for path in self.pending():
            try:
                payload = self._read(path)
            except FileNotFoundError:
                continue  # wiped meanwhile (its entry left the list)
            except ValueError:
                log.error("unreadable outbox file set aside", extra={"file": path.name})
                self._set_aside(path)
                continue
            try:
                response = self._delivery.post(client, "/api/v1/edge/alerts", payload,
                                               self._timeout_s)
            except httpx.HTTPError:
                log.warning("registry unreachable; alerts wait in the outbox",
                            extra={"pending": len(self.pending())})
                return False
            if response.status_code in (200, 201):
                with self._files:
                    self._wipe(path)
                    self.counters.delivered += 1
            elif response.status_code == _GONE:
                log.info("registry no longer lists the alert's entry; alert wiped",
                         extra={"file": path.name})
                with self._files:
                    self._wipe(path)
                    self.counters.dropped_entry_gone += 1
            elif response.status_code in (408, 429) or response.status_code >= 500:
                log.warning("registry busy or failing; will retry",
                            extra={"status": response.status_code})
                return False
            else:
                log.error("registry refused an alert; set aside",
                          extra={"status": response.status_code, "file": path.name})
                self._set_aside(path)
        return True

    def forget_entries(self, entry_ids: Iterable[str]) -> int:
        """Wipe every copy about entries that left the watchlist; returns how many.

        Called when a new index version no longer holds them, so an erased or
        expired person's alert is neither kept nor delivered (G-REG-4).
        """
        gone = set(entry_ids)
        if not gone:
            return 0
        wiped = 0
        with self._files:
            self._gone_entries |= gone
            for path in [*self.pending(), *self.rejected()]:
                try:
                    entry_id = self._read(path).get("entry_id")
                except (FileNotFoundError, ValueError):
                    continue  # unreadable files end with the rejected lifetime
                if entry_id in gone and self._wipe(path):
                    wiped += 1
            self.counters.dropped_entry_gone += wiped
        return wiped

    def sweep(self, now: float | None = None) -> int:
        """Wipe copies past their lifetime (file age from mtime); returns how many."""
        now = time.time() if now is None else now
        wiped = 0
        with self._files:
            for path, limit, counter in (
                *((p, self._lifetimes.rejected_s, "rejected_wiped") for p in self.rejected()),
                *((p, self._lifetimes.undelivered_s, "undelivered_wiped") for p in self.pending()),
            ):
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age >= limit and self._wipe(path):
                    setattr(self.counters, counter, getattr(self.counters, counter) + 1)
                    wiped += 1
        if self._snapshots is not None:
            wiped += self._snapshots.sweep(self.alert_ids)
        return wiped

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt every copy under `new_key` (key rotation); resumable, each file atomic."""
        new_sealer = Sealer(OUTBOX, new_key)
        with self._files:
            for path in [*self.pending(), *self.rejected()]:
                try:
                    self._read(path, new_sealer)
                    continue  # already under the new key
                except ValueError:
                    pass
                try:
                    payload = json.dumps(self._read(path)).encode()
                except ValueError:
                    self._wipe(path)  # readable under neither key: nothing to keep
                    continue
                new_sealer.write(path, payload, context=path.name.encode())
            self._sealer = new_sealer
        if self._snapshots is not None:
            self._snapshots.rekey(new_key)

    def wake(self) -> None:
        """Cut a back-off wait short (new alert, or shutting down)."""
        self._wake.set()

    def flush_once(self) -> None:
        """One last delivery attempt, e.g. at shutdown; what fails stays in the outbox."""
        if self._delivery is not None:
            with httpx.Client(verify=self._delivery.verify()) as client:
                self.deliver_pending(client)

    @property
    def delivery(self) -> Delivery | None:
        return self._delivery

    def run(self, stop: threading.Event, *, initial_backoff_s: float = 0.5,
            max_backoff_s: float = 30.0, on_round: Callable[[bool], None] | None = None,
            also: Callable[[httpx.Client], object] | None = None) -> None:
        """Deliver until `stop` is set; back off while the registry is unreachable.

        Each round also ends the copies that outlived their lifetime, so a box
        without a registry forgets on schedule too.
        """
        backoff = initial_backoff_s
        verify = self._delivery.verify() if self._delivery else True
        with httpx.Client(verify=verify) as client:
            while not stop.is_set():
                ok = self.deliver_pending(client)
                self.sweep()
                if also is not None:
                    also(client)  # e.g. the box's status report, on the same connection
                if on_round:
                    on_round(ok)
                backoff = initial_backoff_s if ok else min(max_backoff_s, backoff * 2)
                self._wake.wait(backoff if not ok else 1.0)
                self._wake.clear()


def _alert_id(path: Path) -> str:
    """`<ns>-<alert_id>.alert` -> alert_id."""
    return path.name[: -len(_SUFFIX)].partition("-")[2]

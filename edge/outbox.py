"""An encrypted local outbox: alerts wait here until the registry has them.

An alert is written (AES-256-GCM, atomically) before any attempt to send it,
and its file is removed only after the registry answered 200 or 201. The
registry stores alerts idempotently by `alert_id`, so a crash between its
answer and our delete re-sends an alert it already has, and nothing is lost
or duplicated. A registry that is down only delays delivery (with back-off);
an alert the registry refuses for good (4xx) is kept aside, still encrypted,
for a person to look at.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.alerts import Alert
from registry.durable import make_private_dir, write_private_file

log = logging.getLogger("mamoru.edge.outbox")

MAGIC = b"MOB1"
_NONCE = 12


@dataclass(frozen=True)
class Delivery:
    """Where and as whom alerts are delivered, and which certificate to trust there."""

    url: str
    token: str
    ca_file: Path | None = None

    def verify(self) -> ssl.SSLContext:
        """TLS verification: the system's roots, or the registry's own certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def __repr__(self) -> str:
        return f"Delivery(url={self.url!r}, token=<redacted>)"


class Outbox:
    """Alert files in a folder; `deliver_pending` sends them in the order they were raised."""

    def __init__(self, folder: Path, key: bytes, delivery: Delivery | None,
                 *, timeout_s: float = 5.0) -> None:
        make_private_dir(folder / "rejected")
        self._folder = folder
        self._aead = AESGCM(key)
        self._delivery = delivery
        self._timeout_s = timeout_s
        self._wake = threading.Event()
        self.delivered = 0

    def put(self, alert: Alert) -> Path:
        """Persist an alert before anything tries to send it."""
        payload = json.dumps(alert.to_payload()).encode()
        nonce = secrets.token_bytes(_NONCE)
        name = f"{time.time_ns():020d}-{alert.alert_id}.alert"
        blob = MAGIC + nonce + self._aead.encrypt(nonce, payload, name.encode())
        path = self._folder / name
        write_private_file(path, blob)
        self._wake.set()
        return path

    def pending(self) -> list[Path]:
        return sorted(self._folder.glob("*.alert"))

    def _read(self, path: Path) -> dict[str, object]:
        blob = path.read_bytes()
        if not blob.startswith(MAGIC):
            raise ValueError(f"{path.name} is not an outbox file")
        nonce = blob[len(MAGIC) : len(MAGIC) + _NONCE]
        try:
            plain = self._aead.decrypt(nonce, blob[len(MAGIC) + _NONCE :], path.name.encode())
        except InvalidTag:
            raise ValueError(f"{path.name} fails authentication") from None
        data: dict[str, object] = json.loads(plain)
        return data

    def deliver_pending(self, client: httpx.Client) -> bool:
        """Send what is waiting, oldest first; False if the registry could not be reached."""
        if self._delivery is None:
            return False
        for path in self.pending():
            try:
                payload = self._read(path)
            except ValueError:
                log.error("unreadable outbox file set aside", extra={"file": path.name})
                os.replace(path, self._folder / "rejected" / path.name)
                continue
            try:
                response = client.post(
                    f"{self._delivery.url.rstrip('/')}/api/v1/edge/alerts", json=payload,
                    headers={"Authorization": f"Bearer {self._delivery.token}"},
                    timeout=self._timeout_s,
                )
            except httpx.HTTPError:
                log.warning("registry unreachable; alerts wait in the outbox",
                            extra={"pending": len(self.pending())})
                return False
            if response.status_code in (200, 201):
                path.unlink()
                self.delivered += 1
            elif response.status_code in (408, 429) or response.status_code >= 500:
                log.warning("registry busy or failing; will retry",
                            extra={"status": response.status_code})
                return False
            else:
                log.error("registry refused an alert; set aside",
                          extra={"status": response.status_code, "file": path.name})
                os.replace(path, self._folder / "rejected" / path.name)
        return True

    def wake(self) -> None:
        """Cut a back-off wait short (new alert, or shutting down)."""
        self._wake.set()

    def flush_once(self) -> None:
        """One last delivery attempt, e.g. at shutdown; what fails stays in the outbox."""
        if self._delivery is not None:
            with httpx.Client(verify=self._delivery.verify()) as client:
                self.deliver_pending(client)

    def run(self, stop: threading.Event, *, initial_backoff_s: float = 0.5,
            max_backoff_s: float = 30.0, on_round: Callable[[bool], None] | None = None) -> None:
        """Deliver until `stop` is set; back off while the registry is unreachable."""
        backoff = initial_backoff_s
        verify = self._delivery.verify() if self._delivery else True
        with httpx.Client(verify=verify) as client:
            while not stop.is_set():
                ok = self.deliver_pending(client)
                if on_round:
                    on_round(ok)
                backoff = initial_backoff_s if ok else min(max_backoff_s, backoff * 2)
                self._wake.wait(backoff if not ok else 1.0)
                self._wake.clear()


"""The box tells the registry whether it can still alert, so a person sees a blind box.

A box whose newer watchlist cannot be loaded stops alerting (fail closed,
edge/matcher.py); without this report the store would read silence as "no
shoplifters today". The report holds counts and states only: the index
version and state, alerts waiting, cameras live. It is sent on every change
and at least every `interval_s`; failures are only logged (the outbox's own
back-off covers an unreachable registry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import httpx

from edge.outbox import Delivery

log = logging.getLogger("mamoru.edge.status")

StatusBody = Mapping[str, int | str | None]


class StatusReporter:
    """Posts `provider()` to `/api/v1/edge/status` when it changed or is due."""

    def __init__(self, delivery: Delivery, provider: Callable[[], StatusBody], *,
                 interval_s: float, timeout_s: float = 5.0) -> None:
        self._delivery = delivery
        self._provider = provider
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._last: StatusBody | None = None
        self._sent_at = float("-inf")

    def tick(self, client: httpx.Client, now: float | None = None) -> bool:
        """Send if needed; True if a report was accepted now."""
        now = time.monotonic() if now is None else now
        body = dict(self._provider())
        if body == self._last and now - self._sent_at < self._interval_s:
            return False
        try:
            response = self._delivery.post(client, "/api/v1/edge/status", body, self._timeout_s)
        except httpx.HTTPError:
            return False
        if response.status_code != 204:
            log.warning("registry refused the box's status report",
                        extra={"status": response.status_code})
            return False
        self._last, self._sent_at = body, now
        return True

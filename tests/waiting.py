"""Waiting for something to happen: the one poll loop the tests use instead of fixed sleeps.

A fixed sleep is either too short on a loaded machine (a flaky failure) or too
long everywhere (a slow suite). `wait_until` returns as soon as the condition
holds and, when it never does, fails with what was awaited and for how long.
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable

import httpx

POLL_S = 0.1


def wait_until(condition: Callable[[], object], timeout: float, what: str, *,
               poll_s: float = POLL_S, alive: Callable[[], str | None] | None = None) -> None:
    """Poll `condition` until it is truthy; AssertionError naming `what` after `timeout` s.

    `alive` is asked on every round and may return why waiting is pointless (a
    server process that exited, a thread that died): the failure then says that
    at once instead of running out the clock.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if alive is not None and (gone := alive()) is not None:
            raise AssertionError(f"gave up waiting for {what}: {gone}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


def answers(url: str, status: int, *, verify: ssl.SSLContext | bool = True,
            headers: dict[str, str] | None = None) -> Callable[[], bool]:
    """A condition: `GET url` answers `status`; a refused, reset or half-set-up TLS connection
    means 'not yet' (a server still starting)."""

    def check() -> bool:
        try:
            return httpx.get(url, verify=verify, headers=headers, timeout=2.0).status_code == status
        except (httpx.TransportError, ssl.SSLError):
            return False

    return check


def running(process: subprocess.Popen[str]) -> Callable[[], str | None]:
    """An `alive` check for `wait_until`: None while `process` runs, else its exit and output."""

    def check() -> str | None:
        if process.poll() is None:
            return None
        output = process.stdout.read() if process.stdout else ""
        return f"the process exited with {process.returncode}: {output[-2000:]}"

    return check

"""OpenAPI-driven fuzzing of a real `mamoru serve`: no input from anyone gets a 5xx.

A 500 is the registry saying "I did not expect that": for a store it means an
alert, a decision or an erasure (G-REG-3, G-DSR-2) that did not happen, and an
error path nobody has looked at. schemathesis generates requests for every
route of the schema (`fuzzing.schema_of`), valid ones (positive) and invalid
ones (negative); some name the ids of the seeded data, so routes get past
"not found" to their real work. Each generated request is then sent as every
caller the registry has: anonymous, each role with its session cookie and
CSRF token (G-SEC-1/2), and an edge box with its bearer token. Generating once
and sending six times keeps the test inside its time budget on two cores, and
the six answers to one request differ only by who asked.

Every request and answer is counted by status class; the test fails on any
answer >= 500 and names each distinct one with a curl command to replay it.
`MAMORU_FUZZ_SEED=<n>` replays a run's generation (the seed is printed).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from http.cookiejar import DefaultCookiePolicy
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis.strategies as st
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation

from tests.registry.conftest import Registry
from tests.registry.fuzzing import (
    Identity,
    Seeded,
    app_for_schema,
    device,
    log_in,
    schema_of,
    seed,
    serve,
)

EXAMPLES_PER_MODE = 14  # per operation, positive and negative alike
MIN_REQUESTS = 5_000
# Routes that take the seeded data away go last, and those that end the caller's session
# after them (a person's session and the seeded entry last the whole run otherwise).
_TAKES_DATA = ("/erase", "/withdraw", "/reject", "/dismiss")
_ENDS_SESSION = ("DELETE /api/v1/session", "POST /logout")
# Who plays, in this order (the managers and admins, who can erase, last).
PEOPLE = ("auditor", "staff", "mgr1", "admin")


@dataclass
class Tally:
    """Requests sent and answers received, by status class; each distinct 5xx once."""

    sent: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    server_errors: dict[str, str] = field(default_factory=dict)

    def record(self, case: Case, status: int, body: bytes) -> None:
        self.sent += 1
        self.by_class[f"{status // 100}xx"] += 1
        if status >= 500:
            self.server_errors.setdefault(
                f"{case.operation.label} -> {status}",
                f"{case.as_curl_command()}\n    answer: {body[:200]!r}")


def _order(op: APIOperation) -> tuple[int, str]:
    if op.label in _ENDS_SESSION:
        return (2, op.label)
    if op.method.upper() == "POST" and op.path.endswith(_TAKES_DATA):
        return (1, op.label)
    return (0, op.label)


def _real_ids(op: APIOperation, seeded: Seeded) -> list[dict[str, str]]:
    """Path parameters naming the seeded data, where the route takes such ids."""
    names = {p.name for p in op.path_parameters}
    options = {"entry_id": [seeded.entry_id, seeded.pending_id],
               "alert_id": [seeded.alert_id], "image_id": list(seeded.image_ids)}
    if not names or not names <= options.keys():
        return []
    combos: list[dict[str, str]] = [{}]
    for name in sorted(names):
        combos = [{**combo, name: value} for combo in combos for value in options[name]]
    return combos


def _strategy(op: APIOperation, mode: GenerationMode, seeded: Seeded) -> st.SearchStrategy[Case]:
    generated = op.as_strategy(generation_mode=mode)
    real = [op.as_strategy(generation_mode=mode, path_parameters=ids)
            for ids in _real_ids(op, seeded)]
    return st.one_of(generated, *real) if real else generated


def generate(op: APIOperation, seeded: Seeded, run_seed: int) -> list[Case]:
    """schemathesis' cases for one operation, positive and negative."""
    cases: list[Case] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @hypothesis_seed(run_seed)
        @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=_strategy(op, mode, seeded))
        def collect(case: Case) -> None:
            cases.append(case)

        try:
            collect()
        except Unsatisfiable:
            pass  # no invalid input to make (a route without parameters)
    return cases


class Caller:
    """One identity's connection and tally; its own cookies never stick (headers say who)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.tally = Tally()
        self.http = requests.Session()
        self.http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def send_all(self, cases: list[Case], url: str) -> None:
        for case in cases:
            try:
                response = case.call(base_url=url, session=self.http,
                                     headers=self.identity.headers, timeout=60)
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                    UnicodeError):
                continue  # a request the client refuses to send never reaches the server
            self.tally.record(case, response.status_code, response.content)


def server_failures(log: str) -> list[str]:
    """The distinct exceptions in the server's log (the last line of each traceback)."""
    found: list[str] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not
                        lines[j].startswith((" ", "Traceback", "During", "The above"))), None)
            if end is not None and lines[end] not in found:
                found.append(lines[end])
    return found


def _table(tallies: dict[str, Tally], run_seed: int, seconds: float) -> str:
    lines = [f"fuzzing seed {run_seed}: {seconds:.0f} s",
             f"{'identity':<12} {'requests':>8} {'2xx':>6} {'3xx':>6} {'4xx':>6} {'5xx':>6}"]
    for name, t in tallies.items():
        c = t.by_class
        lines.append(f"{name:<12} {t.sent:>8} {c['2xx']:>6} {c['3xx']:>6} {c['4xx']:>6} "
                     f"{c['5xx']:>6}")
    total = sum(t.sent for t in tallies.values())
    errors = sum(t.by_class["5xx"] for t in tallies.values())
    lines.append(f"{'all':<12} {total:>8} {'':>6} {'':>6} {'':>6} {errors:>6}")
    return "\n".join(lines)


def test_no_caller_gets_a_server_error(registry: Registry, tmp_path: Path) -> None:
    run_seed = int(os.environ.get("MAMORU_FUZZ_SEED", random.randrange(2**32)))
    started = time.monotonic()
    seeded = seed(registry)
    schema = schemathesis.openapi.from_dict(schema_of(app_for_schema(registry)))
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=_order)
    tallies: dict[str, Tally] = {}
    with serve(registry, tmp_path / "serve.log") as server:
        identities = [Identity("anonymous", {}), device(seeded.device_token)]
        identities += [log_in(server.url, name) for name in PEOPLE]
        callers = [Caller(identity) for identity in identities]
        # The callers send one operation's cases at once while this thread generates the
        # next operation's (sending is mostly waiting for the server); operations stay in order.
        with ThreadPoolExecutor(max_workers=len(callers)) as pool:
            previous: list[Future[None]] = []
            for op in operations:
                cases = generate(op, seeded, run_seed)
                for done in previous:
                    done.result()
                previous = [pool.submit(caller.send_all, cases, server.url) for caller in callers]
            for done in previous:
                done.result()
        tallies = {caller.identity.name: caller.tally for caller in callers}
        log = server.output()
    table = _table(tallies, run_seed, time.monotonic() - started)
    print("\n" + table)
    errors = {k: v for t in tallies.values() for k, v in t.server_errors.items()}
    assert not errors, (table + "\n\n" + "\n".join(f"{k}\n  {v}" for k, v in errors.items())
                        + "\n\nexceptions in the server's log:\n"
                        + "\n".join(server_failures(log)))
    assert sum(t.sent for t in tallies.values()) >= MIN_REQUESTS, table

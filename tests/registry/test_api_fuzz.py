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
`MAMORU_FUZZ_SEED=<n>` replays a run's generation (the seed is printed);
`MAMORU_FUZZ_EXAMPLES=<n>` generates more per operation (default 14) for a deeper run.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation

from mamoru.wiring import api_host
from registry.api.app import create_app
from registry.api.deps import api_routes
from tests import REPO
from tests.registries import OBAMA, Registry
from tests.registry.fuzzing import (
    Identity,
    Seeded,
    app_for_schema,
    device,
    schema_of,
    seed,
    serve,
    session_of,
)
from tests.registry.people import BASE_URL, Clock, log_in, web_settings

pytestmark = [pytest.mark.fuzz, pytest.mark.server]

AnyCase = Case[Any]
Operation = APIOperation[Any, Any, Any, Any]

# Per operation, positive and negative alike; MAMORU_FUZZ_EXAMPLES=<n> fuzzes deeper.
EXAMPLES_PER_MODE = int(os.environ.get("MAMORU_FUZZ_EXAMPLES", "14"))
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

    def record(self, case: AnyCase, status: int, body: bytes) -> None:
        self.sent += 1
        self.by_class[f"{status // 100}xx"] += 1
        if status >= 500:
            self.server_errors.setdefault(
                f"{case.operation.label} -> {status}",
                f"{case.as_curl_command()}\n    answer: {body[:200]!r}")


def _order(op: Operation) -> tuple[int, str]:
    if op.label in _ENDS_SESSION:
        return (2, op.label)
    if op.method.upper() == "POST" and op.path.endswith(_TAKES_DATA):
        return (1, op.label)
    return (0, op.label)


# A path parameter with this value is replaced, when the case is sent, by an id an earlier
# answer in the run created (a proposal made by the fuzzer, then approved or rejected by it).
CREATED = "created-during-the-run"


class Created:
    """Ids that answers of this run named (`entry_id`, `alert_id`): the stateful part."""

    def __init__(self, run_seed: int) -> None:
        self._ids: dict[str, list[str]] = {"entry_id": [], "alert_id": []}
        self._lock = threading.Lock()
        self._random = random.Random(run_seed)

    def note(self, body: bytes) -> None:
        try:
            answer = json.loads(body)
        except ValueError:
            return
        if isinstance(answer, dict):
            with self._lock:
                for name, ids in self._ids.items():
                    value = answer.get(name)
                    if isinstance(value, str) and value not in ids:
                        ids.append(value)

    def resolve(self, case: AnyCase) -> AnyCase:
        """The case itself, or a copy naming created ids where it asks for them."""
        if CREATED not in case.path_parameters.values():
            return case
        with self._lock:
            params = {name: (self._random.choice(self._ids[name]) if self._ids.get(name)
                             else "0" * 32) if value == CREATED else value
                      for name, value in case.path_parameters.items()}
        resolved: AnyCase = case.operation.Case(
            path_parameters=params, headers=case.headers, query=case.query, body=case.body,
            media_type=case.media_type)
        return resolved


def _real_ids(op: Operation, seeded: Seeded) -> list[dict[str, str]]:
    """Path parameters naming the seeded data or data the run created, where the route takes
    such ids."""
    names = {p.name for p in op.path_parameters}
    options = {"entry_id": [seeded.entry_id, seeded.pending_id, CREATED],
               "alert_id": [seeded.alert_id, CREATED], "image_id": list(seeded.image_ids)}
    if not names or not names <= options.keys():
        return []
    combos: list[dict[str, str]] = [{}]
    for name in sorted(names):
        combos = [{**combo, name: value} for combo in combos for value in options[name]]
    return combos


def _with_real_media(case: AnyCase, seeded: Seeded) -> AnyCase:
    """The case with a real photo or snapshot where it uploads one, so the face engine runs
    and the rest of the generated input reaches the code behind it."""
    body: Any = case.body
    if isinstance(body, dict):
        if "photos" in body:
            body["photos"] = [seeded.photo_jpeg]
        if "photo" in body:
            body["photo"] = seeded.photo_jpeg
        if "snapshot_png_b64" in body:
            body["snapshot_png_b64"] = base64.b64encode(seeded.snapshot_png).decode()
            body["entry_id"] = seeded.entry_id
    return case


def _takes_media(op: Operation) -> bool:
    return op.label in ("POST /api/v1/proposals", "POST /api/v1/quality-check", "POST /propose",
                        "POST /propose/check", "POST /api/v1/edge/alerts")


def _strategy(op: Operation, mode: GenerationMode, seeded: Seeded) -> st.SearchStrategy[AnyCase]:
    generated = op.as_strategy(generation_mode=mode)
    variants = [op.as_strategy(generation_mode=mode, path_parameters=ids)
                for ids in _real_ids(op, seeded)]
    if _takes_media(op):
        variants.append(generated.map(lambda case: _with_real_media(case, seeded)))
    return st.one_of(generated, *variants) if variants else generated


def generate(op: Operation, seeded: Seeded, run_seed: int) -> list[AnyCase]:
    """schemathesis' cases for one operation, positive and negative."""
    cases: list[AnyCase] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @hypothesis_seed(run_seed)
        @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=_strategy(op, mode, seeded))
        def collect(case: AnyCase) -> None:
            cases.append(case)

        try:
            collect()
        except Unsatisfiable:
            pass  # no invalid input to make (a route without parameters)
    return cases


class Caller:
    """One identity's connection and tally; its own cookies never stick (headers say who)."""

    def __init__(self, identity: Identity, created: Created) -> None:
        self.identity = identity
        self.created = created
        self.tally = Tally()
        self.http = requests.Session()
        self.http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def send_all(self, cases: list[AnyCase], url: str) -> None:
        for generated in cases:
            case = self.created.resolve(generated)
            try:
                response = case.call(base_url=url, session=self.http, allow_redirects=False,
                                     headers=self.identity.headers, timeout=60)
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                    UnicodeError):
                continue  # a request the client refuses to send never reaches the server
            self.tally.record(case, response.status_code, response.content)
            if 200 <= response.status_code < 300:
                self.created.note(response.content)


def server_failures(log: str) -> list[str]:
    """The distinct failures in the server's log: exception type and where in our code it
    was raised (the message varies with the input), with the first message seen."""
    found: dict[tuple[str, str], str] = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        where = ""
        for j in range(i + 1, len(lines)):
            current = lines[j]
            if current.startswith('  File "') and str(REPO) in current and ".venv" not in current:
                where = current.strip()
            elif current and not current.startswith(" "):
                kind = current.split(":", 1)[0]
                found.setdefault((kind, where), current)
                break
    return [f"{message}\n      at {where}" for (_, where), message in found.items()]


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
    app = app_for_schema(registry)
    schema = schemathesis.openapi.from_dict(schema_of(app))
    operations = sorted((result.ok() for result in schema.get_all_operations()),  # type: ignore[union-attr]
                        key=_order)
    served = {f"{method} {route.path}" for route in api_routes(app) for method in route.methods}
    assert served == {op.label for op in operations}, "the fuzzer must see every route"
    tallies: dict[str, Tally] = {}
    with serve(registry, tmp_path / "serve.log") as server:
        identities = [Identity("anonymous", {}), device(seeded.device_token)]
        identities += [session_of(server.url, name) for name in PEOPLE]
        created = Created(run_seed)
        callers = [Caller(identity, created) for identity in identities]
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
    print("\n" + table)  # noqa: T201 (the table, shown with -s)
    errors = {k: v for t in tallies.values() for k, v in t.server_errors.items()}
    assert not errors, (table + "\n\n" + "\n".join(f"{k}\n  {v}" for k, v in errors.items())
                        + "\n\nexceptions in the server's log:\n"
                        + "\n".join(server_failures(log)))
    assert sum(t.sent for t in tallies.values()) >= MIN_REQUESTS, table


# --- what the fuzzing found ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/watchlist", "/api/v1/watchlist"])
def test_an_unexpected_failure_reaches_the_log_with_its_traceback(
        registry: Registry, caplog: pytest.LogCaptureFixture, path: str) -> None:
    """A 500 tells the person "the registry's log has the details": it must.

    The fuzzer's 500s (pages and API alike) were logged as "unexpected failure" followed
    by "NoneType: None": the handlers run after the `except` that caught the exception
    has ended, so `logger.exception` found no exception to log. Here the failure is a
    damaged database (a table gone), which no input check can turn into a 4xx.
    """
    registry.register(OBAMA)
    app = create_app(api_host(web_settings(registry.settings), engine=registry.engine,
                              clock=Clock()))
    # As a server answers it: the 500, not the exception re-raised into the test.
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        manager = log_in(client, "mgr1")
        registry.ctx.repo.connection.execute("ALTER TABLE incidents RENAME TO incidents_gone")
        with caplog.at_level(logging.ERROR):
            answer = manager.get(path)
    assert answer.status_code == 500
    assert "Traceback" not in answer.text and "incidents" not in answer.text
    [record] = [r for r in caplog.records if "unexpected failure" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is not None, "no traceback logged"
    assert "no such table: incidents" in str(record.exc_info[1])

"""The ``erasure`` section of benchmarks/chain.py: an erasure at the centre reaching every box.

Issue 15 must show the time until the last of a chain's boxes no longer holds
an erased entry (target: within one poll interval plus the delta's transfer)
and the bytes moved per box, against the whole-index download.

Set-up (not timed): a throw-away registry on ``--backend`` (SQLCipher files or
PostgreSQL in a throw-away cluster, benchmarks/chain_backends.py) with a
watchlist of ``--entries`` entries: the listed person proposed from a real
photo and approved with the real engine (benchmarks/pipeline.py), and the
rest synthetic active entries of 1-3 templates each inserted through the
repository in one transaction and published once (as benchmarks/joint_use.py
does; their vectors are unit vectors around a per-entry centre, which does not
change a single byte count here). Two devices per store are added as
``mamoru device add`` adds them.

The run: ``mamoru serve`` with ``--erasure-workers`` workers as a subprocess
(HTTPS with its own certificate unless ``--insecure-http``), and one asyncio
process playing every box, each with its own keep-alive connection(s) from its
store's loopback address:

1. ``start``: every box downloads the whole index at once (a fleet's first
   start, or after a long outage) and opens it (`WatchlistIndex.from_sealed`).
2. Boxes then poll ``GET /api/v1/edge/index/version`` every ``--poll-s`` with a
   random phase and +-``--jitter-s`` per interval, for ``--settle-s``.
3. ``delta``: the listed person is erased at the centre with the real use case
   (`registry.watchlist.entries.erase` by a trained manager, in a thread of this
   process: commit, audit, publish). A box that sees a newer version fetches
   ``GET /api/v1/edge/index/delta?since=<held>``, authenticates it
   (`open_delta`) and applies it to the index it holds (`WatchlistIndex.apply`):
   it is done when the applied index no longer holds the entry.
4. ``whole`` (the naive row): a synthetic entry is erased the same way, and
   every box fetches and opens the whole index instead of the delta.

Every box applies or opens what it downloaded itself (all 2,000, none
skipped); the resulting indexes are then shared between boxes when they hold
the same version and the same entries, so that memory holds one copy per
version, not one per box. The time of a box is from the start of the erase
call (the commit and the publish are inside it) to the moment its applied
index lacks the entry; it includes this one client process's own scheduling
delay (client CPU is reported: on a small machine client and server share the
cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.box_http import BoxClient, HttpError, Reply
from benchmarks.chain_backends import Backend, registry_backend
from benchmarks.chain_load import (
    BOXES_PER_STORE,
    REPO,
    Server,
    add_devices,
    box_client,
    cpu_seconds,
    process_tree,
    running_server,
    serve_supports_workers,
)
from benchmarks.pipeline import build_registry, markdown_table, percentile
from kernel.watchlist_index import WatchlistIndex, open_delta
from mamoru.face_data import data_root
from mamoru.settings import MamoruSettings
from mamoru.wiring import open_engine, open_registry_from
from registry.context import RegistryContext
from registry.domain import ConfirmationKind, Entry, EntryState, IncidentInput, OffenceCategory
from registry.watchlist.entries import erase

OUT_FILE = REPO / "benchmarks" / "out" / "chain-erasure.json"
VERSION_PATH = "/api/v1/edge/index/version"
INDEX_PATH = "/api/v1/edge/index"
DELTA_PATH = "/api/v1/edge/index/delta"
MANAGER = "mgr1"  # the trained manager benchmarks/pipeline.py's registry has
TEMPLATES_PER_ENTRY = (1, 3)
NOISE = 0.6  # a synthetic entry's templates: its centre plus noise, renormalised
REQUEST_TIMEOUT_S = 60.0
RETRY_S = 1.0
LAG_TICK_S = 0.1
START_TIMEOUT_S = 600.0  # every box's first whole download


# --- set-up ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A registry ready to serve, what the boxes hold (tokens, index key) and what is erased."""

    settings: MamoruSettings
    env: dict[str, str]
    tokens: list[str]
    index_key: bytes = field(repr=False)
    pack: str
    victims: tuple[str, str]  # erased in the delta phase, then in the whole-index phase
    entries: int
    templates: int
    setup_s: dict[str, float]


def insert_synthetic_entries(ctx: RegistryContext, count: int, seed: int) -> list[str]:
    """`count` active entries of 1-3 templates each, one transaction, one publish."""
    rng = np.random.default_rng(seed)
    admin = ctx.repo.user_by_name("admin")
    assert admin is not None
    dim, pack = ctx.index_spec.dim, ctx.index_spec.pack
    now = datetime.now(UTC)
    ids = []
    with ctx.writing(), ctx.repo.unit_of_work():
        for i in range(count):
            entry_id = uuid.uuid4().hex
            occurred = now - timedelta(days=int(rng.integers(1, 300)))
            ctx.repo.add_entry(Entry(
                entry_id=entry_id, state=EntryState.ACTIVE, store_id=ctx.policy.store_id,
                features="synthetic", display_name=f"name {i}", proposed_by=admin.user_id,
                proposed_at=occurred, decided_by=admin.user_id, decided_at=occurred,
                decision_reason="benchmark", expires_at=occurred.replace(year=occurred.year + 3),
                revision=1, closed_at=None, closed_reason=""))
            ctx.repo.add_incident(entry_id, ctx.policy.store_id, IncidentInput(
                OffenceCategory.THEFT, occurred, ConfirmationKind.POLICE_REPORT, f"R-{i}",
                "1 item"), admin.user_id, occurred)
            centre = rng.standard_normal(dim)
            low, high = TEMPLATES_PER_ENTRY
            for _ in range(int(rng.integers(low, high + 1))):
                noise = NOISE * rng.standard_normal(dim) / dim**0.5
                vector = centre / np.linalg.norm(centre) + noise
                vector = (vector / np.linalg.norm(vector)).astype(np.float32)
                ctx.repo.add_template(entry_id, pack, vector.tobytes(), dim, "", "{}")
            ids.append(entry_id)
        ctx.repo.bump_watchlist_version()
    ctx.publish_index_if_stale()
    return ids


def make_chain(backend: Backend, stores: int, entries: int, seed: int) -> Chain:
    settings = backend.settings
    setup: dict[str, float] = {}
    start = time.perf_counter()
    engine = open_engine(settings)
    listed = build_registry(settings, engine, data_root(settings.cache_dir), backend.owner)
    setup["registry + listed person (real engine: propose, approve)"] = (
        time.perf_counter() - start)
    start = time.perf_counter()
    with open_registry_from(settings) as ctx:
        synthetic = insert_synthetic_entries(ctx, entries - 1, seed)
        key, pack = ctx.index_key(), ctx.index_spec.pack
        templates = len(ctx.repo.active_templates(pack))
    setup[f"{entries - 1} synthetic entries (one transaction) + publish"] = (
        time.perf_counter() - start)
    start = time.perf_counter()
    tokens = add_devices(settings, stores * BOXES_PER_STORE)
    setup[f"{len(tokens)} devices added"] = time.perf_counter() - start
    return Chain(settings, backend.env, tokens, key, pack, (listed, synthetic[len(synthetic) // 2]),
                 entries, templates, setup)


# --- the boxes ---------------------------------------------------------------------------


@dataclass
class Phase:
    """One erasure and what every box did about it."""

    mode: str  # "delta" or "whole"
    entry_id: str
    started_s: float
    erase_s: float = 0.0
    done_s: dict[int, float] = field(default_factory=dict)  # box -> seconds after started_s
    bytes: dict[int, int] = field(default_factory=dict)  # box -> body bytes fetched for it
    work_s: list[float] = field(default_factory=list)  # authenticate + apply/open, per box


@dataclass
class Fleet:
    """The shared state of the run: clock, phases, request outcomes, the held indexes."""

    chain: Chain
    boxes: int
    poll_s: float
    jitter_s: float
    t0: float = field(default_factory=time.perf_counter)
    initial_s: dict[int, float] = field(default_factory=dict)
    initial_bytes: dict[int, int] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    latency_s: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    shared: dict[int, WatchlistIndex] = field(default_factory=dict)
    polling: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    copies: int = 0  # applied indexes that differed from the shared one of their version
    lag_s: list[float] = field(default_factory=list)  # how late the client's loop wakes up

    def now(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def phase(self) -> Phase | None:
        return self.phases[-1] if self.phases else None

    def share(self, fresh: WatchlistIndex) -> WatchlistIndex:
        """The one copy of this version, if `fresh` holds the same entries as it."""
        known = self.shared.setdefault(fresh.version, fresh)
        if known is fresh:
            return fresh
        if len(known) == len(fresh) and known.entry_ids() == fresh.entry_ids():
            return known
        self.copies += 1
        return fresh

    async def get(self, client: BoxClient, kind: str, path: str) -> Reply | None:
        started = time.perf_counter()
        try:
            response = await client.get(path)
        except HttpError as exc:
            self.outcomes[f"{kind}: {exc.kind}"] += 1
            return None
        self.latency_s.setdefault(kind, []).append(time.perf_counter() - started)
        if response.status != 200:
            self.outcomes[f"{kind}: HTTP {response.status}"] += 1
            return None
        self.outcomes[f"{kind}: ok"] += 1
        return response


async def first_download(fleet: Fleet, box: int, client: BoxClient) -> WatchlistIndex:
    """The whole index, retried until it comes (a box cannot match without it)."""
    chain = fleet.chain
    started = fleet.now()
    while True:
        response = await fleet.get(client, "whole (start)", INDEX_PATH)
        if response is not None:
            blob = response.body
            index = WatchlistIndex.from_sealed(blob, key=chain.index_key, name=f"box {box}",
                                               expected_pack=chain.pack)
            fleet.initial_s[box] = fleet.now() - started
            fleet.initial_bytes[box] = len(blob)
            return fleet.share(index)
        await asyncio.sleep(RETRY_S)


async def catch_up(fleet: Fleet, box: int, client: BoxClient,
                   held: WatchlistIndex) -> WatchlistIndex:
    """One poll; on a newer version, the phase's way to it (delta or whole index)."""
    response = await fleet.get(client, "version", VERSION_PATH)
    phase = fleet.phase
    if response is None or phase is None:
        return held
    if int(json.loads(response.body)["version"]) <= held.version:
        return held
    chain = fleet.chain
    if phase.mode == "delta":
        response = await fleet.get(client, "delta", f"{DELTA_PATH}?since={held.version}")
        if response is None:
            return held
        work = time.perf_counter()
        fresh = held.apply(open_delta(response.body, key=chain.index_key, name=f"box {box}"))
    else:
        response = await fleet.get(client, "whole", INDEX_PATH)
        if response is None:
            return held
        work = time.perf_counter()
        fresh = WatchlistIndex.from_sealed(response.body, key=chain.index_key,
                                           name=f"box {box}", expected_pack=chain.pack)
    done = time.perf_counter()
    phase.bytes[box] = phase.bytes.get(box, 0) + len(response.body)
    if phase.entry_id not in fresh.entry_ids() and box not in phase.done_s:
        phase.done_s[box] = fleet.now() - phase.started_s
        phase.work_s.append(done - work)
        fleet.progress.set()
    return fleet.share(fresh)


async def run_box(fleet: Fleet, box: int, client: BoxClient, rng: random.Random) -> None:
    held = await first_download(fleet, box, client)
    if len(fleet.initial_s) == fleet.boxes:
        fleet.ready.set()
    await fleet.polling.wait()
    at = fleet.now() + rng.uniform(0.0, fleet.poll_s)
    while True:
        delay = at - fleet.now()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            held = await catch_up(fleet, box, client, held)
        except Exception as exc:  # counted, and the box polls again (as a real one does)
            fleet.outcomes[f"box: {type(exc).__name__}"] += 1
        at += fleet.poll_s + rng.uniform(-fleet.jitter_s, fleet.jitter_s)
        while at < fleet.now():
            at += fleet.poll_s


async def lag_monitor(fleet: Fleet) -> None:
    """The client's own share of every time measured: how late its event loop wakes up."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        fleet.lag_s.append(time.perf_counter() - before - LAG_TICK_S)


def erase_at_centre(ctx: RegistryContext, entry_id: str) -> None:
    manager = ctx.repo.user_by_name(MANAGER)
    assert manager is not None
    erase(ctx, actor=manager, entry_id=entry_id, reason="erasure request (benchmark)",
          now=datetime.now(UTC))


async def wait_phase(fleet: Fleet, phase: Phase, timeout_s: float) -> None:
    deadline = fleet.now() + timeout_s
    while len(phase.done_s) < fleet.boxes and fleet.now() < deadline:
        fleet.progress.clear()
        try:
            await asyncio.wait_for(fleet.progress.wait(), timeout=max(0.0, deadline - fleet.now()))
        except TimeoutError:
            break


async def simulate(chain: Chain, server: Server, args: argparse.Namespace) -> tuple[Fleet, float]:
    boxes = len(chain.tokens)
    fleet = Fleet(chain, boxes, args.poll_s, args.jitter_s)
    rng = random.Random(args.seed)
    clients = [box_client(server, token, i // BOXES_PER_STORE, args.connections_per_box,
                          timeout_s=REQUEST_TIMEOUT_S)
               for i, token in enumerate(chain.tokens)]
    tasks = [asyncio.create_task(run_box(fleet, i, c, random.Random(rng.random())))
             for i, c in enumerate(clients)]
    with ThreadPoolExecutor(1, thread_name_prefix="centre") as centre:
        loop = asyncio.get_running_loop()
        ctx = await loop.run_in_executor(centre, open_registry_from, chain.settings)
        try:
            try:
                await asyncio.wait_for(fleet.ready.wait(), timeout=START_TIMEOUT_S)
            except TimeoutError:
                raise RuntimeError(f"only {len(fleet.initial_s)} of {boxes} boxes had the whole "
                                   f"index after {START_TIMEOUT_S:g} s") from None
            start_wall = max(fleet.initial_s.values())
            fleet.polling.set()
            tasks.append(asyncio.create_task(lag_monitor(fleet)))
            await asyncio.sleep(args.settle_s)
            for mode, entry_id in zip(("delta", "whole"), chain.victims, strict=True):
                phase = Phase(mode, entry_id, fleet.now())
                fleet.phases.append(phase)
                await loop.run_in_executor(centre, erase_at_centre, ctx, entry_id)
                phase.erase_s = fleet.now() - phase.started_s
                await wait_phase(fleet, phase, args.phase_timeout_s)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
            await loop.run_in_executor(centre, ctx.close)
    return fleet, start_wall


# --- figures -------------------------------------------------------------------------------


def _s(values: Sequence[float], q: float) -> float | None:
    value = percentile(list(values), q)
    return None if value is None else round(value, 2)


def phase_row(label: str, times: Sequence[float], sizes: Sequence[int], boxes: int,
              erase_s: float | None) -> dict[str, Any]:
    return {"row": label, "boxes_done": len(times), "boxes": boxes,
            "bytes_per_box": int(np.median(sizes)) if len(sizes) else None,
            "total_mb": round(sum(sizes) / 1e6, 3),
            "p50_s": _s(times, 50), "p99_s": _s(times, 99),
            "last_s": round(max(times), 2) if len(times) else None,
            "erase_call_s": None if erase_s is None else round(erase_s, 2)}


def figures(fleet: Fleet, start_wall: float) -> dict[str, Any]:
    rows = [phase_row("start: whole index, every box at once", list(fleet.initial_s.values()),
                      list(fleet.initial_bytes.values()), fleet.boxes, None)]
    labels = {"delta": "erasure -> delta (index/delta?since=)",
              "whole": "erasure -> whole index (naive)"}
    for phase in fleet.phases:
        row = phase_row(labels[phase.mode], list(phase.done_s.values()),
                        list(phase.bytes.values()), fleet.boxes, phase.erase_s)
        row["box_work_p50_ms"] = _s([w * 1000 for w in phase.work_s], 50)
        rows.append(row)
    requests = {kind: {"count": len(v), "p50_ms": _s([x * 1000 for x in v], 50),
                       "p99_ms": _s([x * 1000 for x in v], 99)}
                for kind, v in fleet.latency_s.items()}
    errors = {k: n for k, n in fleet.outcomes.items() if not k.endswith(": ok")}
    return {"rows": rows, "start_wall_s": round(start_wall, 2), "requests": requests,
            "client_lag_p99_ms": _s([x * 1000 for x in fleet.lag_s], 99),
            "errors": errors, "unshared_copies": fleet.copies}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with registry_backend(args.backend, tmp) as backend:
        print(f"erasure: set-up, {args.stores} stores x {BOXES_PER_STORE} boxes, "  # noqa: T201
              f"{args.entries} entries on {args.backend}", file=sys.stderr)
        chain = make_chain(backend, args.stores, args.entries, args.seed)
        workers = args.erasure_workers if serve_supports_workers() else 1
        with running_server(chain, workers=workers, https=not args.insecure_http,
                            log_path=tmp / "serve-erasure.log", token=chain.tokens[0]) as server:
            load_start = os.getloadavg()
            pids = process_tree(server.process.pid) + backend.database_pids()
            server_cpu = cpu_seconds(pids)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu, wall = usage.ru_utime + usage.ru_stime, time.perf_counter()
            print(f"erasure: {workers} worker(s), server ready in "  # noqa: T201
                  f"{server.ready_s:.1f} s", file=sys.stderr)
            fleet, start_wall = asyncio.run(simulate(chain, server, args))
            wall = time.perf_counter() - wall
            usage = resource.getrusage(resource.RUSAGE_SELF)
            pids = process_tree(server.process.pid) + backend.database_pids()
            result = figures(fleet, start_wall)
            result.update(
                backend=args.backend, workers=workers, boxes=len(chain.tokens),
                entries=chain.entries, templates=chain.templates, poll_s=args.poll_s,
                jitter_s=args.jitter_s, https=not args.insecure_http, setup_s=chain.setup_s,
                server_cpu_pct=round(100 * (cpu_seconds(pids) - server_cpu) / wall, 1),
                client_cpu_pct=round(100 * (usage.ru_utime + usage.ru_stime - client_cpu)
                                     / wall, 1),
                wall_s=round(wall, 1), loadavg_start=[round(x, 2) for x in load_start],
                loadavg_end=[round(x, 2) for x in os.getloadavg()])
    return result


def render(result: dict[str, Any]) -> str:
    rows = [(r["row"], f"{r['boxes_done']}/{r['boxes']}", r["bytes_per_box"], r["total_mb"],
             r["p50_s"], r["p99_s"], r["last_s"], r["erase_call_s"] if r["erase_call_s"]
             is not None else "-", r.get("box_work_p50_ms", "-"))
            for r in result["rows"]]
    table = markdown_table(("row", "boxes done", "bytes per box", "total MB", "p50 s", "p99 s",
                            "last box s", "erase call s", "box apply/open p50 ms"), rows)
    requests = markdown_table(
        ("request", "count", "p50 ms", "p99 ms"),
        [(k, v["count"], v["p50_ms"], v["p99_ms"]) for k, v in result["requests"].items()])
    delta = next((r for r in result["rows"] if r["row"].startswith("erasure -> delta")), None)
    target = result["poll_s"] + result["jitter_s"]
    delta_p99 = (result["requests"].get("delta") or {}).get("p99_ms") or 0.0
    verdict = "not measured"
    if delta is not None and delta["last_s"] is not None:
        limit = target + (delta["erase_call_s"] or 0.0) + delta_p99 / 1000.0
        met = delta["boxes_done"] == delta["boxes"] and delta["last_s"] <= limit
        verdict = (f"{'MET' if met else 'NOT MET'}: last box {delta['last_s']} s "
                   f"{'<=' if met else '>'} poll "
                   f"{result['poll_s']:g} s + jitter {result['jitter_s']:g} s + erase call "
                   f"{delta['erase_call_s']} s + delta p99 {delta_p99 / 1000:.2f} s "
                   f"= {limit:.2f} s")
    return "\n".join([
        f"Erasure at the centre: {result['boxes']} boxes ({result['boxes'] // BOXES_PER_STORE} "
        f"stores x {BOXES_PER_STORE}), {result['entries']} entries / {result['templates']} "
        f"templates, {result['backend']}, {result['workers']} API worker(s), "
        f"{'HTTPS' if result['https'] else 'HTTP'} on loopback, poll every "
        f"{result['poll_s']:g} s +- {result['jitter_s']:g} s; one asyncio client process; "
        f"{os.cpu_count()} cores shared by client and server; load average "
        f"{result['loadavg_start']} at the start, {result['loadavg_end']} at the end\n",
        table + "\n",
        requests + "\n",
        f"start: the whole download round took {result['start_wall_s']} s for all boxes. "
        f"Erasure rows: seconds from the start of the erase call (commit + publish inside) "
        f"until a box's applied index lacks the entry; every box applied (delta) or opened "
        f"(whole) what it fetched itself.",
        f"Errors: {result['errors'] or 0}; server CPU {result['server_cpu_pct']} %, client "
        f"CPU {result['client_cpu_pct']} % of one core over {result['wall_s']} s, client "
        f"loop lag p99 {result['client_lag_p99_ms']} ms while polling "
        f"(server includes PostgreSQL's processes on that back-end).",
        "Set-up: " + "; ".join(f"{k} {v:.1f} s" for k, v in result["setup_s"].items()),
        f"Target (within one poll interval plus delta transfer): {verdict}",
    ])


def section_erasure(args: argparse.Namespace) -> None:
    """An erasure at the centre reaching every box: delta against the whole index."""
    os.environ.setdefault("MAMORU_CACHE_DIR", str(REPO / ".cache"))
    with tempfile.TemporaryDirectory(prefix="mamoru-chain-erasure-") as tmp_name:
        result = run(args, Path(tmp_name))
    print(render(result))  # noqa: T201
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps({
        "command": "python -m benchmarks.chain " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), **result,
    }, indent=2) + "\n", encoding="utf-8")


def add_erasure_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of its own; --stores, --backend, --poll-s, --seed, --insecure-http and
    --connections-per-box are the load section's."""
    group = parser.add_argument_group(
        "erasure", "full scale: --stores 1000 (2,000 boxes); defaults are a quick run")
    group.add_argument("--entries", type=int, default=1_000,
                       help="watchlist entries (1 real, the rest synthetic, 1-3 templates)")
    group.add_argument("--erasure-workers", type=int, default=os.cpu_count() or 2,
                       help="API workers of the server the erasure runs against")
    group.add_argument("--jitter-s", type=float, default=1.0,
                       help="each poll interval is poll-s +- this")
    group.add_argument("--settle-s", type=float, default=15.0,
                       help="polling before the first erasure (the phases spread)")
    group.add_argument("--phase-timeout-s", type=float, default=120.0,
                       help="give up waiting for the last box after this")


def check_erasure_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.entries < 3 or args.erasure_workers < 1:
        parser.error("--entries must be at least 3 and --erasure-workers at least 1")
    if not 0 <= args.jitter_s < args.poll_s or args.settle_s < 0 or args.phase_timeout_s <= 0:
        parser.error("--jitter-s must be in [0, --poll-s), --settle-s >= 0, "
                     "--phase-timeout-s > 0")

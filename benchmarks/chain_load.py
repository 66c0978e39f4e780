"""The ``load`` section of benchmarks/chain.py: a chain's boxes against one real `mamoru serve`.

Set-up (not timed as load): a throw-away registry on the chosen back-end
(``--backend``: SQLCipher files, or PostgreSQL in a throw-away cluster started
here, benchmarks/chain_backends.py), the
listed person proposed from a real photo and approved (the real engine, as
benchmarks/pipeline.py does), and two devices per store added with
`registry.accounts.devices.add_device` (what ``mamoru device add`` does), their
tokens kept in memory. The alert snapshot is the edge's own: a composed store
frame (`--snapshot-size`, real background and faces), the listed person found
by the detector, embedded and scored against his registered template (a real
match above the threshold), every other face masked and the match boxed, PNG.

Each run starts ``python -m mamoru serve`` (HTTPS with its generated
self-signed certificate, or ``--insecure-http``) as a subprocess with the
given number of workers (1 is the naive baseline: one process, one lock), and
one asyncio process plays every box (a lean HTTP/1.1 client on asyncio
streams, benchmarks/box_http.py): its own keep-alive connection(s) from
its store's own loopback address (127.10.x.y; the server limits requests per
client address, as it would per store on the internet), polling
``GET /api/v1/edge/index/version`` every ``--poll-s`` on a fixed cadence
(random phase), reporting ``POST /api/v1/edge/status`` every ``--status-s``,
and posting alerts as a Poisson process of ``--alerts-per-store-hour`` per
store, plus bursts: every ``--burst-every-s``, ``--burst-stores`` stores each
post one alert within the same second. Only requests started inside the
measured window (after ``--warmup-s``, for ``--seconds``) count; latency is
measured by the client from send to the end of the response, so it includes
the client's own scheduling delay (the event loop's lag is reported beside it:
on a small machine client and server share the cores). A request with no
answer within ``REQUEST_TIMEOUT_S`` in total (connect included) counts as a
``ReadTimeout`` error; with httpx before, that limit was per read, so a slow
answer showed as a latency of 50-85 s instead.

Server CPU and RSS are read from /proc for the whole process tree of the
server, plus the PostgreSQL cluster's processes on that back-end (psutil is
not a dependency); client CPU is this process's own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

import cv2
import httpx
import numpy as np
import numpy.typing as npt

from benchmarks.box_http import BoxClient, HttpError, Reply
from benchmarks.chain_backends import BACKENDS, Backend, registry_backend
from benchmarks.pipeline import build_registry, markdown_table, percentile
from kernel.masking import draw_match_box, iou, mask_faces
from mamoru.demo.scene import background, cast, crop_face
from mamoru.face_data import data_root
from mamoru.settings import MamoruSettings
from mamoru.wiring import open_engine, open_registry_from
from models.engine import FaceEngine, cosine
from registry.accounts.devices import add_device

Image = npt.NDArray[np.uint8]

REPO = Path(__file__).resolve().parents[1]
OUT_FILE = REPO / "benchmarks" / "out" / "chain-load.json"
EXPECTED = {"poll": 200, "status": 204, "alert": 201}
KINDS = ("poll", "status", "alert", "alert in burst")
TARGET_P99_MS = 200.0
READY_TIMEOUT_S = 300.0  # workers each open the engine: slow on a loaded machine
DRAIN_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
LAG_TICK_S = 0.1
BOXES_PER_STORE = 2


# --- set-up: the registry and what the boxes send -----------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The body every alert carries (a fresh alert id and time each), and how it was made."""

    png_b64: str
    png_bytes: int
    size: tuple[int, int]
    score: float
    threshold: float


@dataclass(frozen=True)
class Fleet:
    """A registry ready to serve, and what its boxes know (tokens only in memory)."""

    settings: MamoruSettings
    env: dict[str, str]
    entry_id: str
    index_version: int
    tokens: list[str]
    snapshot: Snapshot
    setup_s: dict[str, float]
    database_pids: Callable[[], list[int]]  # PostgreSQL's processes: the server's CPU too


class Served(Protocol):
    """What `Server` needs of a registry: where it is, and the environment that opens it."""

    @property
    def settings(self) -> MamoruSettings: ...
    @property
    def env(self) -> dict[str, str]: ...


def box_name(store: int, box: int) -> str:
    return f"store{store:04d}-box{box}"


def store_address(store: int) -> str:
    """Each store's own loopback source address: the rate limit counts per address."""
    return f"127.10.{store // 250}.{store % 250 + 1}"


def _paste(frame: Image, crop: Image, x: int, y: int) -> tuple[int, int, int, int]:
    height, width = crop.shape[:2]
    frame[y : y + height, x : x + width] = crop
    return x, y, x + width, y + height


def make_snapshot(engine: FaceEngine, face_data: Path, template: npt.NDArray[np.float32],
                  size: tuple[int, int]) -> Snapshot:
    """What the edge sends for a match (edge/alerts.py `snapshot`), on a composed frame.

    The listed person's clip photo (not the registered one) walks in front of
    three strangers; the match is the detected face over him, scored against
    his registered template, and must reach the engine's threshold.
    """
    width, height = size
    listed, strangers = cast(face_data, strangers=3)
    frame = background(size, face_data).copy()
    walker = crop_face(listed, height // 2, engine)
    walker_box = _paste(frame, walker.image, width // 2, height - walker.height - 10)
    for k, photo in enumerate(strangers):
        crop = crop_face(photo, height // 4, engine)
        _paste(frame, crop.image, 20 + k * width // 4, 10)
    faces = engine.detect(frame)
    match = max(faces, key=lambda f: iou(f.box, np.asarray(walker_box, np.float32)))
    score = cosine(engine.embed_faces(frame, [match])[0], template)
    if score < engine.threshold:
        raise RuntimeError(f"the composed match scores {score:.3f} < {engine.threshold:.3f}")
    boxed = draw_match_box(mask_faces(frame, faces, keep=match), match)
    ok, png = cv2.imencode(".png", boxed)
    if not ok:
        raise RuntimeError("the snapshot could not be encoded")
    data = bytes(png.tobytes())
    return Snapshot(base64.b64encode(data).decode("ascii"), len(data), size,
                    round(score, 6), engine.threshold)


def add_devices(settings: MamoruSettings, count: int) -> list[str]:
    """`count` boxes, two per store, as `mamoru device add` adds them; their tokens."""
    now = datetime.now(UTC)
    with open_registry_from(settings) as ctx:
        admin = ctx.repo.user_by_name("admin")
        assert admin is not None
        return [add_device(ctx, admin=admin, name=box_name(i // BOXES_PER_STORE,
                                                           i % BOXES_PER_STORE), now=now)
                for i in range(count)]


def make_fleet(backend: Backend, stores: int, snapshot_size: tuple[int, int]) -> Fleet:
    """The registry on `backend`, the listed person, the stores' boxes, the snapshot."""
    setup: dict[str, float] = {}
    settings = backend.settings
    start = time.perf_counter()
    engine = open_engine(settings)
    face_data = data_root(settings.cache_dir)
    entry_id = build_registry(settings, engine, face_data, backend.owner)
    setup["registry + listed person (propose, approve)"] = time.perf_counter() - start
    start = time.perf_counter()
    tokens = add_devices(settings, stores * BOXES_PER_STORE)
    setup[f"{len(tokens)} devices added (add_device, one transaction each)"] = (
        time.perf_counter() - start)
    with open_registry_from(settings) as ctx:
        template = np.frombuffer(ctx.repo.templates(entry_id)[0].vector, np.float32)
        index_version = ctx.repo.watchlist_version()
    snapshot = make_snapshot(engine, face_data, template, snapshot_size)
    return Fleet(settings, backend.env, entry_id, index_version, tokens, snapshot, setup,
                 backend.database_pids)


# --- the server and its process tree ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_supports_workers() -> bool:
    """Whether this `mamoru serve` takes `--workers` (issue 15 part 3; not yet everywhere)."""
    out = subprocess.run([sys.executable, "-m", "mamoru", "serve", "--help"],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "COLUMNS": "200"})
    return "--workers" in out.stdout


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of the live processes `pids` (exited children are not counted)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def rss_bytes(pids: Sequence[int]) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except OSError:
            continue
    return total


class Server:
    """`mamoru serve` in its own process group, started and stopped by this benchmark."""

    def __init__(self, fleet: Served, *, workers: int, https: bool, log: IO[bytes]) -> None:
        self.port = free_port()
        self.ready_s = 0.0
        self.https = https
        self.ca_file = fleet.settings.data_dir / "tls" / "cert.pem"
        command = [sys.executable, "-m", "mamoru", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port)]
        if not https:
            command.append("--insecure-http")
        if workers > 1:
            command += ["--workers", str(workers)]
        env = {**os.environ, **fleet.env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def tls(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.https else False

    def wait_ready(self, token: str) -> None:
        """Until the index version answers (the lifespan opened the registry), or fail."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mamoru serve exited with {self.process.returncode}")
            if not self.https or self.ca_file.exists():  # the certificate comes first
                try:
                    response = httpx.get(f"{self.url}/api/v1/edge/index/version",
                                         verify=self.tls(), timeout=5,
                                         headers={"Authorization": f"Bearer {token}"})
                    if response.status_code == 200:
                        return
                except (httpx.HTTPError, ssl.SSLError):
                    pass
            time.sleep(0.5)
        raise RuntimeError(f"mamoru serve did not answer within {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextmanager
def running_server(fleet: Served, *, workers: int, https: bool, log_path: Path,
                   token: str) -> Iterator[Server]:
    with log_path.open("ab") as log:
        started = time.perf_counter()
        server = Server(fleet, workers=workers, https=https, log=log)
        try:
            server.wait_ready(token)
            server.ready_s = time.perf_counter() - started
            yield server
        finally:
            server.stop()


# --- the boxes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """What the boxes do; times in seconds."""

    stores: int
    seconds: float
    warmup_s: float
    poll_s: float
    status_s: float
    alerts_per_store_hour: float
    burst_stores: int
    burst_every_s: float
    connections_per_box: int

    @property
    def boxes(self) -> int:
        return self.stores * BOXES_PER_STORE

    @property
    def end_s(self) -> float:
        return self.warmup_s + self.seconds

    def burst_times(self) -> list[float]:
        """Inside the measured window, the first half an interval after its start."""
        if self.burst_stores <= 0 or self.burst_every_s <= 0:
            return []
        times, at = [], self.warmup_s + self.burst_every_s / 2
        while at + 1.0 <= self.end_s:
            times.append(at)
            at += self.burst_every_s
        return times


@dataclass
class Sample:
    kind: str
    started_s: float
    latency_s: float
    outcome: str  # "ok", "HTTP 503", "ReadTimeout", ...


@dataclass
class Simulation:
    """The shared state of one run: the clock origin, the samples, the tasks in flight."""

    plan: LoadPlan
    fleet: Fleet
    t0: float = field(default_factory=time.perf_counter)
    samples: list[Sample] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def measured(self, started: float) -> bool:
        return self.plan.warmup_s <= started < self.plan.end_s

    async def sleep_until(self, at: float) -> None:
        delay = at - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def request(self, kind: str, send: Callable[[], Any]) -> None:
        started = self.now()
        expected = EXPECTED["alert" if kind.startswith("alert") else kind]
        try:
            reply: Reply = await send()
            outcome = "ok" if reply.status == expected else f"HTTP {reply.status}"
        except HttpError as exc:
            outcome = exc.kind
        if self.measured(started):
            self.samples.append(Sample(kind, started, self.now() - started, outcome))


class AlertBody:
    """The alert JSON with the snapshot encoded once; each alert gets its own id and time.

    The body is assembled from bytes rather than `json.dumps` of a 260 kB
    string per alert, so the client's CPU goes to the connection, not to JSON.
    """

    def __init__(self, fleet: Fleet) -> None:
        head = {"camera": "entrance", "score": fleet.snapshot.score,
                "threshold": fleet.snapshot.threshold, "entry_id": fleet.entry_id,
                "index_version": fleet.index_version}
        self._head = json.dumps(head)[:-1].encode()
        self._tail = b', "snapshot_png_b64": "' + fleet.snapshot.png_b64.encode() + b'"}'

    def __call__(self) -> bytes:
        detected = (datetime.now(UTC) - timedelta(seconds=0.5)).isoformat()
        return (self._head + b', "alert_id": "' + uuid.uuid4().hex.encode()
                + b'", "detected_at": "' + detected.encode() + b'"' + self._tail)


def box_client(server: Server, token: str, store: int, connections: int,
               timeout_s: float = REQUEST_TIMEOUT_S) -> BoxClient:
    """A box's lean keep-alive client (benchmarks/box_http.py), from its store's address."""
    tls = server.tls()
    return BoxClient(host="127.0.0.1", port=server.port,
                     tls=tls if isinstance(tls, ssl.SSLContext) else None, token=token,
                     local_address=store_address(store), connections=connections,
                     timeout_s=timeout_s)


async def every(sim: Simulation, period_s: float, action: Callable[[], Any],
                rng: random.Random) -> None:
    """`action` on a fixed cadence with a random phase, until the window ends.

    A late answer does not shift the cadence (the next slot is kept, a missed
    one skipped), as a box's timer does.
    """
    at = rng.uniform(0.0, period_s)
    while at < sim.plan.end_s:
        await sim.sleep_until(at)
        await action()
        at += period_s
        while at < sim.now():
            at += period_s


async def alerts(sim: Simulation, clients: Sequence[BoxClient], body: AlertBody,
                 rng: random.Random) -> None:
    """Poisson arrivals over all stores, plus the bursts; each alert from one of its boxes."""
    plan = sim.plan

    def post(client: BoxClient, kind: str) -> Any:
        return sim.request(kind, lambda: client.post("/api/v1/edge/alerts", body()))

    async def burst(at: float) -> None:
        await sim.sleep_until(at)
        for store in rng.sample(range(plan.stores), min(plan.burst_stores, plan.stores)):
            client = clients[store * BOXES_PER_STORE + rng.randrange(BOXES_PER_STORE)]
            sim.spawn(_later(sim, at + rng.uniform(0.0, 1.0), post(client, "alert in burst")))

    for at in plan.burst_times():
        sim.spawn(burst(at))
    rate = plan.stores * plan.alerts_per_store_hour / 3600.0
    if rate <= 0:
        return
    at = rng.expovariate(rate)
    while at < plan.end_s:
        await sim.sleep_until(at)
        sim.spawn(post(clients[rng.randrange(len(clients))], "alert"))
        at += rng.expovariate(rate)


async def _later(sim: Simulation, at: float, coroutine: Any) -> None:
    await sim.sleep_until(at)
    await coroutine


async def lag_monitor(sim: Simulation) -> None:
    """How late the event loop wakes up: the client's share of every latency."""
    while sim.now() < sim.plan.end_s:
        before = time.perf_counter()
        await asyncio.sleep(LAG_TICK_S)
        if sim.measured(sim.now()):
            sim.lag_s.append(time.perf_counter() - before - LAG_TICK_S)


async def simulate(plan: LoadPlan, fleet: Fleet, server: Server, seed: int) -> Simulation:
    rng = random.Random(seed)
    clients = [box_client(server, token, i // BOXES_PER_STORE, plan.connections_per_box)
               for i, token in enumerate(fleet.tokens[: plan.boxes])]
    sim = Simulation(plan, fleet)
    status = json.dumps({"index_version": fleet.index_version, "index_state": "current",
                         "outbox_pending": 0, "cameras_live": 4, "cameras_total": 4}).encode()

    def poll(client: BoxClient) -> Callable[[], Any]:
        return lambda: sim.request("poll", lambda: client.get("/api/v1/edge/index/version"))

    def report(client: BoxClient) -> Callable[[], Any]:
        return lambda: sim.request("status", lambda: client.post("/api/v1/edge/status", status))

    try:
        for client in clients:
            sim.spawn(every(sim, plan.poll_s, poll(client), rng))
            sim.spawn(every(sim, plan.status_s, report(client), rng))
        sim.spawn(alerts(sim, clients, AlertBody(fleet), rng))
        sim.spawn(lag_monitor(sim))
        await sim.sleep_until(plan.end_s)
        pending = set(sim.tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT_S)
            for task in late:
                task.cancel()
            for _ in late:
                sim.samples.append(Sample("unfinished", plan.end_s, DRAIN_TIMEOUT_S, "unfinished"))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    return sim


# --- one run, its figures -------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


def kind_figures(samples: Sequence[Sample], kind: str) -> dict[str, Any]:
    mine = [s for s in samples if s.kind == kind]
    latencies = [s.latency_s for s in mine]
    errors = Counter(s.outcome for s in mine if s.outcome != "ok")
    return {"kind": kind, "requests": len(mine),
            "p50_ms": _ms(percentile(latencies, 50)), "p95_ms": _ms(percentile(latencies, 95)),
            "p99_ms": _ms(percentile(latencies, 99)),
            "max_ms": _ms(max(latencies) if latencies else None), "errors": dict(errors)}


def run_once(plan: LoadPlan, fleet: Fleet, *, workers: int, https: bool, tmp: Path,
             seed: int) -> dict[str, Any]:
    """One server with `workers`, the whole fleet against it, the figures of the window."""
    with running_server(fleet, workers=workers, https=https,
                        log_path=tmp / f"serve-{workers}.log",
                        token=fleet.tokens[0]) as server:
        load_start = os.getloadavg()[0]

        async def measured() -> tuple[Simulation, dict[str, float]]:
            window: dict[str, float] = {}

            async def resources() -> None:
                await asyncio.sleep(plan.warmup_s)
                pids = process_tree(server.process.pid) + fleet.database_pids()
                usage = resource.getrusage(resource.RUSAGE_SELF)
                window.update(server_cpu=cpu_seconds(pids), wall=time.perf_counter(),
                              client_cpu=usage.ru_utime + usage.ru_stime, rss_peak=0.0)
                while time.perf_counter() - window["wall"] < plan.seconds:
                    window["rss_peak"] = max(window["rss_peak"], rss_bytes(pids))
                    await asyncio.sleep(1.0)
                pids = process_tree(server.process.pid) + fleet.database_pids()
                usage = resource.getrusage(resource.RUSAGE_SELF)
                wall = time.perf_counter() - window["wall"]
                window.update(
                    server_cpu_pct=100 * (cpu_seconds(pids) - window["server_cpu"]) / wall,
                    client_cpu_pct=100 * (usage.ru_utime + usage.ru_stime
                                          - window["client_cpu"]) / wall,
                    rss_peak=max(window["rss_peak"], rss_bytes(pids)), processes=len(pids))

            monitor = asyncio.ensure_future(resources())
            sim = await simulate(plan, fleet, server, seed)
            await monitor
            return sim, window

        sim, window = asyncio.run(measured())
    samples = sim.samples
    ok_alerts = [s for s in samples if s.kind.startswith("alert")]
    kinds = [kind_figures(samples, k) for k in KINDS]
    alert_all = kind_figures([Sample("alert", s.started_s, s.latency_s, s.outcome)
                              for s in ok_alerts], "alert")
    errors = Counter(f"{s.kind}: {s.outcome}" for s in samples if s.outcome != "ok")
    return {
        "workers": workers, "boxes": plan.boxes, "seconds": plan.seconds,
        "requests": len(samples), "requests_per_s": round(len(samples) / plan.seconds, 1),
        "kinds": kinds, "alerts_all": alert_all, "errors": dict(errors),
        "server_cpu_pct": round(window["server_cpu_pct"], 1),
        "server_rss_mb": round(window["rss_peak"] / 2**20, 1),
        "server_processes": int(window["processes"]),
        "client_cpu_pct": round(window["client_cpu_pct"], 1),
        "client_lag_p99_ms": _ms(percentile(sim.lag_s, 99)),
        "client_lag_max_ms": _ms(max(sim.lag_s) if sim.lag_s else None),
        "server_ready_s": round(server.ready_s, 1), "loadavg_start": round(load_start, 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
    }


# --- the section ------------------------------------------------------------------------------


def summary_table(runs: Sequence[dict[str, Any]]) -> str:
    def pair(figures: dict[str, Any]) -> str:
        return " / ".join("-" if v is None else f"{v:g}"
                          for v in (figures["p50_ms"], figures["p99_ms"]))

    rows = [(r["workers"], r["boxes"], r["requests_per_s"], pair(r["kinds"][0]),
             pair(r["alerts_all"]), sum(r["errors"].values()), r["server_cpu_pct"],
             r["server_rss_mb"], r["client_cpu_pct"], r["client_lag_p99_ms"])
            for r in runs]
    return markdown_table(
        ("workers", "boxes", "requests/s", "poll p50/p99 ms", "alert p50/p99 ms", "errors",
         "server CPU %", "server RSS MB", "client CPU %", "client loop lag p99 ms"), rows)


def kinds_table(runs: Sequence[dict[str, Any]]) -> str:
    rows = [(r["workers"], k["kind"], k["requests"], k["p50_ms"], k["p95_ms"], k["p99_ms"],
             k["max_ms"], ", ".join(f"{n} x {e}" for e, n in k["errors"].items()) or "0")
            for r in runs for k in r["kinds"]]
    return markdown_table(("workers", "request", "count", "p50 ms", "p95 ms", "p99 ms",
                           "max ms", "errors"), rows)


def verdict(run: dict[str, Any]) -> str:
    worst = max(run["kinds"][0]["p99_ms"] or 0.0, run["alerts_all"]["p99_ms"] or 0.0)
    errors = sum(run["errors"].values())
    met = worst < TARGET_P99_MS and errors == 0
    return (f"- {run['workers']} worker(s): {'MET' if met else 'NOT MET'} "
            f"(worst p99 {worst:g} ms, target < {TARGET_P99_MS:g}; {errors} errors, target 0)")


def plan_from(args: argparse.Namespace) -> LoadPlan:
    return LoadPlan(stores=args.stores, seconds=args.seconds, warmup_s=args.warmup_s,
                    poll_s=args.poll_s, status_s=args.status_s,
                    alerts_per_store_hour=args.alerts_per_store_hour,
                    burst_stores=args.burst_stores, burst_every_s=args.burst_every_s,
                    connections_per_box=args.connections_per_box)


def section_load(args: argparse.Namespace) -> None:
    """2 boxes per store against one real `mamoru serve` per worker count."""
    os.environ.setdefault("MAMORU_CACHE_DIR", str(REPO / ".cache"))
    plan = plan_from(args)
    workers_ok = serve_supports_workers()
    with tempfile.TemporaryDirectory(prefix="mamoru-chain-load-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"load: set-up, {plan.stores} stores x {BOXES_PER_STORE} boxes on "  # noqa: T201
              f"{args.backend}", file=sys.stderr)
        with registry_backend(args.backend, tmp) as backend:
            fleet = make_fleet(backend, plan.stores, tuple(args.snapshot_size))
            runs, skipped = [], []
            for workers in args.workers:
                if workers > 1 and not workers_ok:
                    skipped.append(workers)
                    continue
                print(f"load: {workers} worker(s), {plan.warmup_s:g} s warm-up + "  # noqa: T201
                      f"{plan.seconds:g} s", file=sys.stderr)
                runs.append(run_once(plan, fleet, workers=workers,
                                     https=not args.insecure_http, tmp=tmp, seed=args.seed))
    snap = fleet.snapshot
    lines = [
        f"Load: {plan.stores} stores x {BOXES_PER_STORE} boxes, one asyncio client process, "
        f"{args.backend}, {'HTTP (loopback)' if args.insecure_http else 'HTTPS'}, "
        f"{plan.seconds:g} s measured after {plan.warmup_s:g} s warm-up; poll every "
        f"{plan.poll_s:g} s, status every {plan.status_s:g} s, "
        f"{plan.alerts_per_store_hour:g} alerts per store and hour plus {plan.burst_stores} "
        f"stores at once every {plan.burst_every_s:g} s; snapshot PNG {snap.size[0]}x"
        f"{snap.size[1]}, {snap.png_bytes // 1024} kB (score {snap.score:.3f} >= threshold "
        f"{snap.threshold:.3f}); {os.cpu_count()} cores shared by client and server "
        f"(load average {', '.join(str(r['loadavg_start']) for r in runs)} at the starts)\n",
        summary_table(runs) + "\n",
        kinds_table(runs) + "\n",
        "Latency is the client's, send to last byte: it includes the client's own loop lag.",
        "Server CPU % and client CPU % are of one core; RSS is the peak of the server's tree"
        + (" and PostgreSQL's processes (their shared buffers counted in each)."
           if args.backend == "postgres" else "."),
        "Set-up: " + "; ".join(f"{k} {v:.1f} s" for k, v in fleet.setup_s.items()),
    ]
    if skipped:
        lines.append(f"Not measured: {', '.join(map(str, skipped))} workers (this `mamoru serve` "
                     "has no --workers option yet).")
    lines += ["Target (p99 < 200 ms, 0 errors):", *map(verdict, runs)]
    print("\n".join(lines))  # noqa: T201
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps({
        "command": "python -m benchmarks.chain " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan), "backend": args.backend, "https": not args.insecure_http,
        "snapshot": {"size": snap.size, "png_bytes": snap.png_bytes, "score": snap.score},
        "setup_s": fleet.setup_s, "runs": runs, "skipped_workers": skipped,
    }, indent=2) + "\n", encoding="utf-8")


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "load", "full scale: --stores 1000 --seconds 60 (2,000 boxes; defaults are a quick run)")
    group.add_argument("--backend", choices=BACKENDS, default="sqlcipher")
    group.add_argument("--stores", type=int, default=250, help="stores, 2 boxes each")
    group.add_argument("--seconds", type=float, default=30.0, help="measured window")
    group.add_argument("--warmup-s", type=float, default=10.0,
                       help="first connections and the poll phases spread; not measured")
    group.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 2],
                       help="API worker counts, one run each (1 = the naive baseline)")
    group.add_argument("--poll-s", type=float, default=10.0)
    group.add_argument("--status-s", type=float, default=30.0,
                       help="edge status_report_s (edge/config.py)")
    group.add_argument("--alerts-per-store-hour", type=float, default=6.0,
                       help="a store sees a few a day; 6/h is a stress rate")
    group.add_argument("--burst-stores", type=int, default=50)
    group.add_argument("--burst-every-s", type=float, default=30.0)
    group.add_argument("--connections-per-box", type=int, default=2,
                       help="keep-alive connections each box may hold")
    group.add_argument("--snapshot-size", type=int, nargs=2, default=[640, 360],
                       metavar=("W", "H"), help="the alert's frame (640x360 is ~190 kB PNG)")
    group.add_argument("--insecure-http", action="store_true",
                       help="plain HTTP on loopback instead of HTTPS")


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.stores < 1 or args.seconds <= 0 or args.poll_s <= 0 or args.status_s <= 0:
        parser.error("--stores, --seconds, --poll-s and --status-s must be positive")
    if min(args.workers) < 1 or args.connections_per_box < 1:
        parser.error("--workers and --connections-per-box must be at least 1")
    if args.stores > 250 * 250:
        parser.error("at most 62,500 stores (one loopback address each)")

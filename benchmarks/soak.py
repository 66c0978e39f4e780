"""Soak: the planned number of cameras for an hour over real RTSP, with faults injected.

Issue 16, part 4. What runs:

* a real registry (Obama approved by a manager, see benchmarks/pipeline.py) and
  a real `mamoru serve` on loopback; the box is a registered device and its
  alerts go there over HTTP;
* `--cameras` cameras, each its own RTSP server process (mamoru/demo/cameras.py)
  serving the composed walk-past scene at the chosen profile (default: the
  720p sub-stream at 5 fps, detector at 640x384), so one camera can drop or
  freeze without the others;
* the real `EdgeLoop.run` with the configured settings, except a 20 s alert
  cool-down so each camera alerts every few appearances (alerts to count);
* every `--fault-every-s`, the next fault in turn: a camera dropped (its
  server stopped for `--fault-s`, then back on the same URL), a camera frozen
  (SIGSTOP for `--fault-s`), the registry down (killed for 3 x `--fault-s`).

What is checked and printed:

* per fault: recovery time (camera faults: from the camera's return until it
  analyses at >= 95 % of its rate over a 5 s window; registry down: from its
  return until the outbox is empty), and every camera's analysed rate from the
  recovery to the next fault (>= 95 % of the analysis rate: "within 5 %");
* resident memory (VmRSS) every `--sample-s`, its growth from the end of the
  warm-up (`--warmup-minutes`, default 10) to the end (< 5 %);
* no alert lost: every alert the loop raised is in the registry at the end;
* retention: after the run no alert copy, snapshot or rejected file is left on
  the box (all were delivered), nothing under the box's folder but empty
  folders.

Run: ``python -m benchmarks.soak [--minutes 60] [--cameras 8]``; a shortened
run (e.g. ``--minutes 12 --warmup-minutes 3``) is labelled as such in its
output. Writes ``benchmarks/out/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.pipeline import (
    REPO,
    BenchProfile,
    Clip,
    bench_settings,
    build_registry,
    compose_scene,
    markdown_table,
    profile_clip,
    progress,
    say,
)
from edge.alerts import Alert
from edge.config import CameraConfig, EdgeSettings
from edge.loop import EdgeLoop
from edge.outbox import Delivery
from mamoru.demo.cameras import RtspServer, free_port
from mamoru.face_data import data_root
from mamoru.wiring import open_edge_parts, open_engine, open_registry_from
from registry.accounts.devices import add_device
from registry.alerts.queue import list_alerts

OUT_FILE = REPO / "benchmarks" / "out" / "soak.json"
PROFILE = BenchProfile("sub 720p/5", (1280, 720), 5, (640, 384))
COOLDOWN_S = 20.0
KEEP = 0.95


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


@dataclass
class Fault:
    kind: str  # "camera dropped", "camera frozen", "registry down"
    target: str
    started: float
    ended: float = 0.0
    recovered: float | None = None
    rates_before: dict[str, float] = field(default_factory=dict)
    rates_after: dict[str, float] = field(default_factory=dict)

    def within(self) -> bool:
        """Every camera analyses at >= 95 % of its own rate before the fault, after it."""
        return bool(self.rates_after) and all(
            self.rates_after[k] >= KEEP * self.rates_before.get(k, 0.0) for k in self.rates_after)

    def row(self, t0: float) -> dict[str, Any]:
        recovery = None if self.recovered is None else round(self.recovered - self.ended, 1)
        target = self.target if self.target in self.rates_after else None
        return {"fault": self.kind, "target": self.target,
                "at_s": round(self.started - t0, 1),
                "lasted_s": round(self.ended - self.started, 1), "recovery_s": recovery,
                "rates_before": self.rates_before, "rates_after": self.rates_after,
                "target_before": self.rates_before.get(target) if target else None,
                "target_after": self.rates_after.get(target) if target else None,
                "min_rate_before": min(self.rates_before.values()) if self.rates_before else None,
                "min_rate_after": min(self.rates_after.values()) if self.rates_after else None,
                "within_5pct": self.within()}


class Soak:
    """The running pieces and what is sampled from them."""

    def __init__(self, loop: EdgeLoop, servers: dict[str, RtspServer], registry_cmd: list[str],
                 env: dict[str, str], analysis_fps: float) -> None:
        self.loop, self.servers = loop, servers
        self._registry_cmd, self._env = registry_cmd, env
        self.api: subprocess.Popen[bytes] | None = None
        self.fps = analysis_fps
        self.samples: list[dict[str, Any]] = []
        self.raised: list[Alert] = []

    def start_registry(self) -> None:
        self.api = subprocess.Popen(self._registry_cmd, cwd=REPO, env=self._env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_registry(self) -> None:
        if self.api is not None:
            self.api.terminate()
            self.api.wait(timeout=20)
            self.api = None

    def analysed(self) -> dict[str, int]:
        return {lane.reader.name: lane.analysed for lane in self.loop.lanes}

    def rate(self, camera: str, window_s: float = 5.0) -> float:
        """Analysed frames/s of `camera` over the last `window_s` (blocks for the window)."""
        before = self.analysed()[camera]
        time.sleep(window_s)
        return (self.analysed()[camera] - before) / window_s


def wait_recovered(soak: Soak, fault: Fault, limit_s: float) -> None:
    """Until the camera analyses at its rate again, or the outbox is empty again."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if fault.kind == "registry down":
            if not soak.loop._outbox.pending():  # noqa: SLF001 - the box's own outbox
                fault.recovered = time.monotonic()
                return
            time.sleep(0.5)
        else:
            if soak.rate(fault.target, 2.0) >= KEEP * soak.fps:
                fault.recovered = time.monotonic() - 2.0  # the window that showed it
                return


IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def plain_images(root: Path) -> list[str]:
    """Files that are an image in the clear (the retention rules allow none: every face copy
    is sealed, G-SEC-2); tests/forensics.py also unseals every file, which needs the keys."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as file:
                head = file.read(8)
            if head.startswith(IMAGE_MAGIC):
                found.append(str(path.relative_to(root)))
    return found


def rates_between(soak: Soak, start_counts: dict[str, int], started: float) -> dict[str, float]:
    elapsed = time.monotonic() - started
    now = soak.analysed()
    return {k: round((now[k] - start_counts[k]) / elapsed, 2) for k in now}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--warmup-minutes", type=float, default=10.0)
    parser.add_argument("--fault-every-s", type=float, default=180.0)
    parser.add_argument("--fault-s", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=60.0,
                        help="RSS and camera rates sampled this often (default: every minute)")
    args = parser.parse_args(argv)
    shortened = args.minutes < 60.0
    os.environ.setdefault("MAMORU_CACHE_DIR", str(REPO / ".cache"))
    report: dict[str, Any] = {"command": "python -m benchmarks.soak " + " ".join(sys.argv[1:]),
                              "shortened": shortened, "started_at": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="mamoru-soak-") as tmp_name:
        tmp = Path(tmp_name)
        settings = bench_settings(tmp)
        face_data = data_root(settings.cache_dir)
        progress("setup: registry, device, clip")
        engine = open_engine(settings)
        build_registry(settings, engine, face_data)
        with open_registry_from(settings) as ctx:
            admin = ctx.repo.user_by_name("admin")
            assert admin is not None
            token = add_device(ctx, admin=admin, name="soak-box", now=datetime.now(UTC))
        main_clip = compose_scene(tmp / "clips", (1920, 1080), 2, engine, face_data)
        clip: Clip = profile_clip(main_clip, PROFILE.size, PROFILE.fps)
        port = free_port()
        env = {**os.environ, "MAMORU_DATA_DIR": str(settings.data_dir),
               "MAMORU_CACHE_DIR": str(settings.cache_dir), "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": str(REPO),
               "MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK": "true"}  # throw-away registry
        registry_cmd = [sys.executable, "-m", "mamoru", "serve", "--insecure-http",
                        "--port", str(port)]
        servers = {f"cam{k + 1}": RtspServer({"s": clip.path}) for k in range(args.cameras)}
        for server in servers.values():
            server.start()
        parts = open_edge_parts(settings)
        parts.outbox._delivery = Delivery(f"http://127.0.0.1:{port}", token)  # noqa: SLF001
        edge = EdgeSettings.model_validate({**settings.edge.model_dump(),
                                            "alert_cooldown_s": COOLDOWN_S,
                                            "outbox_max_backoff_s": 2.0,
                                            "open_timeout_s": 3.0, "read_timeout_s": 2.0,
                                            "reconnect_max_s": 2.0})
        cameras = [CameraConfig(name=name, url=server.url("s"), expected_width=PROFILE.size[0],
                                expected_height=PROFILE.size[1], expected_fps=PROFILE.fps,
                                detector_input=PROFILE.detector_input)
                   for name, server in servers.items()]
        soak_ref: list[Soak] = []
        loop = EdgeLoop(edge, cameras, engine=parts.engine, matcher=parts.matcher,
                        outbox=parts.outbox, matching_policy=settings.quality.matching,
                        metrics=parts.metrics,
                        listeners=[lambda a: soak_ref[0].raised.append(a), parts.archive])
        soak = Soak(loop, servers, registry_cmd, env, edge.analysis_fps)
        soak_ref.append(soak)
        soak.start_registry()
        stop = threading.Event()
        runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        t0 = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        runner.start()
        end = t0 + args.minutes * 60.0
        faults: list[Fault] = []
        sampler_stop = threading.Event()

        def sample() -> None:
            last = soak.analysed()
            last_t = time.monotonic()
            while not sampler_stop.wait(args.sample_s):
                now_counts, now_t = soak.analysed(), time.monotonic()
                rates = [(now_counts[k] - last[k]) / (now_t - last_t) for k in now_counts]
                soak.samples.append({"t_s": round(now_t - t0, 1), "rss_mb": round(rss_mb(), 1),
                                     "min_fps": round(min(rates), 2),
                                     "mean_fps": round(sum(rates) / len(rates), 2),
                                     "pending": len(parts.outbox.pending()),
                                     "loadavg": round(os.getloadavg()[0], 2)})
                last, last_t = now_counts, now_t

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        kinds = ["camera dropped", "camera frozen", "registry down"]
        names = list(servers)
        k = 0
        time.sleep(min(10.0, max(0.0, end - time.monotonic())))  # connect, first burst
        counts, since = soak.analysed(), time.monotonic()  # the rate before the first fault
        time.sleep(min(args.fault_every_s - 10.0, max(0.0, end - time.monotonic())))
        while time.monotonic() + args.fault_every_s / 2 < end:
            kind = kinds[k % len(kinds)]
            target = names[k % len(names)] if kind != "registry down" else "registry"
            progress(f"{time.monotonic() - t0:6.0f} s: {kind} ({target})")
            before = rates_between(soak, counts, since)
            fault = Fault(kind, target, time.monotonic(), rates_before=before)
            if kind == "camera dropped":
                servers[target].stop()
                time.sleep(args.fault_s)
                servers[target].start()
            elif kind == "camera frozen":
                servers[target].freeze()
                time.sleep(args.fault_s)
                servers[target].thaw()
            else:
                soak.stop_registry()
                time.sleep(3 * args.fault_s)
                soak.start_registry()
            fault.ended = time.monotonic()
            wait_recovered(soak, fault, limit_s=60.0)
            counts, since = soak.analysed(), time.monotonic()
            next_fault = fault.started + args.fault_every_s
            time.sleep(max(5.0, min(next_fault, end) - time.monotonic()))
            fault.rates_after = rates_between(soak, counts, since)
            faults.append(fault)
            k += 1
        time.sleep(max(0.0, end - time.monotonic()))
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        # let the outbox empty with the registry up, then stop
        deadline = time.monotonic() + 30
        while parts.outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.5)
        sampler_stop.set()
        stop.set()
        runner.join(timeout=30)
        soak.stop_registry()
        for server in servers.values():
            server.stop()
        with open_registry_from(settings) as ctx:
            received = {a.alert_id for a in list_alerts(ctx)}
        raised = {a.alert_id for a in soak.raised}
        edge_dir = settings.data_dir / "edge"
        left = sorted(str(p.relative_to(edge_dir)) for p in edge_dir.rglob("*") if p.is_file())
        plain = plain_images(settings.data_dir)
        warm = [s for s in soak.samples if s["t_s"] >= args.warmup_minutes * 60.0]
        growth = (100.0 * (warm[-1]["rss_mb"] - warm[0]["rss_mb"]) / warm[0]["rss_mb"]
                  if len(warm) >= 2 else None)
        cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        analysed = sum(soak.analysed().values())
        report.update({
            "cameras": args.cameras, "profile": PROFILE.name, "minutes": args.minutes,
            "wall_s": round(wall, 1),
            "cpu_pct_machine": round(100 * cpu_s / wall / (os.cpu_count() or 1), 1),
            "cpu_ms_per_analysed_frame": round(1000 * cpu_s / max(1, analysed), 1),
            "analysed_fps_per_camera": round(analysed / wall / args.cameras, 2),
            "faults": [f.row(t0) for f in faults], "samples": soak.samples,
            "rss_growth_after_warmup_pct": None if growth is None else round(growth, 2),
            "alerts_raised": len(raised), "alerts_in_registry": len(raised & received),
            "alerts_lost": sorted(raised - received), "files_left_on_box": left,
            "plain_images_on_disk": plain,
        })
    label = " (SHORTENED)" if shortened else ""
    say(f"Soak{label}: {args.cameras} cameras x {PROFILE.name} (detector "
        f"{PROFILE.detector_input}), {args.minutes:g} min, a fault every {args.fault_every_s:g} s; "
        f"CPU {report['cpu_pct_machine']} % of the machine, {report['cpu_ms_per_analysed_frame']} "
        f"CPU ms per analysed frame, {report['analysed_fps_per_camera']} analysed fps per camera "
        f"on average; load average at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    say(markdown_table(["fault", "target", "at s", "lasted s", "recovery s",
                        "target fps before / after", "min camera fps before / after",
                        "every camera within 5 % of its rate before"],
                       [[f["fault"], f["target"], f["at_s"], f["lasted_s"], f["recovery_s"],
                         f"{f['target_before']} / {f['target_after']}",
                         f"{f['min_rate_before']} / {f['min_rate_after']}",
                         "yes" if f["within_5pct"] else "NO"]
                        for f in report["faults"]]) + "\n")
    say(markdown_table(["t s", "RSS MB", "min camera fps", "mean camera fps", "outbox pending",
                        "loadavg"],
                       [[s["t_s"], s["rss_mb"], s["min_fps"], s["mean_fps"], s["pending"],
                         s["loadavg"]] for s in report["samples"]]) + "\n")
    say(f"memory growth after the {args.warmup_minutes:g} min warm-up: "
        f"{report['rss_growth_after_warmup_pct']} % (target < 5 %)")
    say(f"alerts raised {report['alerts_raised']}, in the registry {report['alerts_in_registry']}, "
        f"lost {len(report['alerts_lost'])}")
    say(f"files left on the box: {report['files_left_on_box'] or 'none'}; unencrypted images "
        f"anywhere in the data directory (box and registry): "
        f"{report['plain_images_on_disk'] or 'none'}")
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

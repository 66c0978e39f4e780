"""The edge loop: cameras in, alerts out, everyone else forgotten.

Readers decode each camera in its own thread; this loop takes the newest
frame of every camera that is due (its own analysis rate), and runs
detect -> track -> choose which faces to embed -> embed them in one batch ->
search the watchlist -> resolve each probe. Every search goes through
`WatchlistMatcher.resolve`: a probe that does not match is wiped at once, and
so are the aligned crops; a match raises an alert once per cool-down window.
When a new index version drops entries, every local copy about them goes
(outbox, snapshots, cool-downs) within the same poll. Following the index
(poll, fetch, apply a delta, re-seal the cache: 1.8 s at 100,000 templates)
has its own thread, `mamoru.index`: analysis never waits for the network or
the disk, and the matcher swaps the new index in between two searches. One
analysis thread serves all cameras: on a 2-core box the ONNX sessions already
use both cores, and more threads would only contend. An alert snapshot from
a camera's main stream is grabbed on the `mamoru.snapshot` thread
(edge/main_stream.py): the analysis never waits for a camera to answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.alerts import Alert, AlertPolicy, build_alert
from edge.capture import CameraReader, CameraState, Frame
from edge.config import CameraConfig, EdgeSettings
from edge.main_stream import MainStream, Snapshot, SnapshotTaker
from edge.matcher import WatchlistMatcher
from edge.metrics import EdgeMetrics
from edge.outbox import Outbox
from edge.probe import FaceProbe
from edge.status import StatusReporter
from edge.streams import StreamProblem, StreamReport, problems
from edge.tracker import IouTracker, Observation, wants_embedding
from models.engine import FaceEngine
from models.quality import QualityPolicy, assess

Image = npt.NDArray[np.uint8]

log = logging.getLogger("mamoru.edge.loop")

AlertListener = Callable[[Alert], None]
_FINISHED = (CameraState.ENDED, CameraState.FAILED, CameraState.STOPPED)


@dataclass
class CameraLane:
    """Per-camera analysis state: reader, tracker, pacing, counters."""

    reader: CameraReader
    tracker: IouTracker
    config: CameraConfig | None = None
    detector_input: tuple[int, int] | None = None
    main_stream: MainStream | None = None  # the alert snapshot's source, if configured
    analysed: int = 0
    window_started: float = field(default_factory=time.monotonic)
    window_count: int = 0
    stats_exported_at: float = float("-inf")
    frames_at_export: int = 0


class EdgeLoop:
    """Runs every camera until stopped (or, with `exit_at_end`, until every file ended)."""

    def __init__(self, settings: EdgeSettings, cameras: Sequence[CameraConfig], *,
                 engine: FaceEngine, matcher: WatchlistMatcher, outbox: Outbox,
                 matching_policy: QualityPolicy, metrics: EdgeMetrics | None = None,
                 listeners: Sequence[AlertListener] = ()) -> None:
        if not cameras:
            raise ValueError("no camera configured: add [[edge.cameras]] or pass --source NAME=URL")
        self._settings = settings
        self._engine = engine
        self._matcher = matcher
        self._outbox = outbox
        self._policy = matching_policy
        self._metrics = metrics or EdgeMetrics()
        self._listeners = list(listeners)
        self._alerts = AlertPolicy(settings.alert_cooldown_s)
        self._style: Literal["solid", "pixelate"] = settings.mask_style
        self._warned: set[tuple[str, StreamProblem]] = set()
        self.lanes = [
            CameraLane(
                reader=CameraReader(camera, settings, on_event=self._camera_event,
                                    on_stream=self._stream_measured),
                tracker=IouTracker(max_age_s=settings.track_max_age_s),
                config=camera,
                detector_input=settings.camera_detector_input(camera),
                main_stream=None if camera.snapshot_url is None else MainStream(
                    camera.snapshot_url, open_timeout_s=settings.snapshot_timeout_s,
                    read_timeout_s=settings.snapshot_timeout_s),
            )
            for camera in cameras if camera.enabled
        ]
        self._snapshots = SnapshotTaker(engine, matcher, self._finish_alert)
        self._configs = {camera.name: camera for camera in cameras}

    @property
    def metrics(self) -> EdgeMetrics:
        return self._metrics

    @property
    def pending_snapshots(self) -> int:
        """Alerts waiting on the snapshot thread for their main-stream grab."""
        return self._snapshots.pending()

    def states(self) -> dict[str, CameraState]:
        return {lane.reader.name: lane.reader.state for lane in self.lanes}

    def _camera_event(self, camera: str, state: str) -> None:
        self._metrics.set_state(camera, CameraState(state))
        log.info("camera state", extra={"camera": camera, "state": state})

    def _stream_measured(self, report: StreamReport) -> None:
        """Export what the stream delivers; warn once per camera and problem (issue 16)."""
        camera = report.camera
        m = self._metrics
        m.stream_fps.labels(camera).set(report.measured_fps)
        m.stream_declared_fps.labels(camera).set(report.declared_fps)
        m.stream_size.labels(camera, "width").set(report.width)
        m.stream_size.labels(camera, "height").set(report.height)
        config = self._configs[camera]
        found = problems(report, config, self._settings.camera_fps(config))
        for problem in StreamProblem:
            m.profile_problem.labels(camera, problem.value).set(1 if problem in found else 0)
        log.info("camera stream measured", extra={
            "camera": camera, "declared_fps": report.declared_fps,
            "measured_fps": report.measured_fps, "width": report.width, "height": report.height})
        for problem, advice in found.items():
            if (camera, problem) not in self._warned:
                self._warned.add((camera, problem))
                log.warning("camera stream does not fit its profile: %s", advice,
                            extra={"camera": camera, "problem": problem.value})

    def run(self, stop: threading.Event, *, exit_at_end: bool = False) -> None:
        """Analyse until `stop` is set; readers and the outbox run beside this thread."""
        self._matcher.load()
        self._metrics.index_version.set(self._matcher.version or 0)
        self._metrics.set_index_state(self._matcher.state)
        self._outbox.sweep()  # copies a previous run left past their lifetime
        reporter = (StatusReporter(self._outbox.delivery, self.status_report,
                                   interval_s=self._settings.status_report_s)
                    if self._outbox.delivery is not None else None)
        delivery = threading.Thread(
            target=self._outbox.run, args=(stop,),
            kwargs={"max_backoff_s": self._settings.outbox_max_backoff_s,
                    "also": reporter.tick if reporter else None},
            name="mamoru.outbox", daemon=True,
        )
        delivery.start()
        follower = threading.Thread(target=self._follow_index_until, args=(stop,),
                                    name="mamoru.index", daemon=True)
        follower.start()
        for lane in self.lanes:
            lane.reader.start()
        count = max(1, min(self._settings.analysis_workers, len(self.lanes)))
        shares = [self.lanes[i::count] for i in range(count)]
        helpers = [
            threading.Thread(target=self._work, args=(share, stop, exit_at_end),
                             name=f"mamoru.analysis:{i}", daemon=True)
            for i, share in enumerate(shares[1:], start=1)
        ]
        for helper in helpers:
            helper.start()
        try:
            self._work(shares[0], stop, exit_at_end)
            for helper in helpers:
                helper.join()
        finally:
            for lane in self.lanes:
                lane.reader.stop()
                self._export_reader_stats(lane)
            stop.set()
            for helper in helpers:
                helper.join(timeout=10)
            # pending snapshots finish from their analysis frame; a grab in flight ends within
            # its open timeout and three reads
            self._snapshots.close(timeout_s=4 * self._settings.snapshot_timeout_s + 5)
            follower.join(timeout=10)
            self._outbox.wake()
            delivery.join(timeout=10)
            self._outbox.flush_once()

    def _work(self, lanes: list[CameraLane], stop: threading.Event, exit_at_end: bool) -> None:
        """One analysis thread for a share of the cameras (one share per worker).

        Python's own work per frame (decoding results, tracking, alignment)
        holds the GIL between ONNX calls; a second worker overlaps it with the
        other's inference, which the single loop left idle (benchmarks/pipeline.py).
        """
        while not stop.is_set():
            worked = self._analyse_due_cameras(lanes)
            if exit_at_end and self._all_finished():
                self._analyse_due_cameras(lanes)
                return
            if not worked:
                stop.wait(0.005)

    def _follow_index_until(self, stop: threading.Event) -> None:
        """The `mamoru.index` thread: follow the index every poll until `stop`.

        Whatever a refresh raises is logged and counted, never fatal: the
        matcher keeps the index it holds (or stays STALE), and the cameras run on.
        """
        while not stop.is_set():
            try:
                self.follow_index()
            except Exception:
                self._metrics.index_refresh_errors.inc()
                log.exception("the index refresh failed; keeping index version %s",
                              self._matcher.version)
            stop.wait(self._matcher.poll_s)

    def follow_index(self) -> None:
        """Swap in a new index version and forget everything about entries that left it."""
        change = self._matcher.refresh()
        if change is None:
            return
        self._metrics.index_version.set(change.version or 0)
        self._metrics.set_index_state(change.state)
        if change.removed:
            wiped = self._outbox.forget_entries(change.removed)
            for entry_id in change.removed:
                self._alerts.forget(entry_id)
            log.info("entries left the watchlist; their local copies wiped",
                     extra={"entries": len(change.removed), "copies": wiped})
            self._export_outbox()

    def _export_outbox(self) -> None:
        self._metrics.export_outbox(self._outbox.counters, len(self._outbox.pending()),
                                    len(self._outbox.rejected()))

    def status_report(self) -> dict[str, int | str | None]:
        """What the registry's tablet shows about this box: counts and states, no person."""
        states = self.states()
        return {"index_version": self._matcher.version, "index_state": self._matcher.state.value,
                "outbox_pending": len(self._outbox.pending()),
                "cameras_live": sum(s is CameraState.LIVE for s in states.values()),
                "cameras_total": len(states)}

    def _all_finished(self) -> bool:
        return all(lane.reader.state in _FINISHED for lane in self.lanes)

    def _analyse_due_cameras(self, lanes: list[CameraLane]) -> bool:
        """Analyse each camera's waiting frame; its reader paces which frames wait (issue 16)."""
        now = time.monotonic()
        worked = False
        for lane in lanes:
            lane.reader.check_stall(now)
            if now - lane.stats_exported_at >= 1.0:  # not every 5 ms spin of the loop
                self._export_decoded_fps(lane, now)
                self._export_reader_stats(lane)
                if lane is lanes[0]:  # one outbox export a second per worker, not per camera
                    self._export_outbox()
            frame = lane.reader.slot.take()
            if frame is None:
                continue
            self.analyse(lane, frame)
            worked = True
        return worked

    def _export_decoded_fps(self, lane: CameraLane, now: float) -> None:
        """Frames decoded per second since the last export: what the camera costs to decode."""
        frames = lane.reader.stats.frames
        elapsed = now - lane.stats_exported_at
        if elapsed < 30.0:  # not the first export, nor one after a long pause
            decoded = max(0, frames - lane.frames_at_export) / elapsed
            self._metrics.decoded_fps.labels(lane.reader.name).set(round(decoded, 2))
        lane.stats_exported_at, lane.frames_at_export = now, frames

    def _export_reader_stats(self, lane: CameraLane) -> None:
        stats, name = lane.reader.stats, lane.reader.name
        self._metrics.frames_read.labels(name).set(stats.frames)
        for reason, count in stats.drops().items():
            self._metrics.frames_dropped.labels(name, reason.value).set(count)
        self._metrics.reconnects.labels(name).set(stats.reconnects)

    def analyse(self, lane: CameraLane, frame: Frame) -> list[Alert]:
        """One frame through detect, track, embed, search; returns the alerts it raised."""
        camera = frame.camera
        started = time.perf_counter()
        faces = self._engine.detect(frame.image, lane.detector_input)
        self._metrics.detect_seconds.observe(time.perf_counter() - started)
        self._count_frame(lane, camera, len(faces))
        observations = lane.tracker.update(faces, frame.monotonic)
        chosen = self._choose_for_embedding(frame, observations)
        if not chosen:
            return []
        started = time.perf_counter()
        crops = [crop for _, crop in chosen]
        embeddings = self._engine.embed(crops)
        for crop in crops:
            crop.fill(0)  # an aligned face is as identifying as its embedding: wiped now
        self._metrics.embed_seconds.observe(time.perf_counter() - started)
        self._metrics.embeds.labels(camera).inc(len(chosen))
        probes = [FaceProbe(frame, obs.face, embeddings[i]) for i, (obs, _) in enumerate(chosen)]
        started = time.perf_counter()
        matches = self._matcher.resolve(probes, self._engine.threshold)
        embeddings.fill(0.0)  # resolve wiped each probe's row; the batch goes entirely
        self._metrics.search_seconds.observe(time.perf_counter() - started)
        alerts = []
        for (obs, _), match in zip(chosen, matches, strict=True):
            if match is None:
                continue
            obs.track.matched_entry = match.entry_id
            if not self._alerts.should_alert(match.entry_id, camera, frame.monotonic):
                continue
            if lane.main_stream is not None and self._snapshots.offer(match, faces,
                                                                      lane.main_stream):
                continue  # the snapshot thread grabs the main stream and raises it
            source = "analysis" if lane.main_stream is None else "analysis-busy"
            alerts.append(self._finish_alert(Snapshot(match, faces, source), ()))
        return alerts

    def _finish_alert(self, shot: Snapshot, wipe: Sequence[Image]) -> Alert:
        """The alert's PNG, then `wipe` zeroed (the frames only this alert held), then emitted.

        Called by an analysis worker, or by the snapshot thread for an alert
        whose snapshot was pending (exactly once each)."""
        try:
            alert = build_alert(shot.match, shot.faces,
                                index_version=self._matcher.version or 0, style=self._style)
        finally:
            for image in wipe:
                image.fill(0)  # the PNG is made: no other copy stays
        self._metrics.snapshots.labels(shot.match.frame.camera, shot.source).inc()
        self._emit(alert)
        return alert

    def _count_frame(self, lane: CameraLane, camera: str, faces: int) -> None:
        lane.analysed += 1
        lane.window_count += 1
        self._metrics.frames_analysed.labels(camera).inc()
        self._metrics.faces.labels(camera).inc(faces)
        elapsed = time.monotonic() - lane.window_started
        if elapsed >= 5.0:
            self._metrics.analysis_fps.labels(camera).set(lane.window_count / elapsed)
            lane.window_started, lane.window_count = time.monotonic(), 0

    def _choose_for_embedding(
        self, frame: Frame, observations: list[Observation]
    ) -> list[tuple[Observation, Image]]:
        """Faces worth an embedding now, at most `max_embeds_per_frame` of them.

        A frame's analysis must end before its camera's next frame arrives, or
        that frame is lost (`late`). Eight cameras seeing a crowd at once (every
        face new, each embedding 25-35 ms on a busy core) stalled the analysis
        workers for up to 400 ms: 20 % of the frames of a 20 s run were lost in
        its first 5 s, and none after (issue 16). So one frame embeds at most
        `max_embeds_per_frame` faces, never-embedded ones first, then the best;
        the rest are still wanted on the next frame, 200 ms later.
        """
        now = frame.monotonic
        wanted = [obs for obs in observations
                  if wants_embedding(obs.track, obs.face.size_px * obs.face.score, now,
                                     interval_s=self._settings.embed_interval_s,
                                     max_embeds=self._settings.max_embeds_per_track)]
        wanted.sort(key=lambda o: (o.track.embeds > 0, -o.face.size_px * o.face.score))
        chosen: list[tuple[Observation, Image]] = []
        for obs in wanted:
            if len(chosen) >= self._settings.max_embeds_per_frame:
                break
            crop = self._engine.align(frame.image, obs.face)
            if not assess(obs.face, crop, self._policy).passed:
                crop.fill(0)
                continue  # below the quality gate: never matched (issue: per-frame work)
            quality = obs.face.size_px * obs.face.score
            obs.track.embeds += 1
            obs.track.last_embedded_at = now
            obs.track.best_quality = max(obs.track.best_quality, quality)
            chosen.append((obs, crop))
        return chosen

    def _emit(self, alert: Alert) -> None:
        if self._outbox.put(alert) is None:
            return  # its entry left the list while this frame was analysed
        self._metrics.alerts.labels(alert.camera).inc()
        self._export_outbox()
        log.info("watchlist alert", extra={"camera": alert.camera, "entry_id": alert.entry_id,
                                           "score": round(alert.score, 3),
                                           "alert_id": alert.alert_id})
        for listener in self._listeners:
            try:
                listener(alert)
            except Exception:  # a listener (e.g. a closed stdout) must not stop the cameras
                log.exception("alert listener failed")

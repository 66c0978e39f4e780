"""Prometheus metrics of the edge loop: per-camera health and the cost of each stage.

Labels are camera names only: never URLs (they can carry passwords), never
entry ids or anything about a person.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from edge.capture import CameraState
from edge.matcher import IndexState
from edge.outbox import OutboxCounters

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class EdgeMetrics:
    """One registry per loop, so tests and several loops in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_analysed = Counter(
            "mamoru_frames_analysed", "frames analysed", ["camera"], registry=r)
        self.frames_read = Gauge("mamoru_frames_read", "frames decoded", ["camera"], registry=r)
        self.frames_dropped = Gauge(
            "mamoru_frames_dropped",
            "frames decoded but never analysed, by reason: rate (the stream sends more than is "
            "analysed), late (the analysis did not come in time), unusable (garbage)",
            ["camera", "reason"], registry=r)
        self.reconnects = Gauge("mamoru_camera_reconnects", "reconnects", ["camera"], registry=r)
        self.camera_up = Gauge(
            "mamoru_camera_state", "1 for the camera's current state", ["camera", "state"],
            registry=r)
        self.stream_fps = Gauge("mamoru_camera_stream_fps",
                                "frames/s the analysis stream delivers (measured at connect)",
                                ["camera"], registry=r)
        self.stream_declared_fps = Gauge("mamoru_camera_stream_declared_fps",
                                         "frames/s the stream declares (CAP_PROP_FPS)",
                                         ["camera"], registry=r)
        self.stream_size = Gauge("mamoru_camera_stream_pixels", "frame size the stream delivers",
                                 ["camera", "dimension"], registry=r)
        self.decoded_fps = Gauge("mamoru_camera_decoded_fps",
                                 "frames/s decoded (every frame sent is decoded)",
                                 ["camera"], registry=r)
        self.profile_problem = Gauge("mamoru_camera_profile_problem",
                                     "1 while the stream differs from its profile",
                                     ["camera", "problem"], registry=r)
        self.analysis_fps = Gauge(
            "mamoru_analysis_fps", "frames analysed per second", ["camera"], registry=r)
        self.faces = Counter("mamoru_faces_detected", "faces detected", ["camera"], registry=r)
        self.embeds = Counter("mamoru_faces_embedded", "faces embedded", ["camera"], registry=r)
        self.alerts = Counter("mamoru_alerts", "alerts raised", ["camera"], registry=r)
        self.snapshots = Counter(
            "mamoru_alert_snapshots", "alert snapshots by the stream they came from: main (the "
            "camera's snapshot_url), analysis, or analysis-busy (the snapshot thread already had "
            "a grab pending for the camera, or its queue was full)", ["camera", "source"],
            registry=r)
        self.detect_seconds = Histogram(
            "mamoru_detect_seconds", "detector latency", buckets=_LATENCY_BUCKETS, registry=r)
        self.embed_seconds = Histogram(
            "mamoru_embed_seconds", "embedding latency per batch", buckets=_LATENCY_BUCKETS,
            registry=r)
        self.search_seconds = Histogram(
            "mamoru_search_seconds", "watchlist search latency", buckets=_LATENCY_BUCKETS,
            registry=r)
        self.index_version = Gauge(
            "mamoru_index_version", "watchlist index version in use", registry=r)
        self.index_refresh_errors = Counter(
            "mamoru_index_refresh_errors", "index refreshes that raised (logged; the loop runs on)",
            registry=r)
        self.outbox_pending = Gauge(
            "mamoru_outbox_pending", "alerts waiting for the registry", registry=r)
        self.outbox_rejected = Gauge(
            "mamoru_outbox_rejected", "refused alerts set aside (wiped after their lifetime)",
            registry=r)
        self.copies_ended = Gauge(
            "mamoru_alert_copies_ended", "alert copies that left the box, by why", ["reason"],
            registry=r)
        self.index_state = Gauge(
            "mamoru_index_state", "1 for the watchlist index's current state (stale: no alerts)",
            ["state"], registry=r)

    def set_index_state(self, state: IndexState) -> None:
        for candidate in IndexState:
            self.index_state.labels(candidate.value).set(1 if candidate is state else 0)

    def export_outbox(self, counters: OutboxCounters, pending: int, rejected: int) -> None:
        self.outbox_pending.set(pending)
        self.outbox_rejected.set(rejected)
        for reason, value in vars(counters).items():
            self.copies_ended.labels(reason).set(value)

    def set_state(self, camera: str, state: CameraState) -> None:
        for candidate in CameraState:
            self.camera_up.labels(camera, candidate.value).set(1 if candidate is state else 0)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

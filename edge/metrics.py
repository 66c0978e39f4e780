"""Prometheus metrics of the edge loop: per-camera health and the cost of each stage.

Labels are camera names only: never URLs (they can carry passwords), never
entry ids or anything about a person.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from edge.capture import CameraState

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class EdgeMetrics:
    """One registry per loop, so tests and several loops in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_analysed = Counter("mamoru_frames_analysed", "frames analysed", ["camera"], registry=r)
        self.frames_read = Gauge("mamoru_frames_read", "frames decoded", ["camera"], registry=r)
        self.frames_dropped = Gauge("mamoru_frames_dropped", "frames replaced before analysis", ["camera"], registry=r)
        self.reconnects = Gauge("mamoru_camera_reconnects", "reconnects", ["camera"], registry=r)
        self.camera_up = Gauge("mamoru_camera_state", "1 for the camera's current state", ["camera", "state"], registry=r)
        self.analysis_fps = Gauge("mamoru_analysis_fps", "frames analysed per second", ["camera"], registry=r)
        self.faces = Counter("mamoru_faces_detected", "faces detected", ["camera"], registry=r)
        self.embeds = Counter("mamoru_faces_embedded", "faces embedded", ["camera"], registry=r)
        self.alerts = Counter("mamoru_alerts", "alerts raised", ["camera"], registry=r)
        self.detect_seconds = Histogram("mamoru_detect_seconds", "detector latency", buckets=_LATENCY_BUCKETS, registry=r)
        self.embed_seconds = Histogram("mamoru_embed_seconds", "embedding latency per batch", buckets=_LATENCY_BUCKETS, registry=r)
        self.search_seconds = Histogram("mamoru_search_seconds", "watchlist search latency", buckets=_LATENCY_BUCKETS, registry=r)
        self.index_version = Gauge("mamoru_index_version", "watchlist index version in use", registry=r)
        self.outbox_pending = Gauge("mamoru_outbox_pending", "alerts waiting for the registry", registry=r)

    def set_state(self, camera: str, state: CameraState) -> None:
        for candidate in CameraState:
            self.camera_up.labels(camera, candidate.value).set(1 if candidate is state else 0)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

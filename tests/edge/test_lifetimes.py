"""Every copy has a lifetime: the box forgets what the registry forgets (issue 10).

G-REG-4 (erasure reaches every copy), "what follows" 1 (no trace of people
who are not listed). Each test ends by opening every file the way an auditor
would (tests/forensics.py: decrypt under every key mamoru derives, decode,
run the real engine) and asserting that the person is in none of them; each
first checks that the same sweep does find him while the copy is allowed,
so the sweep itself can fail.
"""

from __future__ import annotations

import gc
import os
import re
import time
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from edge.alerts import Alert
from edge.archive import SnapshotArchive
from edge.capture import Frame
from edge.config import OutboxLifetimes
from edge.matcher import IndexState
from edge.outbox import Delivery, Outbox
from edge.status import StatusReporter
from kernel.evidence import EvidenceIntegrityError, EvidenceStore
from mamoru.demo.cameras import RtspServer, free_port
from mamoru.wiring import api_host, rekey_edge_copies
from registry.accounts.devices import add_device
from registry.alerts.queue import dismiss_alert, list_alerts
from registry.api.app import create_app
from registry.backup.key_rotation import rotate_key
from registry.retention.expiry import run_expiry
from registry.watchlist import entries as watchlist
from tests.edge.harness import RunningEdge, build_edge, decode, serve, walk_clip
from tests.forensics import faces_of, images_equal_to
from tests.registries import BIDEN, GROUP, OBAMA, OBAMA2, T0, Registry
from tests.registry.people import Clock, Person, log_in, start_app
from tests.waiting import answers, running, wait_until

StartEdge = Callable[..., RunningEdge]


def _his_copies(registry: Registry, *roots: Path) -> list[Path]:
    found = faces_of(registry.embedding(OBAMA2), list(roots) or [registry.data_dir],
                     registry.ctx.master_key, registry.engine)
    return [f.path for f in found]


def _holds_an_alert(edge: RunningEdge) -> bool:
    return bool(edge.alerts) and bool(edge.outbox.pending()) and bool(edge.snapshots())


# --- end to end over RTSP ---------------------------------------------------


def test_a_delivered_alert_leaves_the_box_and_a_dismissal_or_erasure_leaves_no_copy(
    registry: Registry, start_edge: StartEdge, tmp_path: Path, face_data: Path
) -> None:
    entry_id = registry.register(OBAMA)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="door-box", now=T0)
    port = free_port()
    clip = walk_clip(tmp_path, face_data, "walk")
    api = serve(registry, port)
    try:
        with RtspServer({"door": clip.path}) as camera:
            edge = start_edge({"door": camera.url("door")},
                              delivery=Delivery(f"http://127.0.0.1:{port}", token))
            edge.wait_for(lambda: edge.outbox.delivered >= 1, 60, "the alert's delivery")
            edge.finish()
    finally:
        api.terminate()
        api.wait(timeout=20)
    # Delivered: the registry's copy is the one staff judge; the box keeps none.
    assert edge.outbox.pending() == [] and edge.outbox.rejected() == []
    assert edge.snapshots() == []
    assert _his_copies(registry, edge.edge_dir) == []

    ctx = registry.reopen()
    [alert] = list_alerts(ctx)
    snapshot = decode(edge.alerts[0].snapshot_png)
    assert len(images_equal_to(snapshot, [registry.data_dir], ctx.master_key)) == 1, \
        "the registry holds the snapshot until someone judges it"
    dismiss_alert(ctx, actor=registry.user("staff"), alert_id=alert.alert_id,
                  reason="人違い: a different person", now=T0)
    assert images_equal_to(snapshot, [registry.data_dir], ctx.master_key) == []

    assert _his_copies(registry), "his registration evidence is still there, and found"
    watchlist.erase(ctx, actor=registry.user("mgr1"), entry_id=entry_id,
                    reason="erasure request", now=T0)
    assert _his_copies(registry) == [], "registry and box: nothing decrypts to his face"


def test_an_alert_waiting_out_a_registry_outage_is_dropped_when_he_is_erased(
    registry: Registry, start_edge: StartEdge, tmp_path: Path, face_data: Path
) -> None:
    entry_id = registry.register(OBAMA)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="door-box", now=T0)
    port = free_port()  # nothing listens yet: the registry is down
    clip = walk_clip(tmp_path, face_data, "walk")
    with RtspServer({"door": clip.path}) as camera:
        edge = start_edge({"door": camera.url("door")},
                          delivery=Delivery(f"http://127.0.0.1:{port}", token))
        edge.wait_for(lambda: _holds_an_alert(edge), 40, "an undelivered alert and its snapshot")
        assert _his_copies(registry, edge.edge_dir), "the box holds him while undelivered"
        watchlist.erase(registry.ctx, actor=registry.user("mgr1"), entry_id=entry_id,
                        reason="erasure request", now=T0)
        edge.wait_for(lambda: not edge.outbox.pending() and not edge.snapshots(), 10,
                      "the box to forget him after the new index version")
        api = serve(registry, port)
        try:
            wait_until(answers(f"http://127.0.0.1:{port}/api/v1/session", 401), 60,
                       "the registry to be back", alive=running(api))
            edge.outbox.flush_once()  # a delivery round against the live registry: nothing left
        finally:
            api.terminate()
            api.wait(timeout=20)
        edge.finish()
    assert edge.outbox.counters.dropped_entry_gone >= 1
    assert list_alerts(registry.reopen()) == [], "nothing about an erased person was delivered"
    assert _his_copies(registry) == []
    exported = generate_latest(edge.loop.metrics.registry).decode()
    assert 'mamoru_alert_copies_ended{reason="dropped_entry_gone"}' in exported


def test_an_entry_that_expires_while_the_loop_runs_leaves_the_box(
    registry: Registry, start_edge: StartEdge, tmp_path: Path, face_data: Path
) -> None:
    registry.register(OBAMA)  # incident at T0: expires after retention_years (3)
    clip = walk_clip(tmp_path, face_data, "walk")
    with RtspServer({"door": clip.path}) as camera:
        edge = start_edge({"door": camera.url("door")})  # no registry: alerts wait on the box
        edge.wait_for(lambda: _holds_an_alert(edge), 40, "an alert waiting on the box")
        assert _his_copies(registry, edge.edge_dir)
        run_expiry(registry.ctx, now=T0 + timedelta(days=3 * 366))
        edge.wait_for(lambda: not edge.outbox.pending() and not edge.snapshots(), 10,
                      "the box to forget the expired entry")
        edge.finish()
    assert _his_copies(registry) == []


# --- fail closed when the list changes and the box cannot follow -------------


def _frame(registry: Registry, photo: str, at: float) -> Frame:
    return Frame("door", int(at), at, datetime.now(UTC), registry.image(photo).copy())


def _visit(edge: RunningEdge, registry: Registry, photo: str, at: float) -> list[Alert]:
    """A new visit: a fresh track, so the face is embedded and searched again."""
    lane = edge.loop.lanes[0]
    lane.tracker = type(lane.tracker)(max_age_s=1.0)
    embedded = edge.metric("mamoru_faces_embedded_total", camera="door") or 0.0
    alerts = edge.loop.analyse(lane, _frame(registry, photo, at))
    assert (edge.metric("mamoru_faces_embedded_total", camera="door") or 0.0) > embedded, \
        "searched"
    return alerts


def _tablet_warning(staff: Person) -> str | None:
    """The box warning on the alerts page staff watch, or None."""
    page = staff.get("/alerts")
    assert page.status_code == 200, page.text
    found = re.search(r'id="box-door-box" data-box-state="(\w+)"', page.text)
    return found.group(1) if found else None


def test_a_corrupt_new_index_stops_alerts_and_says_so_until_a_good_one_arrives(
    registry: Registry,
) -> None:
    registry.register(OBAMA)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="door-box", now=T0)
    with start_app(registry, Clock(datetime.now(UTC))) as client:
        staff = log_in(client, "staff")
        delivery = Delivery(str(client.base_url), token)
        edge = build_edge(registry, {"door": "door.mp4"}, delivery, alert_cooldown_s=1.0)
        reporter = StatusReporter(delivery, edge.loop.status_report, interval_s=30.0)
        _check_stale_index_cycle(registry, edge, lambda: reporter.tick(client),
                                 lambda: _tablet_warning(staff))


def _check_stale_index_cycle(registry: Registry, edge: RunningEdge, report: Callable[[], bool],
                             warning: Callable[[], str | None]) -> None:
    loop = edge.loop
    edge.matcher.load()
    assert report() and warning() is None
    assert len(_visit(edge, registry, OBAMA2, 10.0)) == 1

    registry.register(BIDEN)  # version n+1 ...
    index = registry.ctx.paths.index
    blob = bytearray(index.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # ... arrives damaged (clear header intact)
    index.write_bytes(bytes(blob))
    loop.follow_index()
    assert edge.matcher.state is IndexState.STALE
    exported = generate_latest(loop.metrics.registry).decode()
    assert 'mamoru_index_state{state="stale"} 1.0' in exported
    assert _visit(edge, registry, OBAMA2, 20.0) == [], \
        "an entry the box can no longer confirm as current raises no alert"
    assert report() and warning() == "stale", "staff see that this box is blind"

    index.unlink()  # the registry republishes a good copy of the current version
    registry.ctx.publish_index_if_stale()

    def current() -> bool:
        loop.follow_index()  # a no-op until the matcher's poll interval has passed
        return edge.matcher.state is IndexState.CURRENT

    wait_until(current, 10, "the box to pick up the good copy at its next index poll")
    exposed = generate_latest(loop.metrics.registry).decode()
    assert 'mamoru_index_state{state="current"} 1.0' in exposed
    assert len(_visit(edge, registry, OBAMA2, 30.0)) == 1
    assert report() and warning() is None


# --- privacy by type ---------------------------------------------------------


def _spy(registry: Registry, monkeypatch: pytest.MonkeyPatch, keep: Callable[[Any], Any]) -> None:
    engine = registry.engine
    real_align, real_embed = engine.align, engine.embed

    def align(image: Any, face: Any) -> Any:
        crop = real_align(image, face)
        keep(crop)
        return crop

    def embed(crops: Any) -> Any:
        batch = real_embed(crops)
        keep(batch)
        return batch

    monkeypatch.setattr(engine, "align", align)
    monkeypatch.setattr(engine, "embed", embed)


def test_no_non_matching_embedding_crop_or_frame_outlives_its_analysis(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What follows 1, by type: after `analyse` returns nothing of a stranger is referenced."""
    registry.register(OBAMA)
    # every stranger of the group embedded in this one frame, not one a frame
    edge = build_edge(registry, {"door": "door.mp4"}, max_embeds_per_frame=8)
    edge.matcher.load()
    lane = edge.loop.lanes[0]

    refs: list[weakref.ref[Any]] = []
    _spy(registry, monkeypatch, lambda array: refs.append(weakref.ref(array)))
    lane.reader.slot.put(_frame(registry, GROUP, 1.0))
    refs.append(weakref.ref(lane.reader.slot._frame))  # type: ignore[arg-type]
    assert edge.loop.analyse(lane, lane.reader.slot.take()) == []  # type: ignore[arg-type]
    gc.collect()
    assert len(refs) >= 4, "the strangers were aligned and embedded"
    assert [r for r in refs if r() is not None] == [], (
        "frame, crops or embeddings outlived analysis")

    kept: list[np.ndarray] = []
    _spy(registry, monkeypatch, kept.append)
    lane.tracker = type(lane.tracker)(max_age_s=0.01)  # new tracks: embed everyone again
    edge.loop.analyse(lane, _frame(registry, GROUP, 5.0))
    assert len(kept) >= 4
    assert all(not array.any() for array in kept), (
        "crops and embeddings are zeroed, not just dropped")


# --- the outbox's own lifetimes, against the real registry app -------------------


def _alert(registry: Registry, entry_id: str, *, score: float = 0.8) -> Alert:
    ok, png = cv2.imencode(".png", registry.image(OBAMA2))
    assert ok
    return Alert(alert_id=uuid.uuid4().hex, camera="door", detected_at=datetime.now(UTC),
                 score=score, threshold=0.45, entry_id=entry_id,
                 index_version=registry.ctx.repo.watchlist_version(), snapshot_png=png.tobytes())


def _outbox(registry: Registry, delivery: Delivery | None) -> tuple[Outbox, SnapshotArchive]:
    key = registry.ctx.master_key.derive("edge")
    edge_dir = registry.data_dir / "edge"
    archive = SnapshotArchive(EvidenceStore(edge_dir / "snapshots", key))
    lifetimes = OutboxLifetimes(rejected_s=3600.0, undelivered_s=86400.0)
    return Outbox(edge_dir / "outbox", key, delivery, lifetimes=lifetimes,
                  snapshots=archive), archive


def _age(paths: list[Path], seconds: float) -> None:
    for path in paths:
        then = time.time() - seconds
        os.utime(path, (then, then))


def test_each_ending_of_an_alert_copy_wipes_it_and_its_snapshot(registry: Registry) -> None:
    listed = registry.register(OBAMA)
    erased = registry.register(BIDEN)
    watchlist.erase(registry.ctx, actor=registry.user("mgr1"), entry_id=erased,
                    reason="erasure request", now=T0)
    token = add_device(registry.ctx, admin=registry.user("admin"), name="box-1", now=T0)
    with TestClient(create_app(api_host(registry.settings, engine=registry.engine))) as client:
        outbox, archive = _outbox(registry, Delivery(str(client.base_url), token))
        alerts = [_alert(registry, listed), _alert(registry, erased),
                  _alert(registry, listed, score=0.1)]  # below threshold: refused (422)
        for alert in alerts:
            outbox.put(alert)
            archive(alert)
        edge_dir = registry.data_dir / "edge"
        assert len(_his_copies(registry, edge_dir)) == 6
        assert outbox.deliver_pending(client)
    counters = outbox.counters
    assert (counters.delivered, counters.dropped_entry_gone, counters.rejected) == (1, 1, 1)
    assert outbox.pending() == [] and len(outbox.rejected()) == 1
    assert len(_his_copies(registry, edge_dir)) == 2, "only the refused alert, set aside"

    outbox.sweep()
    assert len(outbox.rejected()) == 1, "kept aside for a person to look at, for a while"
    _age(outbox.rejected(), 3601)
    assert outbox.sweep() >= 1 and counters.rejected_wiped == 1
    assert _his_copies(registry, edge_dir) == []


def test_an_alert_never_delivered_is_wiped_after_its_lifetime(registry: Registry) -> None:
    listed = registry.register(OBAMA)
    outbox, archive = _outbox(registry, None)  # no registry configured
    alert = _alert(registry, listed)
    outbox.put(alert)
    archive(alert)
    outbox.sweep()
    assert len(outbox.pending()) == 1 and len(archive._store.ids()) == 1
    _age(outbox.pending(), 86401)
    outbox.sweep()
    assert outbox.pending() == [] and archive._store.ids() == set()
    assert outbox.counters.undelivered_wiped == 1
    assert _his_copies(registry, registry.data_dir / "edge") == []


def test_key_rotation_re_encrypts_the_boxs_copies(registry: Registry) -> None:
    listed = registry.register(OBAMA)
    outbox, archive = _outbox(registry, None)
    alert = _alert(registry, listed)
    outbox.put(alert)
    archive(alert)
    old_key = registry.ctx.master_key
    rotate_key(registry.ctx, actor=registry.user("admin"), now=T0)
    assert rekey_edge_copies(registry.settings, old_key, registry.ctx.master_key)
    new_edge = registry.ctx.master_key.derive("edge")
    edge_dir = registry.data_dir / "edge"
    rotated = Outbox(edge_dir / "outbox", new_edge, None)
    assert [p["alert_id"] for p in map(rotated._read, rotated.pending())] == [alert.alert_id]
    assert EvidenceStore(edge_dir / "snapshots", new_edge).get(alert.alert_id).shape[0] > 0
    with pytest.raises(EvidenceIntegrityError):
        EvidenceStore(edge_dir / "snapshots", old_key.derive("edge")).get(alert.alert_id)
    with pytest.raises(ValueError, match="fails authentication"):
        outbox._read(outbox.pending()[0])

"""The privacy type and the tracker on their own (no camera needed)."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from datetime import UTC, datetime

import numpy as np
import pytest

from edge.capture import Frame
from edge.logs import JsonFormatter
from edge.probe import FaceProbe, ProbeLeakError
from edge.tracker import IouTracker, Track, wants_embedding
from kernel.watchlist_index import Hit
from models.face import DetectedFace


def _face(x: float, y: float, size: float = 80.0, score: float = 0.9) -> DetectedFace:
    box = np.array([x, y, x + size, y + size], np.float32)
    landmarks = np.array([[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size],
                          [x + 0.5 * size, y + 0.6 * size], [x + 0.35 * size, y + 0.8 * size],
                          [x + 0.65 * size, y + 0.8 * size]], np.float32)
    return DetectedFace(box=box, landmarks=landmarks, score=score)


def _probe(vector: np.ndarray) -> FaceProbe:
    frame = Frame("door", 1, 0.0, datetime.now(UTC), np.zeros((64, 64, 3), np.uint8))
    return FaceProbe(frame, _face(0, 0), vector)


def test_a_probe_cannot_be_pickled_copied_or_printed() -> None:
    probe = _probe(np.ones(128, np.float32))
    for leak in (pickle.dumps, copy.copy, copy.deepcopy, bytes):
        with pytest.raises(ProbeLeakError):
            leak(probe)
    assert "1.0" not in repr(probe) and "redacted" in repr(probe)


def test_a_non_match_is_wiped_when_the_search_returns() -> None:
    batch = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
    stranger, listed = _probe(batch[0]), _probe(batch[1])
    miss = Hit(entry_id="e" * 32, template_id=1, score=0.2)
    assert stranger.resolve(miss, threshold=0.45) is None
    assert not batch[0].any(), "the embedding buffer itself is zeroed"
    with pytest.raises(ProbeLeakError):
        _ = stranger.embedding
    match = listed.resolve(Hit(entry_id="f" * 32, template_id=2, score=0.8), threshold=0.45)
    assert match is not None and match.entry_id == "f" * 32
    assert not batch[1].any(), "even a match keeps no embedding: the alert needs none"
    with pytest.raises(ProbeLeakError):
        listed.resolve(None, threshold=0.45)


def test_tracks_follow_moving_faces_and_age_out() -> None:
    tracker = IouTracker(max_age_s=1.0)
    first = tracker.update([_face(100, 100), _face(400, 100)], now=0.0)
    second = tracker.update([_face(110, 100), _face(410, 102)], now=0.2)
    assert [o.track.track_id for o in first] == [o.track.track_id for o in second]
    for step in range(1, 10):  # the second face left; the first one stays in view
        third = tracker.update([_face(110 + 2 * step, 100)], now=0.2 + 0.2 * step)
    assert third[0].track.track_id == first[0].track.track_id
    assert len(tracker.tracks) == 1, "the face that left is forgotten"


def test_a_walking_face_keeps_its_track_at_five_frames_a_second() -> None:
    """At 5 fps a face moves more than its width between analysed frames: no overlap at all."""
    tracker = IouTracker(max_age_s=1.5)
    ids = {tracker.update([_face(50 + 120 * i, 300), _face(900, 50)], now=0.2 * i)[0].track.track_id
           for i in range(8)}
    assert len(ids) == 1
    crossing = tracker.update([_face(2000, 300), _face(900, 50)], now=1.8)  # someone else, far away
    assert crossing[0].track.track_id not in ids


def test_tracks_outlive_slow_analysis() -> None:
    """A busy box analysing every 2 s must not forget a standing face between frames."""
    tracker = IouTracker(max_age_s=1.5)
    ids = {tracker.update([_face(300, 300)], now=2.0 * i)[0].track.track_id for i in range(5)}
    assert len(ids) == 1
    tracker.update([], now=10.0)  # he left: the next frame forgets him, seconds later
    assert tracker.tracks and tracker.update([], now=12.0) == [] and not tracker.tracks


def _forgotten_after(fps: float, max_age_s: float) -> float:
    """When a tracker at `fps` forgets a face that left the view at t = 0."""
    tracker = IouTracker(max_age_s=max_age_s)
    tracker.update([_face(300, 300)], now=0.0)
    frame = 1
    while tracker.update([], now=frame / fps) or tracker.tracks:
        frame += 1
    return frame / fps


def test_a_track_is_forgotten_after_the_same_time_at_any_frame_rate() -> None:
    """Tracks age by seconds: at 5 and 25 fps a person who left is forgotten once `max_age_s`
    passed, at the first frame after it (the rule of three analysis intervals kept him for
    0.6 s at 5 fps with a 0.3 s limit, for 0.32 s at 25 fps)."""
    for max_age_s in (0.3, 0.5, 1.5):
        at_5, at_25 = _forgotten_after(5.0, max_age_s), _forgotten_after(25.0, max_age_s)
        assert max_age_s < at_5 <= max_age_s + 0.2, (max_age_s, at_5)
        assert max_age_s < at_25 <= max_age_s + 0.04, (max_age_s, at_25)


def test_a_track_is_embedded_a_few_times_not_every_frame() -> None:
    track = Track(1, np.zeros(4, np.float32), 0.0)
    decisions = []
    for i in range(30):  # 3 s at 10 fps, same quality
        now = i * 0.1
        wanted = wants_embedding(track, 50.0, now, interval_s=0.5, max_embeds=6)
        if wanted:
            track.embeds += 1
            track.last_embedded_at = now
            track.best_quality = 50.0
        decisions.append(wanted)
    assert 5 <= sum(decisions) <= 6
    track.matched_entry = "e" * 32
    assert not wants_embedding(track, 500.0, 10.0, interval_s=0.5, max_embeds=6)


def test_json_logs_drop_arrays_and_exception_text() -> None:
    record = logging.makeLogRecord({"msg": "alert", "levelno": logging.INFO, "levelname": "INFO",
                                    "name": "mamoru.edge", "camera": "door",
                                    "embedding": np.ones(4), "score": 0.7})
    try:
        raise RuntimeError("rtsp://user:secret@cam/stream")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["camera"] == "door" and line["score"] == 0.7
    assert "embedding" not in line
    assert "secret" not in json.dumps(line) and line["error"] == "RuntimeError"

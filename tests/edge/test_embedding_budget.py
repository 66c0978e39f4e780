"""A crowd is embedded over several frames, not in one that stalls the other cameras (issue 16).

Eight cameras seeing new faces at once (start-up, a group at the door) made
each analysis worker embed every face of a frame before it could take the
next camera's frame: `python -m benchmarks.pipeline --cameras 8 --only-profiles`
lost 20 % of 720p/5 frames as `late`, all in the first 5 s. A frame now
embeds at most `edge.max_embeds_per_frame` faces, never-embedded ones first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from edge.capture import Frame
from edge.tracker import Track
from tests.edge.harness import build_edge
from tests.registries import GROUP, Registry


def _frame(registry: Registry, at: float) -> Frame:
    return Frame("door", int(at * 5), at, datetime.now(UTC), registry.image(GROUP).copy())


def _tracks(registry: Registry, **overrides: float
            ) -> tuple[list[int], list[list[int]], list[Track]]:
    """Analyse the six-person group photo for 2 s at 5 fps: faces embedded per frame, each
    track's embedding count after each frame, and the tracks."""
    edge = build_edge(registry, {"door": "door.mp4"}, **overrides)
    lane = edge.loop.lanes[0]
    per_frame, counts = [], []
    for k in range(10):
        before = edge.metric("mamoru_faces_embedded_total", camera="door") or 0.0
        edge.loop.analyse(lane, _frame(registry, 1.0 + 0.2 * k))
        per_frame.append(int((edge.metric("mamoru_faces_embedded_total", camera="door") or 0.0)
                             - before))
        counts.append(sorted((t.embeds for t in lane.tracker.tracks), reverse=True))
    return per_frame, counts, list(lane.tracker.tracks)


def test_a_group_of_new_faces_is_embedded_one_a_frame_new_faces_first(
    registry: Registry
) -> None:
    per_frame, counts, tracks = _tracks(registry)
    embedded = [t for t in tracks if t.embeds]
    assert len(embedded) >= 5, f"the group's faces pass the quality gate: {per_frame}"
    assert max(per_frame) == 1, f"one face a frame (edge.max_embeds_per_frame = 1): {per_frame}"
    # every face got its first embedding before any face got a second (its 0.5 s interval
    # had passed for the first one after 3 frames)
    for k in range(len(embedded)):
        assert counts[k][: k + 1] == [1] * (k + 1) and not any(counts[k][k + 1:]), counts


def test_the_budget_is_a_setting_and_the_whole_group_fits_in_one_frame_when_raised(
    registry: Registry
) -> None:
    per_frame, _, tracks = _tracks(registry, max_embeds_per_frame=8)
    assert per_frame[0] == len([t for t in tracks if t.embeds >= 1]) >= 5, per_frame

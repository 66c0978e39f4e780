"""SIGKILL the expiry job and approvals at many points; the registry never stays half-done.

G-REG-4 requires real erasure and REQUIREMENTS "what follows" 3 an audit
trail that always matches the watchlist. A real subprocess runs the
operation and kills itself (SIGKILL, no cleanup handlers) at the N-th call
into registry code; the registry is then reopened as the next command would
open it, checked for half states, and the operation is finished.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from kernel.watchlist_index import WatchlistIndex
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import index_spec, open_registry_from, registry_paths
from models.engine import FaceEngine
from registry.accounts import users
from registry.clock import to_text, utc_now
from registry.context import init_registry
from registry.domain import ConfirmationKind, EntryState, IncidentInput, OffenceCategory, Role
from registry.watchlist import approval
from tests import REPO
from tests.faces import image

pytestmark = pytest.mark.crash

NOW = utc_now()
LATER = NOW + timedelta(days=3 * 365 - 30)  # past the 3-year retention of incidents 80+ days old
KILL_POINTS = 9


@dataclass
class World:
    data_dir: Path
    vectors: dict[str, np.ndarray]  # entry id -> one of its template vectors


def _propose(ctx, engine: FaceEngine, settings: MamoruSettings, who: str, days_ago: int) -> str:  # type: ignore[no-untyped-def]
    staff = ctx.repo.user_by_name("staff")
    incident = IncidentInput(OffenceCategory.THEFT, NOW - timedelta(days=days_ago),
                             ConfirmationKind.POLICE_REPORT, f"R-{who}")
    result = approval.propose(
        ctx, engine, settings.quality.registration, actor=staff, incident=incident,
        photos=[approval.Photo(who, image(FACE_DATA, f"orl/{who}/1.pgm"))], features="", now=NOW,
    )
    return result.entry_id


FACE_DATA = REPO / ".cache" / "face-data"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, engines: dict[str, FaceEngine]) -> World:
    """3 active entries due to expire at LATER, 1 that is not, 3 awaiting approval."""
    data_dir = tmp_path_factory.mktemp("crash") / "registry"
    settings = get_settings(data_dir=data_dir)
    engine = engines["yunet-sface"]
    vectors = {}
    with init_registry(registry_paths(settings), settings.registry, index_spec(settings)) as ctx:
        for name, role in (("admin", Role.ADMIN), ("staff", Role.STAFF), ("mgr1", Role.MANAGER),
                           ("mgr2", Role.MANAGER)):
            users.add_user(ctx.repo, ctx.audit, actor="test", username=name, role=role,
                           password="a long enough password", now=NOW)
        admin = ctx.repo.user_by_name("admin")
        for name in ("staff", "mgr1", "mgr2"):
            users.record_training(ctx.repo, ctx.audit, admin=admin, username=name, now=NOW)
        mgr1 = ctx.repo.user_by_name("mgr1")
        for who, days_ago, approve in (("s1", 100, True), ("s2", 90, True), ("s3", 80, True),
                                       ("s4", 0, True), ("s5", 5, False), ("s6", 5, False),
                                       ("s7", 5, False)):
            entry_id = _propose(ctx, engine, settings, who, days_ago)
            vectors[entry_id] = np.frombuffer(ctx.repo.templates(entry_id)[0].vector, np.float32)
            if approve:
                approval.approve(ctx, actor=mgr1, entry_id=entry_id, reason="ok", now=NOW)
    return World(data_dir, vectors)


def _run_driver(data_dir: Path, op: str, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.registry.crash_driver", str(data_dir), op, str(kill_at),
         to_text(LATER)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def _states(data_dir: Path) -> dict[str, EntryState]:
    with open_registry_from(get_settings(data_dir=data_dir)) as ctx:
        return {e.entry_id: e.state for e in ctx.repo.entries()}


def assert_consistent(data_dir: Path, vectors: dict[str, np.ndarray]) -> None:
    """Reopen as the next command would, then look for any half state."""
    with open_registry_from(get_settings(data_dir=data_dir)) as ctx:
        report = ctx.audit.verify()
        assert report.ok, report.problem
        referenced = ctx.repo.all_evidence_ids()
        assert ctx.evidence.ids() == referenced, "evidence files and rows disagree"
        index = WatchlistIndex.load(ctx.paths.index, key=ctx.index_key())
        assert index.version == ctx.repo.watchlist_version()
        audited = {(r.entry_id, r.action) for r in ctx.repo.audit_rows()}
        for entry in ctx.repo.entries():
            templates = ctx.repo.templates(entry.entry_id)
            evidence = ctx.repo.evidence(entry.entry_id)
            hits = index.search(vectors[entry.entry_id][np.newaxis], k=1)[0]
            in_index = bool(hits) and hits[0].entry_id == entry.entry_id and hits[0].score > 0.99
            if entry.state.is_final:
                assert not templates and not evidence and not ctx.repo.incidents(entry.entry_id)
                assert entry.display_name == "" and entry.closed_at is not None
                assert not in_index, f"{entry.state.value} entry still in the index"
                assert (entry.entry_id, "expire") in audited
            else:
                assert templates and evidence and ctx.repo.incidents(entry.entry_id)
                for record in evidence:
                    ctx.evidence.get(record.image_id)  # decrypts: not half-deleted
                assert in_index == (entry.state is EntryState.ACTIVE)
                if entry.state is EntryState.ACTIVE:
                    assert (entry.entry_id, "approve") in audited


@pytest.mark.parametrize("op", ["expire", "approve"])
def test_sigkill_at_many_points_leaves_no_half_state(world: World, tmp_path: Path, op: str) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(world.data_dir, reference)
    finished = _run_driver(reference, op, 0)
    assert finished.returncode == 0, finished.stderr
    total_calls = int(finished.stdout.strip().splitlines()[-1])
    expected = _states(reference)
    changed = {e for e, s in expected.items() if s != _states(world.data_dir)[e]}
    assert len(changed) == 3, "each operation changes three entries"

    points = sorted({int(p) for p in np.linspace(1, total_calls, KILL_POINTS)})
    for point in points:
        crashed = tmp_path / f"kill-{point}"
        shutil.copytree(world.data_dir, crashed)
        result = _run_driver(crashed, op, point)
        assert result.returncode == -9, (
            f"kill point {point} was not reached: {result.stderr[-300:]}")
        assert_consistent(crashed, world.vectors)
        rerun = _run_driver(crashed, op, 0)
        assert rerun.returncode == 0, rerun.stderr
        assert _states(crashed) == expected, f"after a kill at call {point}/{total_calls}"
        assert_consistent(crashed, world.vectors)

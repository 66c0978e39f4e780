"""Backup and restore time, SQLCipher vs PostgreSQL, for a registry of N synthetic entries.

Not part of the suite (the file name is not test_*): run it explicitly,
`MAMORU_BENCH_ENTRIES=1000 pytest tests/registry/bench_backup.py -s`. Each entry is
written the way a proposal writes it (entry, criteria, incident, one evidence
image re-using a real masked photo's PNG, one random 512-d template, the
PROPOSE audit record), active; then one backup, one erasure, one restore.

Peak memory (issue 15): each step's peak RSS above the RSS it started from, read
from the kernel (`VmHWM`, reset through `/proc/self/clear_refs` before each step),
so the models and the registry already in memory do not count.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from models.engine import FaceEngine
from registry.audit.trail import Action
from registry.backup import archive as backup
from registry.context import OwnerLogin
from registry.domain import Entry, EntryState, EvidenceRecord
from registry.storage.postgres.cluster import ThrowawayCluster
from registry.watchlist import entries as watchlist
from tests.registries import OBAMA, T0, Registry, incident
from tests.registry.chain import chain_registry, owner_login

ENTRIES = int(os.environ.get("MAMORU_BENCH_ENTRIES", "1000"))
_STATUS = Path("/proc/self/status")
T = TypeVar("T")


def _status_kib(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    assert found is not None, field
    return int(found[1])


def _timed_peak(step: Callable[[], T]) -> tuple[T, float, float]:
    """`step`'s result, its seconds, and its peak RSS above the RSS it started from (MB)."""
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start_kib = _status_kib("VmRSS")
    started = time.perf_counter()
    result = step()
    took = time.perf_counter() - started
    return result, took, (_status_kib("VmHWM") - start_kib) / 1024


@pytest.fixture(params=("sqlcipher", "postgres"))
def bench(request: pytest.FixtureRequest, tmp_path: Path, engine_default: FaceEngine,
          face_data: Path) -> Iterator[tuple[Registry, OwnerLogin | None]]:
    if request.param == "sqlcipher":
        yield request.getfixturevalue("registry"), None
        return
    cluster: ThrowawayCluster = request.getfixturevalue("pg_cluster")
    reg, database = chain_registry(cluster, tmp_path, engine_default, face_data)
    yield reg, owner_login(database, tmp_path / "secrets")
    with contextlib.suppress(Exception):
        reg.ctx.close()


def _fill(reg: Registry, n: int) -> list[str]:
    ctx = reg.ctx
    first = reg.register(OBAMA)
    png = ctx.evidence.get_bytes(ctx.repo.evidence(first)[0].image_id)
    staff, rng = reg.user("staff"), np.random.default_rng(7)
    ids = [first]
    with ctx.writing():
        for i in range(n - 1):
            entry_id = uuid.uuid4().hex
            stored = ctx.evidence.put_png(png)
            vector = rng.standard_normal(ctx.index_spec.dim).astype(np.float32)
            entry = Entry(entry_id=entry_id, state=EntryState.ACTIVE,
                          store_id=ctx.policy.store_id, features="", display_name=f"p{i}",
                          proposed_by=staff.user_id, proposed_at=T0, decided_by=None,
                          decided_at=None, decision_reason="ok",
                          expires_at=T0 + timedelta(days=900), revision=1, closed_at=None,
                          closed_reason="")
            with ctx.repo.unit_of_work():
                ctx.repo.add_entry(replace(entry))
                ctx.repo.add_incident(entry_id, ctx.policy.store_id, incident(), staff.user_id,
                                      T0)
                ctx.repo.add_evidence(EvidenceRecord(stored.image_id, entry_id, stored.sha256,
                                                     0, T0))
                ctx.repo.add_template(entry_id, ctx.index_spec.pack,
                                      (vector / np.linalg.norm(vector)).tobytes(),
                                      ctx.index_spec.dim, stored.image_id, "good")
                ctx.audit.record(actor="staff", action=Action.PROPOSE, at=T0,
                                 entry_id=entry_id, details={})
            ids.append(entry_id)
        ctx.repo.bump_watchlist_version()
        ctx.publish_index_if_stale()
    return ids


def test_backup_and_restore_timing(bench: tuple[Registry, OwnerLogin | None]) -> None:
    reg, owner = bench
    ids = _fill(reg, ENTRIES)
    admin = reg.user("admin")
    path, took_backup, peak_backup = _timed_peak(
        lambda: backup.create_backup(reg.ctx, actor=admin, now=T0, owner=owner))
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=ids[1], reason="erased",
                    now=T0 + timedelta(hours=1))
    result, took_restore, peak_restore = _timed_peak(
        lambda: backup.restore_backup(reg.ctx, actor=admin, path=path,
                                      now=T0 + timedelta(hours=1), owner=owner))
    assert result.erasures_reapplied == 1 and result.entries == ENTRIES
    print(f"\nBENCH {reg.ctx.backend:9} entries={ENTRIES} backup={took_backup:.2f}s "  # noqa: T201
          f"restore={took_restore:.2f}s size={path.stat().st_size / 1e6:.1f}MB "
          f"peak_rss_above_start: backup={peak_backup:.0f}MB restore={peak_restore:.0f}MB")

"""Every copy has a lifetime (G-RET-1), registry side: alerts, snapshots, audit trail, logs.

Real SQLCipher files, real faces, real snapshots; the clock is the `now` every
use case takes, so years pass in a test. Each test fails if the lifetime it
names is not enforced: the file stays on disk, the text stays readable, the
record stays, or tampering with a pruned chain goes unnoticed.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest
import sqlcipher3
from pydantic import ValidationError

from edge.logs import DailyLogFile, configure_json_logging
from kernel.errors import ConflictError
from kernel.evidence import EvidenceNotFoundError
from registry.accounts import devices
from registry.alerts import queue as alerts
from registry.alerts.queue import AlertIn
from registry.audit.trail import Action, text_sha256
from registry.backup import archive as backup
from registry.backup.archive import BackupError
from registry.clock import add_years, utc_now
from registry.config import LogSettings, RegistrySettings
from registry.context import RegistryContext
from registry.domain import AlertStatus, EntryState
from registry.keys.master import sqlcipher_pragma_value
from registry.retention.expiry import prune_audit_trail, run_expiry
from registry.watchlist import approval
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, GROUP, OBAMA, OBAMA2, T0, Registry, incident

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# --- alerts and their snapshots ------------------------------------------------------------


def _alert(reg: Registry, entry_id: str, at: datetime) -> str:
    """One alert from box-1 with a real snapshot (another photo of the matched person)."""
    if reg.ctx.repo.device_by_name("box-1") is None:
        devices.add_device(reg.ctx, admin=reg.user("admin"), name="box-1", now=T0)
    device = reg.ctx.repo.device_by_name("box-1")
    assert device is not None
    ok, png = cv2.imencode(".png", reg.image(OBAMA2))
    assert ok
    payload = AlertIn(alert_id=uuid.uuid4().hex, camera="entrance-1", detected_at=at, score=0.7,
                      threshold=0.363, entry_id=entry_id,
                      index_version=reg.ctx.repo.watchlist_version(),
                      snapshot_png_b64=base64.b64encode(png.tobytes()).decode("ascii"))
    alert_id, created = alerts.receive_alert(reg.ctx, device=device, payload=payload, now=at)
    assert created
    return alert_id


def _snapshot_of(reg: Registry, alert_id: str) -> str:
    alert = reg.ctx.repo.alert(alert_id)
    assert alert is not None and alert.snapshot_image_id is not None
    return alert.snapshot_image_id


def _assert_snapshot_gone(reg: Registry, image_id: str) -> None:
    assert not (reg.ctx.paths.evidence / f"{image_id}.bin").exists()
    with pytest.raises(EvidenceNotFoundError):
        reg.ctx.evidence.get_bytes(image_id)


def test_an_unjudged_alert_lapses_and_its_snapshot_is_erased(registry: Registry) -> None:
    """G-RET-1: an alert nobody confirms or dismisses keeps its snapshot open_alert_days only."""
    days = registry.settings.registry.open_alert_days
    assert days == 7
    entry_id = registry.register(OBAMA)
    received = T0 + HOUR
    alert_id = _alert(registry, entry_id, received)
    judged = _alert(registry, entry_id, received)
    alerts.confirm_alert(registry.ctx, actor=registry.user("staff"), alert_id=judged,
                         now=received + HOUR)
    snapshot = _snapshot_of(registry, alert_id)
    assert registry.ctx.evidence.get_bytes(snapshot).startswith(b"\x89PNG")

    early = run_expiry(registry.ctx, now=received + timedelta(days=days) - HOUR)
    assert early.alerts_lapsed == () and registry.ctx.evidence.get_bytes(snapshot)
    dry = run_expiry(registry.ctx, now=received + timedelta(days=days) + HOUR, dry_run=True)
    assert dry.alerts_due == (alert_id,) and registry.ctx.evidence.get_bytes(snapshot)

    late = run_expiry(registry.ctx, now=received + timedelta(days=days) + HOUR)

    assert late.alerts_lapsed == (alert_id,)
    _assert_snapshot_gone(registry, snapshot)
    row = registry.ctx.repo.alert(alert_id)
    assert row is not None and row.status is AlertStatus.LAPSED
    assert row.snapshot_image_id is None and row.entry_id == entry_id
    assert row.score == pytest.approx(0.7) and row.device == "box-1"
    # The confirmed alert of the still active entry keeps its snapshot: it lives with the entry.
    assert registry.ctx.evidence.get_bytes(_snapshot_of(registry, judged))
    with pytest.raises(ConflictError, match="lapsed"):
        alerts.confirm_alert(registry.ctx, actor=registry.user("staff"), alert_id=alert_id,
                             now=received + timedelta(days=days + 1))
    records = [r for r in registry.ctx.repo.audit_rows() if r.action == Action.ALERT_LAPSED.value]
    assert [json.loads(r.details)["alert_id"] for r in records] == [alert_id]
    assert registry.ctx.audit.report(T0, T0 + 30 * DAY)["alerts_lapsed"] == 1
    assert registry.ctx.audit.verify().ok
    again = run_expiry(registry.ctx, now=received + timedelta(days=days) + HOUR)
    assert again.alerts_lapsed == () and again.stray_snapshots_erased == 0


def _close(reg: Registry, entry_id: str, how: str) -> None:
    if how == "erase":
        watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=entry_id,
                        reason="erasure request granted", now=T0 + DAY)
    elif how == "withdraw":
        watchlist.withdraw(reg.ctx, actor=reg.user("mgr2"), entry_id=entry_id,
                           reason="misidentified", now=T0 + DAY)
    elif how == "expire":
        assert run_expiry(reg.ctx, now=add_years(T0, 3) + DAY).expired == (entry_id,)
    else:  # an entry closed behind the application's back (an older version, a crash)
        reg.ctx.repo.connection.execute(
            "UPDATE entries SET state = 'withdrawn' WHERE entry_id = ?", (entry_id,))
        run_expiry(reg.ctx, now=T0 + DAY)


@pytest.mark.parametrize("how", ["erase", "withdraw", "expire", "closed-without-purge"])
def test_a_confirmed_alert_snapshot_lives_no_longer_than_its_entry(registry: Registry,
                                                                  how: str) -> None:
    """G-RET-1/G-REG-4: the snapshot of a confirmed match goes when its entry does."""
    entry_id = registry.register(OBAMA)
    alert_id = _alert(registry, entry_id, T0 + HOUR)
    alerts.confirm_alert(registry.ctx, actor=registry.user("staff"), alert_id=alert_id,
                         reason="本人 山田花子 と確認", now=T0 + 2 * HOUR)
    snapshot = _snapshot_of(registry, alert_id)

    _close(registry, entry_id, how)

    _assert_snapshot_gone(registry, snapshot)
    row = registry.ctx.repo.alert(alert_id)
    assert row is not None and row.status is AlertStatus.CONFIRMED
    assert row.snapshot_image_id is None
    if how != "closed-without-purge":
        assert row.decision_reason == ""  # what staff typed about the person goes too
    assert registry.ctx.repo.stray_alert_snapshots() == []
    assert registry.ctx.audit.verify().ok


# --- the audit trail: ids and hashes only ------------------------------------------------------

PERSONAL_REASONS = ("申出人 山田花子 本人確認済み", "佐藤一郎さんと見間違い",
                    "typo in 田中's features")


def test_free_text_is_kept_out_of_the_audit_trail_and_dies_with_the_entry(
        registry: Registry) -> None:
    """G-RET-1: a name typed into a reason must not live for the audit retention."""
    erase_reason, dismiss_reason, correct_reason = PERSONAL_REASONS
    entry_id = registry.register(OBAMA)
    watchlist.correct(registry.ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                      reason=correct_reason, features="grey coat", now=T0 + HOUR)
    dismissed = _alert(registry, entry_id, T0 + HOUR)
    alerts.dismiss_alert(registry.ctx, actor=registry.user("staff"), alert_id=dismissed,
                         reason=dismiss_reason, now=T0 + 2 * HOUR)
    assert registry.ctx.repo.audit_text(entry_id, text_sha256(correct_reason)) == correct_reason
    watchlist.erase(registry.ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                    reason=erase_reason, now=T0 + DAY)

    rows = list(_raw_audit_rows(registry.ctx))
    plaintext = "\n".join(" ".join(str(c) for c in row) for row in rows)
    for reason in (*PERSONAL_REASONS, "police damage report checked"):
        assert reason not in plaintext
        assert text_sha256(reason) in plaintext
    for word in ("山田", "佐藤", "田中"):
        assert word not in plaintext
    erased = next(json.loads(str(r[5])) for r in rows if r[3] == Action.ERASE.value)
    assert erased["reason_sha256"] == text_sha256(erase_reason) and "reason" not in erased
    # The texts lived in the registry with the entry's lifetime; the erasure took them.
    assert registry.ctx.repo.audit_text(entry_id, text_sha256(correct_reason)) is None
    row = registry.ctx.repo.alert(dismissed)
    assert row is not None and row.decision_reason == ""
    report = registry.ctx.audit.report(T0 - DAY, T0 + 2 * DAY)
    assert (report["erasures"], report["corrections"], report["alerts_dismissed"]) == (1, 1, 1)
    assert registry.ctx.audit.verify().ok


def _raw_audit_rows(ctx: RegistryContext) -> Iterator[tuple[object, ...]]:
    """The rows as stored in audit.db, read over an own connection (not the repository)."""
    with _raw_audit(ctx, drop_triggers=False) as raw:
        yield from raw.execute("SELECT * FROM records ORDER BY seq").fetchall()


@contextmanager
def _raw_audit(ctx: RegistryContext, *,
               drop_triggers: bool = True) -> Iterator[sqlcipher3.Connection]:
    """An insider's own connection to audit.db, append-only triggers removed."""
    connection = sqlcipher3.connect(str(ctx.paths.audit_database), isolation_level=None)
    try:
        connection.execute(f"PRAGMA key = {sqlcipher_pragma_value(ctx.master_key.derive('audit'))}")
        if drop_triggers:
            for trigger in ("records_no_update", "records_no_delete",
                            "prune_anchors_no_update", "prune_anchors_no_delete"):
                connection.execute(f"DROP TRIGGER {trigger}")
        yield connection
    finally:
        connection.close()


# --- the audit trail's own retention -----------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    reg: Registry
    later: datetime  # "now" of the prune: more than audit_retention_years after the first records
    old_erased: str
    long_lived: str  # registered before the cut-off, still active through a re-offence
    pruned: int
    first_kept: int


def _later() -> datetime:
    """Far enough ahead that every record the test wrote at "real now" is old too."""
    return max(add_years(T0, 7), add_years(utc_now(), 6) + 30 * DAY)


@pytest.fixture
def pruned(registry: Registry) -> Pruned:
    """History at T0 (registrations, an erasure), then a prune years later by the nightly job."""
    years = registry.settings.registry.audit_retention_years
    assert years == 6
    old_erased = registry.register(BIDEN)
    watchlist.erase(registry.ctx, actor=registry.user("mgr2"), entry_id=old_erased,
                    reason="request", now=T0 + DAY)
    long_lived = registry.register(OBAMA, now=T0 + 2 * DAY)
    later = _later()
    watchlist.add_reoffence(registry.ctx, actor=registry.user("mgr1"), entry_id=long_lived,
                            incident=incident(later - DAY), now=later - DAY)
    first_of_long_lived = next(r.seq for r in registry.ctx.repo.audit_rows()
                               if r.entry_id == long_lived)

    result = run_expiry(registry.ctx, now=later)

    assert result.expired == () and result.audit_records_pruned > 0
    rows = list(registry.ctx.repo.audit_rows())
    assert rows[0].seq == first_of_long_lived  # kept: its entry is still on the watchlist
    assert old_erased not in {r.entry_id for r in rows}
    base = registry.ctx.paths.audit_base.read_text().split()
    assert registry.ctx.repo.audit_anchor() == (first_of_long_lived - 1, base[1])
    assert int(base[0]) == first_of_long_lived - 1
    assert rows[-1].action == Action.AUDIT_PRUNED.value
    return Pruned(registry, later, old_erased, long_lived, result.audit_records_pruned,
                  first_of_long_lived)


def test_pruned_trail_verifies_from_its_anchor(pruned: Pruned) -> None:
    """G-RET-1: records past audit_retention_years go; what is left still verifies."""
    reg = pruned.reg
    assert pruned.pruned == pruned.first_kept - 1
    report = reg.reopen().audit.verify()
    assert report.ok, report.problem
    assert report.records == len(list(reg.ctx.repo.audit_rows()))
    # The next records chain on as before; a second run the same night prunes nothing more.
    assert run_expiry(reg.ctx, now=pruned.later).audit_records_pruned == 0
    assert reg.ctx.audit.verify().ok
    # Only records up to the anchor can be deleted, even by the application's own connection.
    with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
        reg.ctx.repo.connection.execute("DELETE FROM audit.records WHERE seq = ?",
                                        (pruned.first_kept,))
    # Once the long-lived entry has expired, its records age out too.
    expiry = run_expiry(reg.ctx, now=add_years(pruned.later, 3))
    assert expiry.expired == (pruned.long_lived,)
    final = run_expiry(reg.ctx, now=add_years(pruned.later, 10))
    assert final.audit_records_pruned > 0
    assert pruned.long_lived not in {r.entry_id for r in reg.ctx.repo.audit_rows()}
    assert reg.reopen().audit.verify().ok


def _tamper(ctx: RegistryContext, how: str, first_kept: int) -> None:
    if how == "audit.base deleted":
        ctx.paths.audit_base.unlink()
        return
    with _raw_audit(ctx) as raw:
        if how == "remaining record edited":
            raw.execute("UPDATE records SET actor = 'someone-else' WHERE seq = ?",
                        (first_kept + 1,))
        elif how == "anchor deleted":
            raw.execute("DELETE FROM prune_anchors")
        elif how == "first record after the anchor deleted":
            raw.execute("DELETE FROM records WHERE seq = ?", (first_kept,))
        elif how == "pruned further with a forged anchor":
            # The insider cuts two more records and anchors the chain on the last one cut,
            # so the remaining chain is consistent again: only audit.base can tell.
            cut = raw.execute("SELECT seq, hash, at FROM records WHERE seq = ?",
                              (first_kept + 1,)).fetchone()
            raw.execute("INSERT INTO prune_anchors VALUES (?, ?, ?, ?, 2)",
                        (cut[0], cut[1], cut[2], cut[2]))
            raw.execute("DELETE FROM records WHERE seq <= ?", (cut[0],))


@pytest.mark.parametrize("how", ["remaining record edited", "anchor deleted",
                                 "first record after the anchor deleted", "audit.base deleted",
                                 "pruned further with a forged anchor"])
def test_tampering_with_a_pruned_trail_is_named(pruned: Pruned, how: str) -> None:
    """G-SEC-2/G-RET-1: pruning must not open a hole an insider can hide an edit in."""
    reg = pruned.reg
    _tamper(reg.ctx, how, pruned.first_kept)
    report = reg.reopen().audit.verify()
    assert not report.ok and report.problem is not None, how
    assert pruned.first_kept - 1 <= report.problem.seq <= pruned.first_kept + 1


def test_a_restore_after_pruning_still_re_applies_erasures(pruned: Pruned,
                                                           tmp_path: Path) -> None:
    """G-REG-4: the prune keeps every record a kept backup needs; an older one is refused."""
    reg = pruned.reg
    admin = reg.user("admin")
    taken = pruned.later + HOUR
    path = backup.create_backup(reg.ctx, actor=admin, now=taken)
    kept_away = tmp_path / path.name
    shutil.copy2(path, kept_away)
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=pruned.long_lived,
                    reason="stop-use request", now=taken + HOUR)
    # A prune right after must keep everything the backup on disk needs, however old.
    with reg.ctx.writing():
        assert prune_audit_trail(reg.ctx, now=add_years(taken, 10)) > 0
    assert any(r.action == Action.ERASE.value and r.entry_id == pruned.long_lived
               for r in reg.ctx.repo.audit_rows())

    result = backup.restore_backup(reg.ctx, actor=admin, path=path, now=taken + 2 * HOUR)

    assert result.erasures_reapplied == 1
    entry = reg.ctx.repo.entry(pruned.long_lived)
    assert entry is not None and entry.state is EntryState.ERASED
    assert reg.ctx.repo.templates(pruned.long_lived) == []
    assert reg.matches(OBAMA2) == {}
    assert reg.reopen().audit.verify().ok

    # Once the backup is gone by its own retention, the prune may pass it; the copy kept
    # elsewhere can then no longer be restored: it would bring the erased person back.
    path.unlink()
    with reg.ctx.writing():
        assert prune_audit_trail(reg.ctx, now=add_years(taken, 10)) > 0
    with pytest.raises(BackupError, match="can no longer be re-applied"):
        backup.restore_backup(reg.ctx, actor=admin, path=kept_away, now=taken + 3 * HOUR)
    assert reg.ctx.audit.verify().ok


def test_the_trail_is_not_pruned_while_an_entry_or_a_proposal_is_alive(
        registry: Registry) -> None:
    """G-REG-2: the approval of an entry still in use stays provable, however old."""
    proposal = registry.propose(GROUP).entry_id
    devices.add_device(registry.ctx, admin=registry.user("admin"), name="box-1", now=T0)
    later = _later()
    with registry.ctx.writing():
        pruned = prune_audit_trail(registry.ctx, now=later)
    rows = list(registry.ctx.repo.audit_rows())
    assert rows[0].entry_id == proposal and pruned == rows[0].seq - 1
    approval.reject(registry.ctx, actor=registry.user("mgr1"), entry_id=proposal,
                    reason="not clearly the offender", now=T0 + DAY)
    with registry.ctx.writing():
        assert prune_audit_trail(registry.ctx, now=add_years(later, 7)) > 0
    assert [r.action for r in registry.ctx.repo.audit_rows() if r.entry_id == proposal] == [
        Action.REJECT.value]  # the rejection is the newest record: the trail never ends empty
    assert registry.ctx.audit.verify().ok


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [
    {"open_alert_days": 0}, {"open_alert_days": 31},
    {"audit_retention_years": 2}, {"audit_retention_years": 11},
    {"retention_years": 5, "audit_retention_years": 5},
    {"retention_years": 4, "audit_retention_years": 3},
])
def test_lifetimes_outside_their_ranges_are_refused(values: dict[str, int]) -> None:
    """G-RET-1: the audit trail must outlive entries; alerts lapse within a month."""
    with pytest.raises(ValidationError):
        RegistrySettings(**values)


def test_default_lifetimes() -> None:
    settings = RegistrySettings()
    assert (settings.open_alert_days, settings.audit_retention_years) == (7, 6)
    assert RegistrySettings(retention_years=5).audit_retention_years == 6
    assert LogSettings().retention_days == 14
    with pytest.raises(ValidationError):
        LogSettings(retention_days=0)


# --- JSON logs ----------------------------------------------------------------------------


def test_log_files_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    """G-RET-1: rotated logs are deleted by age, not only by count."""
    folder = tmp_path / "logs"
    folder.mkdir()
    today = datetime.now(UTC).date()
    names = {age: f"edge.log.{(today - timedelta(days=age)).isoformat()}" for age in (1, 3, 40)}
    for name in names.values():
        (folder / name).write_text("{}\n")
    try:
        configure_json_logging(file=folder / "edge.log", retention_days=3)
        logging.getLogger("mamoru.edge").info("watchlist alert",
                                              extra={"camera": "entrance", "entry_id": "ab" * 16})
        handler = next(h for h in logging.getLogger("mamoru").handlers
                       if isinstance(h, DailyLogFile))
        handler.flush()
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["edge.log", names[1], names[3]])  # the 40-day-old file went at start-up
        line = json.loads((folder / "edge.log").read_text().splitlines()[-1])
        assert line["entry_id"] == "ab" * 16 and line["camera"] == "entrance"
        # At the next midnight the 3-day-old file is past the limit too.
        tomorrow = datetime.now(UTC) + DAY
        assert handler.expired_files(tomorrow) == [folder / names[3]]
        handler.doRollover()
        assert (folder / names[1]).exists() and not (folder / names[40]).exists()
    finally:
        configure_json_logging()

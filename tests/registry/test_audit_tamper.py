"""The tamper-evident audit trail (REQUIREMENTS "what follows" 3; G-SHR-4 outside audit).

The tampering is done the way an insider with the key would do it: a raw
SQLCipher connection to audit.db under the derived audit key, with the
append-only triggers dropped first. The chain must name where it broke.
The auditor's report counts actions without holding a name or a face.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlcipher3

from mamoru.wiring import open_registry_from
from registry.audit.trail import Action, text_sha256
from registry.context import RegistryContext
from registry.keys.master import sqlcipher_pragma_value
from registry.watchlist import approval
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, GROUP, OBAMA, T0, Registry, incident

NAME = "山田太郎 Yamada"
FEATURES = "navy cap, scar above left eyebrow"


def _trail(reg: Registry) -> dict[str, str]:
    """Several kinds of change: propose, approve, correct, re-offence, reject, erase."""
    kept = reg.register(OBAMA, display_name=NAME, features=FEATURES)
    erased = reg.register(BIDEN)
    turned_down = reg.propose(GROUP).entry_id
    later = T0 + timedelta(days=30)
    watchlist.correct(reg.ctx, actor=reg.user("mgr2"), entry_id=kept, reason="typo",
                      now=later, features=FEATURES + " (tall)")
    watchlist.add_reoffence(reg.ctx, actor=reg.user("mgr1"), entry_id=kept,
                            incident=incident(later, ref="被害届-2026-0099"), now=later)
    approval.reject(reg.ctx, actor=reg.user("mgr1"), entry_id=turned_down,
                    reason="not clearly the offender", now=later)
    watchlist.erase(reg.ctx, actor=reg.user("mgr2"), entry_id=erased, reason="request",
                    now=later)
    return {"kept": kept, "erased": erased, "rejected": turned_down}


@contextmanager
def _raw_audit(ctx: RegistryContext) -> Iterator[sqlcipher3.Connection]:
    """An insider's own connection to audit.db, append-only triggers removed."""
    connection = sqlcipher3.connect(str(ctx.paths.audit_database), isolation_level=None)
    try:
        connection.execute(f"PRAGMA key = {sqlcipher_pragma_value(ctx.master_key.derive('audit'))}")
        connection.execute("DROP TRIGGER records_no_update")
        connection.execute("DROP TRIGGER records_no_delete")
        yield connection
    finally:
        connection.close()


def _rows(ctx: RegistryContext) -> list:  # type: ignore[type-arg]
    return list(ctx.repo.audit_rows())


@pytest.fixture
def trail(registry: Registry) -> dict[str, str]:
    ids = _trail(registry)
    report = registry.ctx.audit.verify()
    assert report.ok and report.records == len(_rows(registry.ctx)) >= 20
    return ids


def test_intact_trail_verifies_and_records_every_change(registry: Registry,
                                                        trail: dict[str, str]) -> None:
    """G-REG-2..4, G-SEC-1: every watchlist change is in the trail, by named user, in order."""
    actions = [r.action for r in _rows(registry.ctx) if r.entry_id is not None]
    assert actions == ["propose", "approve", "propose", "approve", "propose", "correct",
                       "reoffence", "reject", "erase"]
    assert registry.ctx.audit.verify().ok


def test_edited_record_is_named(registry: Registry, trail: dict[str, str]) -> None:
    """G-SEC-2/G-REG-2: an approval's recorded reason cannot be rewritten unnoticed."""
    rows = _rows(registry.ctx)
    target = next(r for r in rows if r.action == "approve")
    with _raw_audit(registry.ctx) as raw:
        # The trail holds the reason's hash (G-RET-1); an insider swaps in another reason's.
        recorded = json.loads(target.details)["reason_sha256"]
        raw.execute("UPDATE records SET details = ? WHERE seq = ?",
                    (target.details.replace(recorded, text_sha256("verbal report")), target.seq))
    report = registry.reopen().audit.verify()
    assert not report.ok and report.problem is not None
    assert report.problem.seq == target.seq
    assert "edited" in report.problem.reason
    assert report.records == target.seq - 1


def test_deleted_middle_record_is_named(registry: Registry, trail: dict[str, str]) -> None:
    """G-SEC-2/G-REG-4: a rejection (an erasure) cannot be made to disappear from history."""
    rows = _rows(registry.ctx)
    target = next(r for r in rows if r.action == "reject")
    assert target.seq < rows[-1].seq
    with _raw_audit(registry.ctx) as raw:
        raw.execute("DELETE FROM records WHERE seq = ?", (target.seq,))
    report = registry.reopen().audit.verify()
    assert report.problem is not None and report.problem.seq == target.seq
    assert f"record {target.seq} is missing" in report.problem.reason


def test_swapped_records_are_caught_at_the_first(registry: Registry,
                                                  trail: dict[str, str]) -> None:
    """G-SEC-2: re-ordering history (contents swapped, seq kept) is caught where it starts."""
    rows = _rows(registry.ctx)
    first = next(r for r in rows if r.action == "correct")
    second = next(r for r in rows if r.action == "erase")
    columns = ("at", "actor", "action", "entry_id", "details", "prev_hash", "hash")
    assignments = ", ".join(f"{c} = ?" for c in columns)
    with _raw_audit(registry.ctx) as raw:
        for row, other in ((first, second), (second, first)):
            raw.execute(f"UPDATE records SET {assignments} WHERE seq = ?",
                        (*(getattr(other, c) for c in columns), row.seq))
    ctx = registry.reopen()
    assert [r.action for r in _rows(ctx)][first.seq - 1] == "erase"  # the edit took effect
    report = ctx.audit.verify()
    assert report.problem is not None and report.problem.seq == first.seq


def test_deleted_last_record_is_caught_by_the_head_anchor(registry: Registry,
                                                         trail: dict[str, str]) -> None:
    """G-SEC-2: cutting records off the end leaves a valid chain; audit.head catches it."""
    last = _rows(registry.ctx)[-1]
    assert registry.ctx.paths.audit_head.read_text().split() == [str(last.seq), last.hash]
    with _raw_audit(registry.ctx) as raw:
        raw.execute("DELETE FROM records WHERE seq = ?", (last.seq,))
    report = registry.reopen().audit.verify()
    assert report.problem is not None and report.problem.seq == last.seq
    assert "deleted" in report.problem.reason


def test_truncation_stays_detected_after_opening_as_the_cli_does(registry: Registry,
                                                                trail: dict[str, str]) -> None:
    """G-SEC-2: `mamoru audit verify` opens with recover(); it must not re-anchor a cut trail."""
    last = _rows(registry.ctx)[-1]
    with _raw_audit(registry.ctx) as raw:
        raw.execute("DELETE FROM records WHERE seq = ?", (last.seq,))
    registry.ctx.close()
    with open_registry_from(registry.settings) as ctx:
        report = ctx.audit.verify()
        assert report.problem is not None and report.problem.seq == last.seq
        # A later legitimate write reuses the deleted seq; the cut must still show.
        watchlist.correct(ctx, actor=ctx.repo.user_by_name("mgr1"),  # type: ignore[arg-type]
                          entry_id=trail["kept"], reason="typo", now=T0 + timedelta(days=40),
                          features="navy cap")
        watchlist.correct(ctx, actor=ctx.repo.user_by_name("mgr1"),  # type: ignore[arg-type]
                          entry_id=trail["kept"], reason="typo", now=T0 + timedelta(days=41),
                          features="navy cap.")
        report = ctx.audit.verify()
        assert not report.ok and report.problem is not None
        assert report.problem.seq == last.seq


def test_report_counts_without_names_or_templates(registry: Registry,
                                                  trail: dict[str, str]) -> None:
    """G-SHR-4: an outside auditor can count registrations and erasures, but reads no one."""
    templates = [t.vector for t in registry.ctx.repo.templates(trail["kept"])]
    assert templates
    report = registry.ctx.audit.report(T0 - timedelta(days=1), T0 + timedelta(days=365))
    assert report["registrations_proposed"] == 3
    assert report["approvals"] == 2
    assert report["rejections"] == 1
    assert report["corrections"] == 1
    assert report["reoffences"] == 1
    assert report["erasures"] == 1
    assert report["expiries"] == 0
    assert report["by_action"]["propose"] == 3
    only_first_day = registry.ctx.audit.report(T0, T0 + timedelta(days=1))
    assert only_first_day["registrations_proposed"] == 3 and only_first_day["erasures"] == 0

    text = json.dumps(report, ensure_ascii=False)
    trail_text = "\n".join(f"{r.actor} {r.action} {r.entry_id} {r.details}"
                           for r in _rows(registry.ctx))
    for blob in (text, trail_text):
        for secret in (NAME, "山田太郎", "Yamada", "navy cap", "scar"):
            assert secret not in blob
        data = blob.encode()
        for vector in templates:
            assert vector.hex() not in blob
            assert all(vector[i : i + 16] not in data for i in range(0, len(vector) - 15))


def test_triggers_refuse_edits_through_the_application_connection(registry: Registry,
                                                                  trail: dict[str, str]) -> None:
    """G-SEC-2: the trail is append-only even for the application's own connection."""
    connection = registry.ctx.repo.connection
    count = len(_rows(registry.ctx))
    with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
        connection.execute("UPDATE audit.records SET actor = 'nobody' WHERE seq = 2")
    with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
        connection.execute("DELETE FROM audit.records WHERE seq = ?", (count,))
    with pytest.raises(sqlcipher3.DatabaseError, match="append-only"):
        connection.execute("DELETE FROM audit.records")
    assert len(_rows(registry.ctx)) == count
    assert registry.ctx.audit.verify().ok
    assert Action.ERASE.value in {r.action for r in _rows(registry.ctx)}

"""Breach incidents and stop-use rights: the same behaviour on SQLCipher and PostgreSQL.

Issue 15: `BreachRepository` (an incident as opened, its rule-7 triage and its
containment and reporting steps, G-BRE-1..4) and `StopUseRepository` (who may
ask for use to stop after a reportable leak, G-BRE-4 / APPI 35(5)) exercised
through their protocol methods only, on both back-ends (`backend` fixture). On
PostgreSQL who discovered the leak, how, the summary and each step's details
are sealed by the application;
`test_postgres_seals_incident_text_bound_to_its_row` reads the raw rows.

The user and the entries a stop-use right refers to are made through their own
protocols (the users and entries stores are composed on PostgreSQL too).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kernel.errors import NotFoundError, SealedIntegrityError
from registry.domain import (
    BreachIncident,
    Containment,
    Entry,
    EntryState,
    Ground,
    RecordedAction,
    RegistryCounts,
    Role,
    StopUseRight,
    Triage,
)
from registry.storage.postgres.breach import PostgresBreach, PostgresStopUse
from registry.storage.postgres.entries import PostgresEntries
from registry.storage.postgres.users import PostgresUsers
from tests.registry.backends import Backend

T0 = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DISCOVERER = "店長 佐藤花子"  # personal: must never reach PostgreSQL in the clear
HOW = "バックアップ用USBメモリの紛失に気付いた"
SUMMARY = "登録者3名分の顔画像を含む可能性"
STEP_DETAIL = "箱の停止: 佐藤が実施"
COUNTS = RegistryCounts(entries=2, images=4, templates=6, named_entries=1, partners=1,
                        by_state={"active": 2, "erased": 1})


def open_repo(backend: Backend) -> Any:
    return backend.open(PostgresUsers, PostgresEntries, PostgresBreach, PostgresStopUse)


def incident(incident_id: str = "BR-20260310-a1b2c3", *, discovered_at: datetime = T0,
             triage: Triage | None = None, affected: tuple[str, ...] = ("E-1", "E-2"),
             ) -> BreachIncident:
    return BreachIncident(
        incident_id=incident_id, store_id="s1", discovered_at=discovered_at,
        discovered_by=DISCOVERER, how=HOW, summary=SUMMARY, opened_by="mgr1",
        opened_at=discovered_at + HOUR, counts=COUNTS, affected=affected, triage=triage,
        actions=())


def add_entries(repo: Any, *entry_ids: str) -> None:
    """The entries a stop-use right refers to (a foreign key on both back-ends)."""
    user = repo.add_user("mgr1", Role.MANAGER, "argon2-hash", T0)
    for entry_id in entry_ids:
        repo.add_entry(Entry(
            entry_id=entry_id, state=EntryState.ACTIVE, store_id="s1", features="黒い帽子",
            display_name="山田 太郎", proposed_by=user.user_id, proposed_at=T0,
            decided_by=user.user_id, decided_at=T0 + HOUR, decision_reason="被害届あり",
            expires_at=T0 + timedelta(days=365), revision=1, closed_at=None, closed_reason=""))


# --- BreachRepository -------------------------------------------------------------------------

def test_an_opened_incident_reads_back_as_written(backend: Backend) -> None:
    """G-BRE-2: who discovered it, when, how, and what the registry held, all kept."""
    repo = open_repo(backend)
    opened = incident()
    with repo.unit_of_work():
        repo.add_breach_incident(opened)
    assert repo.breach_incident(opened.incident_id) == opened
    assert repo.breach_incident("BR-20260310") is None  # a prefix is the service's business
    assert repo.breach_incident("BR-nope") is None
    assert repo.breach_incidents() == [opened]


def test_incidents_list_earliest_discovery_first(backend: Backend) -> None:
    repo = open_repo(backend)
    later, earlier = incident("BR-b", discovered_at=T0 + HOUR), incident("BR-c")
    tie = incident("BR-a")  # discovered at the same moment as BR-c: ordered by id
    triaged = incident("BR-d", discovered_at=T0 - HOUR,
                       triage=Triage((Ground.OVER_1000,), "千人超", "mgr1", T0))
    for one in (later, earlier, tie, triaged):
        repo.add_breach_incident(one)
    assert [i.incident_id for i in repo.breach_incidents()] == ["BR-d", "BR-a", "BR-c", "BR-b"]
    assert repo.breach_incident("BR-d") == triaged  # a triage given at opening is kept


def test_an_incident_with_steps_is_refused_at_opening(backend: Backend) -> None:
    repo = open_repo(backend)
    step = RecordedAction(Containment.STOP_EDGE, "mgr1", T0, {})
    with pytest.raises(ValueError, match="one by one"):
        repo.add_breach_incident(replace(incident(), actions=(step,)))
    assert repo.breach_incidents() == []


def test_a_duplicate_incident_id_is_refused(backend: Backend) -> None:
    repo = open_repo(backend)
    repo.add_breach_incident(incident())
    with pytest.raises(Exception):  # noqa: B017  (the driver's integrity error, each its own)
        with repo.unit_of_work():
            repo.add_breach_incident(replace(incident(), summary="other"))
    assert repo.breach_incident(incident().incident_id) == incident()


def test_triage_is_recorded_and_replaced(backend: Backend) -> None:
    """G-BRE-1: the rule-7 test, who made it and when; a second one replaces the first."""
    repo = open_repo(backend)
    repo.add_breach_incident(incident())
    first = Triage((Ground.SENSITIVE, Ground.MALICIOUS), "不正アクセスの痕跡", "mgr1", T0 + HOUR)
    repo.set_breach_triage(incident().incident_id, first)
    stored = repo.breach_incident(incident().incident_id)
    assert stored.triage == first
    assert stored.deadlines.final == T0.date() + timedelta(days=59)  # malicious: 60 days
    second = Triage((), "暗号化済み、鍵は別管理", "admin", T0 + 2 * HOUR)
    repo.set_breach_triage(incident().incident_id, second)
    assert repo.breach_incident(incident().incident_id).triage == second
    with pytest.raises(NotFoundError):
        repo.set_breach_triage("BR-nope", first)


def test_steps_are_kept_in_the_order_recorded(backend: Backend) -> None:
    """G-BRE-3: containment and reporting steps, each with its actor, time and details."""
    repo = open_repo(backend)
    repo.add_breach_incident(incident())
    repo.add_breach_incident(incident("BR-other"))
    steps = [
        RecordedAction(Containment.PRESERVE_EVIDENCE, "mgr1", T0 + 2 * HOUR,
                       {"file": "x.tar", "sha256": "ab" * 32, "chain_ok": True, "logs": []}),
        RecordedAction(Containment.DISABLE_DEVICES, "admin", T0 + HOUR,
                       {"devices": ["box-1", "box-2"]}),  # earlier time, recorded later
        RecordedAction(Containment.REPORT_SUBMITTED, "mgr1", T0 + 3 * HOUR,
                       {"report": "preliminary", "note": STEP_DETAIL}),
    ]
    for step in steps:
        repo.add_breach_action(incident().incident_id, step)
    stored = repo.breach_incident(incident().incident_id)
    assert stored.actions == tuple(steps)
    assert stored.submitted("preliminary") and not stored.submitted("final")
    assert repo.breach_incident("BR-other").actions == ()
    assert [i.actions for i in repo.breach_incidents()
            if i.incident_id == incident().incident_id] == [tuple(steps)]
    with pytest.raises(NotFoundError):
        repo.add_breach_action("BR-nope", steps[0])


def test_a_failed_unit_of_work_leaves_no_incident_step_or_triage(backend: Backend) -> None:
    repo = open_repo(backend)
    repo.add_breach_incident(incident())
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.add_breach_incident(incident("BR-rolled-back"))
        repo.add_breach_action(incident().incident_id,
                               RecordedAction(Containment.STOP_EDGE, "mgr1", T0, {"outcome": "ok"}))
        repo.set_breach_triage(incident().incident_id, Triage((), "x", "mgr1", T0))
        raise RuntimeError("the audit record failed")
    assert repo.breach_incidents() == [incident()]


# --- StopUseRepository ------------------------------------------------------------------------

def test_stop_use_rights_are_marked_once_and_listed_oldest_first(backend: Backend) -> None:
    """G-BRE-4: a mark per (entry, incident); a second mark of the same pair changes nothing."""
    repo = open_repo(backend)
    add_entries(repo, "E-1", "E-2")
    repo.add_breach_incident(incident("BR-1"))
    repo.add_breach_incident(incident("BR-2"))
    assert repo.stop_use_rights() == []
    late = StopUseRight("E-1", "BR-2", T0 + 2 * HOUR)
    early = [StopUseRight("E-2", "BR-1", T0 + HOUR), StopUseRight("E-1", "BR-1", T0 + HOUR)]
    assert repo.add_stop_use_right(late) is True
    assert all(repo.add_stop_use_right(r) for r in early)
    assert repo.add_stop_use_right(replace(late, since=T0 + 9 * HOUR)) is False  # kept as is
    both = [StopUseRight("E-1", "BR-1", T0 + HOUR), StopUseRight("E-2", "BR-1", T0 + HOUR),
            late]  # by time, then incident, then entry
    assert repo.stop_use_rights() == both
    assert repo.stop_use_rights("E-1") == [both[0], late]
    assert repo.stop_use_rights("E-2") == [both[1]]
    assert repo.stop_use_rights("E-none") == []


def test_a_failed_unit_of_work_leaves_no_stop_use_right(backend: Backend) -> None:
    repo = open_repo(backend)
    add_entries(repo, "E-1")
    repo.add_breach_incident(incident("BR-1"))
    with pytest.raises(RuntimeError), repo.unit_of_work():
        assert repo.add_stop_use_right(StopUseRight("E-1", "BR-1", T0))
        raise RuntimeError("the audit record failed")
    assert repo.stop_use_rights() == []


# --- sealing on PostgreSQL (issue 15) ---------------------------------------------------------

def test_postgres_seals_incident_text_bound_to_its_row(backend: Backend) -> None:
    """The server sees no discoverer, how, summary or step detail; a moved value won't open."""
    if backend.name != "postgres":
        pytest.skip("SQLCipher encrypts the whole file (tests/registry/test_encryption_at_rest.py)")
    repo = open_repo(backend)
    victim, other = incident("BR-victim"), replace(incident("BR-other"), discovered_by="警備員",
                                                   how="監視", summary="別件")
    repo.add_breach_incident(victim)
    repo.add_breach_incident(other)
    step = RecordedAction(Containment.STOP_EDGE, "mgr1", T0, {"outcome": STEP_DETAIL})
    for incident_id in ("BR-victim", "BR-victim", "BR-other"):
        repo.add_breach_action(incident_id, step)
    db = repo.connection
    raw = db.execute("SELECT discovered_by, how, summary FROM breach_incidents "
                     "WHERE incident_id = 'BR-victim'").fetchone()
    kept = db.execute("SELECT incident_id, discovered_by, summary FROM breach_incidents"
                      ).fetchall()
    for blob, clear in zip(raw, (DISCOVERER, HOW, SUMMARY), strict=True):
        assert isinstance(blob, bytes)
        assert clear.encode() not in blob and "佐藤".encode() not in blob
    details = db.execute("SELECT action_id, details FROM breach_actions ORDER BY action_id"
                         ).fetchall()
    assert all("佐藤".encode() not in bytes(d) and b"outcome" not in bytes(d)
               for _, d in details)
    # Someone with write access moves the victim's discoverer onto the other incident...
    db.execute("UPDATE breach_incidents SET discovered_by = %s WHERE incident_id = 'BR-other'",
               (raw[0],))
    with pytest.raises(SealedIntegrityError, match="breach_incidents.discovered_by") as refused:
        repo.breach_incident("BR-other")
    assert DISCOVERER not in str(refused.value)
    # ...or into another column of the same row...
    db.execute("UPDATE breach_incidents SET summary = %s WHERE incident_id = 'BR-victim'",
               (raw[1],))
    with pytest.raises(SealedIntegrityError, match="breach_incidents.summary"):
        repo.breach_incident("BR-victim")
    # ...or one step's details onto another step of the same incident (incidents put back).
    for key, by, summary in kept:
        db.execute("UPDATE breach_incidents SET discovered_by = %s, summary = %s"
                   " WHERE incident_id = %s", (by, summary, key))
    assert repo.breach_incident("BR-victim") == replace(victim, actions=(step, step))
    db.execute("UPDATE breach_actions SET details = %s WHERE action_id = %s",
               (details[0][1], details[1][0]))
    with pytest.raises(SealedIntegrityError, match="breach_actions.details") as refused:
        repo.breach_incidents()
    assert STEP_DETAIL not in str(refused.value)

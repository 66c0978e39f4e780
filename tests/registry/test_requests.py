"""The request and complaint desk (G-DSR-1..4, G-SHR-4) and periodic review (G-REV-1).

Real registries (SQLCipher files), real faces and the real engine: Obama is
registered at store A from one photo; he comes to the desk with another
photo (OBAMA2); Biden is a stranger. The joint-use tests' `world` (stores
A, B, C with their own keys, bundles carried as files) is reused for the
request that reaches the origin through the joint-use channel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from kernel.errors import ConflictError, RuleViolationError
from models.engine import FaceEngine
from registry.accounts import users
from registry.audit.trail import Action
from registry.config import RegistrySettings
from registry.domain import (
    EntryState,
    IdentityMethod,
    RefusalGround,
    RequestKind,
    RequestStatus,
    ReviewDecision,
    Role,
)
from registry.oversight.report import audit_report
from registry.requests import desk as requests
from registry.retention.expiry import run_expiry
from registry.watchlist import reviews
from registry.watchlist.reviews import SelfReviewError
from tests import REPO
from tests.registries import BIDEN, OBAMA, OBAMA2, PASSWORD, T0, Registry
from tests.registry.test_joint_use import _best, _sync
from tests.registry.world import NAME, World, image

DAY = timedelta(days=1)
CONTACT = "東京都港区1-2-3 090-1234-5678"


def _audit(ctx, action: Action) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(r.details) | {"_entry": r.entry_id} for r in ctx.repo.audit_rows()
            if r.action == action.value]


def _all_audit_text(ctx) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(f"{r.actor} {r.entry_id} {r.details}" for r in ctx.repo.audit_rows())


def _manager_at(world: World, member: str, name: str) -> None:
    ctx = world[member].ctx
    users.add_user(ctx.repo, ctx.audit, actor="test", username=name, role=Role.MANAGER,
                   password=PASSWORD, now=T0)
    admin = next(u for u in ctx.repo.users() if u.role is Role.ADMIN)
    users.record_training(ctx.repo, ctx.audit, admin=admin, username=name, now=T0)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --- G-DSR-1: found with a new photo; disclosure lists incidents, images, partners -----------


def test_person_at_origin_is_found_and_the_disclosure_lists_what_is_held(
        world: World, engines: dict[str, FaceEngine], face_data: Path) -> None:
    a = world["store-a"]
    engine = engines["yunet-sface"]
    _sync(world, "store-a", "store-b", T0 + DAY)  # B received his entry: a provision
    mgr = a.user("suzuki.mgr")
    request = requests.open_request(a.ctx, actor=mgr, kind=RequestKind.DISCLOSURE,
                                    identity_method=IdentityMethod.DRIVERS_LICENCE,
                                    contact=CONTACT, now=T0 + 2 * DAY)
    assert request.due_at == T0 + 2 * DAY + timedelta(days=14)
    before = _files(a.data_dir / "evidence")

    found = requests.search(a.ctx, engine, actor=mgr, request_id=request.request_id,
                            image=image(face_data, OBAMA2), now=T0 + 2 * DAY)

    assert found.outcome == "found" and found.found == (world.obama_at_a,)
    assert _files(a.data_dir / "evidence") == before  # the photo was not written
    searched = _audit(a.ctx, Action.REQUEST_SEARCHED)
    assert searched[-1]["outcome"] == "found" and searched[-1]["entry_ids"] == [world.obama_at_a]
    assert searched[-1]["request_id"] == request.request_id and not searched[-1]["photo_kept"]

    document = requests.disclosure(a.ctx, actor=mgr, request_id=request.request_id)
    text = document.to_markdown()
    assert document.entry is not None and document.entry["entry_id"] == world.obama_at_a
    assert [i["category"] for i in document.incidents] == ["theft"]
    assert "3 items, 4,200 yen" in text and NAME in text
    assert document.images and all(png.startswith(b"\x89PNG") for png in document.images.values())
    assert [p["to"] for p in document.provisions] == ["store-b"]
    assert "store-b" in text and "保存期限" in text and "Erased on" in text

    done = requests.answer(a.ctx, actor=mgr, request_id=request.request_id,
                           reason="document handed over", now=T0 + 3 * DAY)
    assert (done.status, done.answer) == (RequestStatus.ANSWERED, "disclosed")

    # a stranger's photo finds nothing, and that is recorded too
    other = requests.open_request(a.ctx, actor=mgr, kind=RequestKind.DISCLOSURE,
                                  identity_method=IdentityMethod.PASSPORT, contact="x@example.jp",
                                  now=T0 + 3 * DAY)
    nobody = requests.search(a.ctx, engine, actor=mgr, request_id=other.request_id,
                             image=image(face_data, BIDEN), now=T0 + 3 * DAY)
    assert nobody.outcome == "not_found" and nobody.found == ()
    last = _audit(a.ctx, Action.REQUEST_SEARCHED)[-1]
    assert (last["request_id"], last["outcome"], last["entry_ids"]) == (
        other.request_id, "not_found", [])
    empty = requests.disclosure(a.ctx, actor=mgr, request_id=other.request_id)
    assert empty.entry is None and "holds no personal data" in empty.to_markdown()

    trail = _all_audit_text(a.ctx)
    assert CONTACT not in trail and "x@example.jp" not in trail and NAME not in trail


# --- G-DSR-2 / G-SHR-4: a request at the partner reaches the origin; stop-use everywhere ------


def test_request_about_an_imported_copy_is_answered_by_the_origin_everywhere(
        world: World, engines: dict[str, FaceEngine], face_data: Path,
        probe: np.ndarray) -> None:
    a, b = world["store-a"], world["store-b"]
    engine = engines["yunet-sface"]
    threshold = engine.threshold
    _sync(world, "store-a", "store-b", T0 + DAY)
    _manager_at(world, "store-b", "ono.mgr")
    local_id = next(iter(b.ctx.repo.imported_entry_ids()))

    at_b = requests.open_request(b.ctx, actor=b.user("ono.mgr"), kind=RequestKind.STOP_USE,
                                 identity_method=IdentityMethod.MY_NUMBER_CARD, contact=CONTACT,
                                 now=T0 + 2 * DAY)
    found = requests.search(b.ctx, engine, actor=b.user("ono.mgr"), request_id=at_b.request_id,
                            image=image(face_data, OBAMA2), now=T0 + 2 * DAY)
    assert found.found == (local_id,)
    assert (found.request.status, found.request.forwarded_to) == (RequestStatus.FORWARDED,
                                                                  "store-a")
    with pytest.raises(ConflictError, match="store-a"):
        requests.answer(b.ctx, actor=b.user("ono.mgr"), request_id=at_b.request_id,
                        reason="not ours to decide", now=T0 + 2 * DAY)

    _sync(world, "store-b", "store-a", T0 + 3 * DAY)  # the request travels B -> A
    (at_a,) = [r for r in requests.store(a.ctx).all() if r.origin_member == "store-b"]
    assert (at_a.entry_id, at_a.kind, at_a.status) == (world.obama_at_a, RequestKind.STOP_USE,
                                                       RequestStatus.OPEN)
    assert at_a.contact == "" and at_a.due_at == at_b.due_at  # the contact stays at B
    assert _best(a, probe) >= threshold and _best(b, probe) >= threshold

    requests.answer(a.ctx, actor=a.user("sato.mgr"), request_id=at_a.request_id,
                    reason="the person asks to stop; suspended while checked", now=T0 + 4 * DAY)
    assert _best(a, probe) < threshold  # suspended at the origin at once
    _sync(world, "store-a", "store-b", T0 + 4 * DAY)  # one sync: suspension and answer
    assert _best(b, probe) < threshold

    closed_b = requests.store(b.ctx).get(at_b.request_id)
    closed_a = requests.store(a.ctx).get(at_a.request_id)
    assert closed_a is not None and closed_b is not None
    assert (closed_a.status, closed_a.answer) == (RequestStatus.ANSWERED, "suspended")
    assert (closed_b.status, closed_b.answer) == (RequestStatus.ANSWERED, "suspended")
    assert not requests.store(a.ctx).answers_to_send("store-b")  # B's receipt acknowledged it
    assert not requests.store(b.ctx).forwards_to_send("store-a")
    assert CONTACT not in _all_audit_text(a.ctx)


# --- overdue requests, refusals, complaints, the auditor's counts ------------------------------


def test_overdue_request_is_listed_and_late_answers_are_counted(registry: Registry) -> None:
    ctx, mgr = registry.ctx, registry.user("mgr1")
    late = requests.open_request(ctx, actor=mgr, kind=RequestKind.ERASURE,
                                 identity_method=IdentityMethod.PASSPORT, contact=CONTACT, now=T0)
    timely = requests.open_request(ctx, actor=mgr, kind=RequestKind.COMPLAINT,
                                   identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                   summary="staff followed me", now=T0 + 10 * DAY)
    overdue = requests.list_requests(ctx, actor=mgr, now=T0 + 15 * DAY, overdue_only=True)
    assert [r.request_id for r in overdue] == [late.request_id]
    assert requests.overdue_count(ctx, T0 + 13 * DAY) == 0

    requests.answer(ctx, actor=mgr, request_id=late.request_id, reason="nothing held",
                    now=T0 + 16 * DAY)
    with pytest.raises(Exception, match="needs manager"):  # G-DSR-3: a manager answers it
        requests.assign(ctx, actor=mgr, request_id=timely.request_id, assignee="staff",
                        now=T0 + 10 * DAY)
    assigned = requests.assign(ctx, actor=mgr, request_id=timely.request_id, assignee="mgr2",
                               now=T0 + 10 * DAY)
    assert assigned.assigned_to == registry.user("mgr2").user_id
    requests.answer(ctx, actor=registry.user("mgr2"), request_id=timely.request_id,
                    reason="apologised; staff retrained", now=T0 + 11 * DAY)
    report = audit_report(ctx, actor=registry.user("auditor"), start=T0 - DAY,
                          end=T0 + 30 * DAY, now=T0 + 30 * DAY)
    assert report["requests"]["erasure"]["answered_late"] == 1
    assert report["requests"]["complaint"]["answered_in_time"] == 1
    assert report["requests"]["disclosure"]["opened"] == 0
    assert report["requests_overdue_now"] == 0
    assert CONTACT not in json.dumps(report, ensure_ascii=False)


def test_refusal_needs_a_ground_of_the_law_for_that_kind(registry: Registry) -> None:
    ctx, mgr = registry.ctx, registry.user("mgr1")
    asked = requests.open_request(ctx, actor=mgr, kind=RequestKind.DISCLOSURE,
                                  identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                  by_agent=True, now=T0)
    with pytest.raises(RuleViolationError, match="appi_33_2_i"):
        requests.refuse(ctx, actor=mgr, request_id=asked.request_id,
                        ground=RefusalGround.USE_LAWFUL, reason="x", now=T0)
    with pytest.raises(RuleViolationError, match="reason"):
        requests.refuse(ctx, actor=mgr, request_id=asked.request_id,
                        ground=RefusalGround.HARM_TO_PERSON_OR_OTHERS, reason=" ", now=T0)
    refused = requests.refuse(ctx, actor=mgr, request_id=asked.request_id,
                              ground=RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                              reason="disclosure would endanger the witness", now=T0)
    assert refused.status is RequestStatus.REFUSED
    complaint = requests.open_request(ctx, actor=mgr, kind=RequestKind.COMPLAINT,
                                      identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                      summary="rude", now=T0)
    with pytest.raises(RuleViolationError, match="always answered"):
        requests.refuse(ctx, actor=mgr, request_id=complaint.request_id,
                        ground=RefusalGround.USE_LAWFUL, reason="no", now=T0)
    with pytest.raises(Exception, match="manager"):
        requests.open_request(ctx, actor=registry.user("staff"), kind=RequestKind.DISCLOSURE,
                              identity_method=IdentityMethod.PASSPORT, contact=CONTACT, now=T0)


def test_nuisance_only_entry_needs_a_case_specific_harm_justification_to_refuse(
        registry: Registry) -> None:
    """G-DSR-1: "Nuisance-act entries do not automatically qualify for the exception"."""
    from registry.domain import OffenceCategory
    from registry.requests.desk import NuisanceExceptionError
    from registry.watchlist import approval
    from registry.watchlist.entries import add_reoffence
    from tests.registries import incident
    ctx, mgr = registry.ctx, registry.user("mgr2")
    proposal = approval.propose(
        ctx, registry.engine, registry.settings.quality.registration,
        actor=registry.user("staff"),
        photos=[approval.Photo("obama", registry.image(OBAMA))],
        incident=incident(category=OffenceCategory.NUISANCE), features="", now=T0)
    approval.approve(ctx, actor=registry.user("mgr1"), entry_id=proposal.entry_id,
                     reason="repeated threats recorded; police consulted", now=T0)
    asked = requests.open_request(ctx, actor=mgr, kind=RequestKind.DISCLOSURE,
                                  identity_method=IdentityMethod.PASSPORT, contact=CONTACT, now=T0)
    requests.search(ctx, registry.engine, actor=mgr, request_id=asked.request_id,
                    image=registry.image(OBAMA2), now=T0)
    for ground in (RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                   RefusalGround.SERIOUS_BUSINESS_HINDRANCE):
        with pytest.raises(NuisanceExceptionError, match="nuisance acts only.*G-DSR-1"):
            requests.refuse(ctx, actor=mgr, request_id=asked.request_id, ground=ground,
                            reason="he is a troublemaker", now=T0)
        with pytest.raises(NuisanceExceptionError):
            requests.refuse(ctx, actor=mgr, request_id=asked.request_id, ground=ground,
                            reason="he is a troublemaker", harm_justification="nuisance",
                            now=T0)
    assert requests.store(ctx).get(asked.request_id).status is RequestStatus.OPEN  # type: ignore[union-attr]
    why = ("he threatened the cashier by name on 3 May; disclosing the witness statement "
           "would identify her")
    refused = requests.refuse(ctx, actor=mgr, request_id=asked.request_id,
                              ground=RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                              reason="witness at risk", harm_justification=why, now=T0)
    assert refused.status is RequestStatus.REFUSED and why in refused.answer_reason
    record = _audit(ctx, Action.REQUEST_REFUSED)[-1]
    assert record["nuisance_harm_justified"] is True and "cashier" not in _all_audit_text(ctx)

    # a theft besides: the harm ground may rest on it, as for any other entry
    add_reoffence(ctx, actor=mgr, entry_id=proposal.entry_id, incident=incident(T0 + DAY),
                  now=T0 + DAY)
    again = requests.open_request(ctx, actor=mgr, kind=RequestKind.DISCLOSURE,
                                  identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                  now=T0 + DAY)
    requests.search(ctx, registry.engine, actor=mgr, request_id=again.request_id,
                    image=registry.image(OBAMA2), now=T0 + DAY)
    assert requests.refuse(ctx, actor=mgr, request_id=again.request_id,
                           ground=RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                           reason="the damage report names the witness",
                           now=T0 + DAY).status is RequestStatus.REFUSED


def test_correction_and_erasure_requests_change_the_entry(registry: Registry) -> None:
    ctx, mgr = registry.ctx, registry.user("mgr2")
    entry_id = registry.register(OBAMA, features="紺のジャンパー")
    fix = requests.open_request(ctx, actor=mgr, kind=RequestKind.CORRECTION,
                                identity_method=IdentityMethod.PASSPORT, contact=CONTACT, now=T0)
    requests.search(ctx, registry.engine, actor=mgr, request_id=fix.request_id,
                    image=registry.image(OBAMA2), now=T0)
    requests.answer(ctx, actor=mgr, request_id=fix.request_id, reason="jacket was black",
                    features="黒のジャンパー", now=T0)
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.features == "黒のジャンパー"
    gone = requests.open_request(ctx, actor=mgr, kind=RequestKind.ERASURE,
                                 identity_method=IdentityMethod.PASSPORT, contact=CONTACT, now=T0)
    requests.search(ctx, registry.engine, actor=mgr, request_id=gone.request_id,
                    image=registry.image(OBAMA2), now=T0)
    done = requests.answer(ctx, actor=mgr, request_id=gone.request_id, reason="no re-offence",
                           now=T0)
    entry = ctx.repo.entry(entry_id)
    assert done.answer == "erased" and entry is not None and entry.state is EntryState.ERASED
    assert registry.matches(OBAMA2) == {}


def test_settings_refuse_unsafe_periods() -> None:
    for bad in ({"request_response_days": 0}, {"request_response_days": 31},
                {"review_interval_days": 30}, {"review_interval_days": 1000},
                {"request_record_days": 29}, {"request_record_days": 366}):
        with pytest.raises(ValueError):
            RegistrySettings(**bad)  # type: ignore[arg-type]


# --- issue 10: the desk's personal data has a lifetime ---------------------------------------


def test_closed_request_contact_and_summary_are_wiped_after_their_lifetime(
        registry: Registry) -> None:
    """`mamoru expire` blanks a closed request's contact, summary and answer text
    `registry.request_record_days` (default 90) after it was answered; the kind, dates
    and outcome stay, so the auditor's counts do not change. An open one keeps its contact."""
    ctx, mgr = registry.ctx, registry.user("mgr1")
    assert ctx.policy.request_record_days == 90
    complaint = requests.open_request(ctx, actor=mgr, kind=RequestKind.COMPLAINT,
                                      identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                      summary="staff followed me to the car park", now=T0)
    requests.answer(ctx, actor=mgr, request_id=complaint.request_id,
                    reason="apologised by phone to 090-1234-5678", now=T0 + DAY)
    still_open = requests.open_request(ctx, actor=mgr, kind=RequestKind.ERASURE,
                                       identity_method=IdentityMethod.PASSPORT,
                                       contact="open@example.jp", now=T0)
    counts_before = audit_report(ctx, actor=registry.user("auditor"), start=T0 - DAY,
                                 end=T0 + 2 * DAY, now=T0 + 200 * DAY)["requests"]

    early = run_expiry(ctx, now=T0 + DAY + 89 * DAY)
    assert early.requests_wiped == ()
    kept = requests.store(ctx).get(complaint.request_id)
    assert kept is not None and kept.contact == CONTACT

    assert run_expiry(ctx, now=T0 + 92 * DAY, dry_run=True).requests_wiped == (
        complaint.request_id,)
    late = run_expiry(ctx, now=T0 + 92 * DAY)
    assert late.requests_wiped == (complaint.request_id,)
    wiped = requests.store(ctx).get(complaint.request_id)
    assert wiped is not None
    assert (wiped.contact, wiped.summary, wiped.answer_reason) == ("", "", "")
    assert (wiped.kind, wiped.status, wiped.answer, wiped.received_at, wiped.answered_at) == (
        RequestKind.COMPLAINT, RequestStatus.ANSWERED, "replied", T0, T0 + DAY)
    other = requests.store(ctx).get(still_open.request_id)
    assert other is not None and other.contact == "open@example.jp"  # the answer must reach them
    record = _audit(ctx, Action.REQUEST_RECORDS_WIPED)[-1]
    assert record["request_ids"] == [complaint.request_id] and record["count"] == 1
    assert CONTACT not in _all_audit_text(ctx) and "car park" not in _all_audit_text(ctx)
    assert audit_report(ctx, actor=registry.user("auditor"), start=T0 - DAY, end=T0 + 2 * DAY,
                        now=T0 + 200 * DAY)["requests"] == counts_before
    assert run_expiry(ctx, now=T0 + 93 * DAY).requests_wiped == ()  # idempotent
    raw = b"".join(p.read_bytes() for p in registry.data_dir.rglob("*") if p.is_file())
    assert b"car park" not in raw  # SQLCipher: never in clear on disk either


# --- G-REV-1: periodic review -------------------------------------------------------------------


def test_review_comes_due_and_is_decided_by_another_manager(registry: Registry) -> None:
    ctx = registry.ctx
    entry_id = registry.register(OBAMA, proposer="mgr1", approver="mgr2")
    assert reviews.overdue_count(ctx, T0 + 364 * DAY) == 0
    due = reviews.due_reviews(ctx, actor=registry.user("auditor"), now=T0 + 366 * DAY)
    assert [r.entry.entry_id for r in due] == [entry_id]
    with pytest.raises(SelfReviewError, match="mgr1 proposed"):
        reviews.review(ctx, actor=registry.user("mgr1"), entry_id=entry_id,
                       decision=ReviewDecision.KEEP, reason="still needed", now=T0 + 366 * DAY)
    with pytest.raises(RuleViolationError, match="reason"):
        reviews.review(ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                       decision=ReviewDecision.KEEP, reason="", now=T0 + 366 * DAY)
    reviews.review(ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                   decision=ReviewDecision.KEEP, reason="re-offence risk unchanged",
                   now=T0 + 366 * DAY)
    assert reviews.overdue_count(ctx, T0 + 700 * DAY) == 0
    assert reviews.overdue_count(ctx, T0 + 732 * DAY) == 1
    reviews.review(ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                   decision=ReviewDecision.WITHDRAW, reason="two years without incident",
                   now=T0 + 732 * DAY)
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.WITHDRAWN
    report = audit_report(ctx, actor=registry.user("auditor"), start=T0, end=T0 + 800 * DAY,
                          now=T0 + 800 * DAY)
    assert report["reviews"] == {"kept": 1, "withdrawn": 1, "overdue_now": 0}


# --- the CLI ---------------------------------------------------------------------------------


def _mamoru(data_dir: Path, *args: str, stdin: str = "",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(data_dir),
           "MAMORU_PASSWORD": PASSWORD, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], cwd=REPO, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.cli
def test_cli_opens_lists_overdue_and_answers(registry: Registry, face_data: Path) -> None:
    ctx = registry.ctx
    from registry.clock import utc_now
    old = requests.open_request(ctx, actor=registry.user("mgr1"), kind=RequestKind.OBJECTION,
                                identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                                now=utc_now() - 20 * DAY)
    ctx.close()
    data = registry.data_dir
    opened = _mamoru(data, "request", "open", "--as", "mgr1", "--kind", "disclosure",
                     "--identity", "drivers_licence", "--json", stdin="tel 03-1111-2222\n")
    assert opened.returncode == 0, opened.stderr
    new_id = json.loads(opened.stdout[opened.stdout.index("{"):])["request_id"]
    overdue = _mamoru(data, "request", "list", "--overdue", "--as", "mgr1")
    assert overdue.returncode == 0, overdue.stderr
    assert old.request_id[:12] in overdue.stdout and "OVERDUE" in overdue.stdout
    assert new_id[:12] not in overdue.stdout and CONTACT not in overdue.stdout
    searched = _mamoru(data, "request", "search", new_id[:8], str(face_data / BIDEN),
                       "--as", "mgr1")
    assert searched.returncode == 0, searched.stderr
    assert "not found" in searched.stdout
    answered = _mamoru(data, "request", "answer", new_id[:8], "--as", "mgr1", "--reason",
                       "nothing held", "--out", str(data.parent / "to-requester"))
    assert answered.returncode == 0, answered.stderr
    assert "holds no personal data" in (data.parent / "to-requester" / "disclosure.md").read_text()
    refused = _mamoru(data, "request", "refuse", old.request_id[:8], "--as", "mgr1",
                      "--ground", "appi_33_2_i", "--reason", "x")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    shown = _mamoru(data, "request", "show", new_id[:8], "--as", "mgr1")
    assert "tel 03-1111-2222" in shown.stdout and "answered" in shown.stdout


@pytest.mark.cli
def test_cli_disclosure_for_a_found_person_writes_incidents_masked_images_and_partners(
        world: World, face_data: Path, tmp_path: Path) -> None:
    """G-DSR-1 through `mamoru request search` / `answer --out`: what is held, to whom given."""
    a = world["store-a"]
    _sync(world, "store-a", "store-b", T0 + DAY)  # B received his entry: a provision
    for store in world.stores.values():
        store.ctx.close()
    env = {"MAMORU_REGISTRY__STORE_ID": "store-a",
           "MAMORU_REGISTRY__JOINT_USE_SCHEME": str(world.root / "scheme.json")}
    opened = _mamoru(a.data_dir, "request", "open", "--as", "suzuki.mgr", "--kind",
                     "disclosure", "--identity", "drivers_licence", "--json",
                     stdin=f"{CONTACT}\n", env=env)
    assert opened.returncode == 0, opened.stderr
    request_id = json.loads(opened.stdout[opened.stdout.index("{"):])["request_id"]
    searched = _mamoru(a.data_dir, "request", "search", request_id[:8],
                       str(face_data / OBAMA2), "--as", "suzuki.mgr", env=env)
    assert searched.returncode == 0, searched.stderr
    assert f"found: entry {world.obama_at_a}" in searched.stdout
    out = tmp_path / "to-requester"
    answered = _mamoru(a.data_dir, "request", "answer", request_id[:8], "--as", "suzuki.mgr",
                       "--reason", "document handed over at the counter", "--out", str(out),
                       env=env)
    assert answered.returncode == 0, answered.stderr
    assert "outside mamoru's custody" in answered.stdout and "disclosed" in answered.stdout

    text = (out / "disclosure.md").read_text(encoding="utf-8")
    incidents = text.split("## 事案 / Incidents", 1)[1].split("## ", 1)[0]
    assert "theft" in incidents and "3 items, 4,200 yen" in incidents
    images = text.split("## 画像", 1)[1].split("## ", 1)[0]
    listed = re.findall(r"^- (evidence-\d+\.png)$", images, re.M)
    assert listed and sorted(listed) == sorted(p.name for p in out.glob("*.png"))
    for name in listed:
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG")
        assert (out / name).stat().st_mode & 0o077 == 0  # written private
    partners = text.split("Provided to (joint use)", 1)[1].split("## ", 1)[0]
    assert "store-b" in partners and "store-c" not in partners  # C (kansai) never received it
    assert world.obama_at_a in text and NAME in text
    assert CONTACT not in text  # the requester's contact is not part of the document


# --- the tablet: the overdue badge and the reviews past due ----------------------------------


def test_tablet_shows_overdue_badge_and_reviews_past_due(registry: Registry) -> None:
    from tests.registry.people import Clock, log_in, start_app
    ctx = registry.ctx
    entry_id = registry.register(OBAMA, proposer="mgr1", approver="mgr2")
    requests.open_request(ctx, actor=registry.user("mgr1"), kind=RequestKind.COMPLAINT,
                          identity_method=IdentityMethod.PASSPORT, contact=CONTACT,
                          summary="rude staff", now=T0)
    clock = Clock(T0 + 400 * DAY)  # past the request's due date and the review date
    with start_app(registry, clock) as client:
        mgr2 = log_in(client, "mgr2")
        page = mgr2.get("/requests")
        assert page.status_code == 200, page.text
        assert re.search(r'id="badge-requests"[^>]*>1<', page.text)  # the nav's overdue badge
        assert f'id="review-{entry_id}"' in page.text and CONTACT not in page.text
        watch = mgr2.get("/watchlist")
        assert re.search(r'id="badge-requests"[^>]*>1<', watch.text)  # on every manager page
        staff = log_in(client, "staff").get("/alerts")
        assert "badge-requests" not in staff.text
        refused = log_in(client, "mgr1").post(f"/reviews/{entry_id}/keep",
                                              data={"reason": "still needed"})
        assert refused.status_code == 403 and "mgr1 proposed" in refused.text  # as self-approval
        kept = mgr2.post(f"/reviews/{entry_id}/keep", data={"reason": "still needed"},
                         follow_redirects=False)
        assert kept.status_code == 303
        after = mgr2.get("/requests")
        assert f'id="review-{entry_id}"' not in after.text


def test_tablet_desk_opens_searches_in_memory_answers_and_refuses(
        registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """G-DSR-1..4 on the tablet: a manager opens a request, searches with a photo (parsed
    in memory, never written: issue 10), prints the disclosure and answers; a refusal of a
    nuisance-only entry's disclosure without the concrete harm is refused (G-DSR-1)."""
    import tempfile

    import cv2

    from tests.registry.people import Clock, log_in, start_app
    entry_id = registry.register(OBAMA)
    spooled: list[object] = []
    real = tempfile.TemporaryFile

    def watched(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        spooled.append(args)
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(tempfile, "TemporaryFile", watched)
    photo = cv2.resize(registry.image(OBAMA2), None, fx=2.0, fy=2.0)
    noise = np.random.default_rng(0).integers(0, 8, photo.shape, dtype=np.uint8)
    ok, png = cv2.imencode(".png", cv2.add(photo, noise))
    assert ok and len(png.tobytes()) > 2 * 1024 * 1024  # past Starlette's default 1 MB spool
    with start_app(registry, Clock(T0 + DAY)) as client:
        mgr = log_in(client, "mgr2")
        staff = log_in(client, "staff")
        form = {"kind": "disclosure", "identity_method": "passport", "contact": CONTACT}
        assert staff.post("/requests", data=form).status_code == 403
        opened = mgr.post("/requests", data=form, follow_redirects=False)
        assert opened.status_code == 303 and "request_opened_notice" in opened.headers["location"]
        (request,) = requests.store(registry.ctx).all()
        files_before = _files(registry.data_dir)
        found = mgr.post(f"/requests/{request.request_id}/search",
                         files={"photo": ("face.png", png.tobytes(), "image/png")},
                         follow_redirects=False)
        assert found.status_code == 303, found.text[:300]
        assert "request_found_notice" in found.headers["location"]
        assert spooled == [] and _files(registry.data_dir) - files_before == set()
        page = mgr.get("/requests")
        assert f'id="actions-{request.request_id}"' in page.text and entry_id[:8] in page.text
        assert CONTACT not in page.text
        document = mgr.get(f"/requests/{request.request_id}/disclosure")
        assert document.status_code == 200 and entry_id in document.text
        assert "outside mamoru" in mgr.get(f"/requests/{request.request_id}/disclosure"
                                           "?lang=en").text
        image = mgr.get(f"/requests/{request.request_id}/disclosure/evidence-1.png")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert staff.get(f"/requests/{request.request_id}/disclosure").status_code == 403
        refused = mgr.post(f"/requests/{request.request_id}/refuse",
                           data={"ground": "appi_34_facts_correct", "reason": "x"})
        assert refused.status_code == 422 and "appi_33_2_i" in refused.text
        answered = mgr.post(f"/requests/{request.request_id}/answer",
                            data={"reason": "document handed over"}, follow_redirects=False)
        assert answered.status_code == 303
    closed = requests.store(registry.ctx).get(request.request_id)
    assert closed is not None and (closed.status, closed.answer) == (RequestStatus.ANSWERED,
                                                                     "disclosed")
    searched = _audit(registry.ctx, Action.REQUEST_SEARCHED)[-1]
    assert searched["outcome"] == "found" and searched["photo_kept"] is False

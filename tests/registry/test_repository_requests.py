"""`RequestRepository` and `ReviewRepository` behave the same on every back-end (issue 15).

Each test runs on the real SQLCipher repository (encrypted files) and on the
PostgreSQL stores over an application-role connection to a freshly migrated
database (`backend` fixture), through the protocol methods only. The request
desk (G-DSR-1..4) keeps a requester's contact and summary, and a review
(G-REV-1) its reason: on PostgreSQL those are sealed by the application, which
`test_personal_text_is_sealed_to_its_row` checks on the raw rows.

The users, entries and templates a request or review refers to belong to other
stores (users, entries, face data); on PostgreSQL they are not composed here,
so `_Seed` writes those prerequisite rows in SQL as the application role. Only
the stores under test are exercised through their protocols.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlcipher3

from kernel.errors import SealedIntegrityError
from registry.domain import (
    DataRequest,
    Entry,
    EntryReview,
    EntryState,
    IdentityMethod,
    RefusalGround,
    RequestKind,
    RequestStatus,
    ReviewDecision,
    Role,
)
from registry.repository import RequestRepository, ReviewRepository
from registry.storage.postgres.requests import (
    PostgresRequestDesk,
    PostgresRequests,
    PostgresReviews,
)
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CONTACT = "東京都港区芝公園4-2-8 山田花子 090-1234-5678"
SUMMARY = "自分の顔が登録されているか知りたい"
DB_ERRORS = (sqlcipher3.IntegrityError, psycopg.IntegrityError)


class _Seed:
    """The rows a request or review points at, written by their own back-end's means."""

    def __init__(self, backend: Backend, repo: Any) -> None:
        self._sqlcipher = backend.name == "sqlcipher"
        self._repo = repo

    def _sql(self, query: str, params: tuple[Any, ...]) -> Any:
        return self._repo.connection.execute(query, params).fetchone()

    def user(self, name: str) -> int:
        if self._sqlcipher:
            return int(self._repo.add_user(name, Role.MANAGER, "$argon2id$x", T0).user_id)
        return int(self._sql("INSERT INTO users (username, password_hash, created_at) "
                             "VALUES (%s, %s, %s) RETURNING user_id", (name, "$argon2id$x", T0))[0])

    def entry(self, state: EntryState, proposed_by: int) -> str:
        entry_id = secrets.token_hex(16)
        if self._sqlcipher:
            self._repo.add_entry(Entry(entry_id, state, "store-a", "{}", "listed person",
                                       proposed_by, T0, None, None, "", None, 1, None, ""))
            return entry_id
        seal = self._repo._fields.seal_text
        self._sql(
            "INSERT INTO entries (entry_id, state, store_id, features, display_name, proposed_by, "
            "proposed_at, decision_reason, closed_reason) "
            "VALUES (%s, %s, 'store-a', %s, %s, %s, %s, %s, %s) RETURNING 1",
            (entry_id, state.value, *(seal("entries", c, entry_id, v) for c, v in (
                ("features", "{}"), ("display_name", "listed person"))),
             proposed_by, T0, *(seal("entries", c, entry_id, "")
                                for c in ("decision_reason", "closed_reason"))))
        return entry_id

    def template(self, entry_id: str, pack: str, vector: bytes) -> int:
        if self._sqlcipher:
            return int(self._repo.add_template(entry_id, pack, vector, len(vector) // 4,
                                               secrets.token_hex(16), "{}"))
        template_id = int(self._sql(
            "INSERT INTO templates (entry_id, pack, dim, vector, image_id, quality) "
            "VALUES (%s, %s, %s, ''::bytea, %s, '{}') RETURNING template_id",
            (entry_id, pack, len(vector) // 4, secrets.token_hex(16)))[0])
        self._sql("UPDATE templates SET vector = %s WHERE template_id = %s RETURNING 1",
                  (self._repo._fields.seal("templates", "vector", template_id, vector),
                   template_id))
        return template_id


def _open(backend: Backend) -> tuple[Any, _Seed]:
    repo = backend.open(PostgresRequestDesk, PostgresReviews)
    return repo, _Seed(backend, repo)


def _request(received_at: datetime = T0, **changes: Any) -> DataRequest:
    base = DataRequest(
        request_id=secrets.token_hex(16), kind=RequestKind.DISCLOSURE, status=RequestStatus.OPEN,
        received_at=received_at, due_at=received_at + 14 * DAY,
        identity_method=IdentityMethod.DRIVERS_LICENCE, identity_checked_by=None, by_agent=False,
        contact=CONTACT, summary=SUMMARY, opened_by=None, assigned_to=None, entry_id=None,
        forwarded_to=None, origin_member=None, origin_request_id=None, answered_by=None,
        answered_at=None, answer="", refusal_ground=None, answer_reason="")
    return replace(base, **changes)


def _ids(requests: list[DataRequest]) -> list[str]:
    return [r.request_id for r in requests]


def test_postgres_stores_implement_their_protocols() -> None:
    """Issue 14.3's contract: same members, same signatures (`_desk` is the typed use)."""
    assert issubclass(PostgresRequests, RequestRepository)
    assert _mismatches(RequestRepository, PostgresRequests) == []
    assert issubclass(PostgresReviews, ReviewRepository)
    assert _mismatches(ReviewRepository, PostgresReviews) == []
    assert isinstance(PostgresRequestDesk.requests, property)


def _desk(store: PostgresRequestDesk) -> RequestRepository:
    return store.requests


# --- RequestRepository (G-DSR-1..4) -----------------------------------------------------------

def test_add_get_round_trip_every_field(backend: Backend) -> None:
    repo, seed = _open(backend)
    clerk, manager = seed.user("clerk"), seed.user("manager")
    entry_id = seed.entry(EntryState.ACTIVE, clerk)
    refused = _request(
        kind=RequestKind.STOP_USE, status=RequestStatus.REFUSED, by_agent=True,
        identity_method=IdentityMethod.MY_NUMBER_CARD, identity_checked_by=clerk,
        opened_by=clerk, assigned_to=manager, entry_id=entry_id, forwarded_to="store-b",
        origin_member="store-c", origin_request_id="r-77", answered_by=manager,
        answered_at=T0 + 3 * DAY, answer="refused", refusal_ground=RefusalGround.USE_LAWFUL,
        answer_reason="利用は適法")
    plain = _request(T0 + DAY)
    with repo.unit_of_work():
        repo.requests.add(refused)
        repo.requests.add(plain)
    assert repo.requests.get(refused.request_id) == refused
    assert repo.requests.get(plain.request_id) == plain
    assert repo.requests.get("f" * 32) is None


def test_add_twice_is_refused(backend: Backend) -> None:
    repo, _ = _open(backend)
    request = _request()
    repo.requests.add(request)
    with pytest.raises(DB_ERRORS):
        repo.requests.add(replace(request, summary="another"))
    assert repo.requests.get(request.request_id) == request


def test_update_rewrites_every_field_but_the_id(backend: Backend) -> None:
    repo, seed = _open(backend)
    manager = seed.user("manager")
    request, other = _request(), _request(T0 + DAY)
    repo.requests.add(request)
    repo.requests.add(other)
    answered = replace(request, status=RequestStatus.ANSWERED, assigned_to=manager,
                       answered_by=manager, answered_at=T0 + 2 * DAY, answer="not_held",
                       contact="新しい連絡先", summary="")
    repo.requests.update(answered)
    assert repo.requests.get(request.request_id) == answered
    assert repo.requests.get(other.request_id) == other
    repo.requests.update(_request())  # an unknown id: nothing happens, as on SQLCipher
    assert len(repo.requests.all()) == 2


def test_all_is_ordered_by_arrival_then_id(backend: Backend) -> None:
    repo, _ = _open(backend)
    late, early = _request(T0 + 2 * DAY), _request(T0)
    same = sorted([_request(T0 + DAY), _request(T0 + DAY)], key=lambda r: r.request_id)
    for request in (late, same[1], early, same[0]):
        repo.requests.add(request)
    assert _ids(repo.requests.all()) == _ids([early, *same, late])
    assert repo.requests.all()[0] == early


def test_overdue_lists_open_and_forwarded_past_due_by_due_date(backend: Backend) -> None:
    repo, seed = _open(backend)
    manager = seed.user("manager")
    now = T0 + 20 * DAY
    old_open = _request(T0)  # due T0 + 14
    old_forwarded = _request(T0 - DAY, status=RequestStatus.FORWARDED, forwarded_to="store-b")
    answered = _request(T0 - 2 * DAY, status=RequestStatus.ANSWERED, answered_by=manager,
                        answered_at=T0, answer="disclosed")
    not_due = _request(T0 + 10 * DAY)  # due T0 + 24
    due_now = _request(now - 14 * DAY)  # due exactly now: not overdue yet
    for request in (old_open, old_forwarded, answered, not_due, due_now):
        repo.requests.add(request)
    assert _ids(repo.requests.overdue(now)) == _ids([old_forwarded, old_open])


def test_by_origin_finds_a_members_forwarded_request(backend: Backend) -> None:
    repo, _ = _open(backend)
    mine = _request(origin_member="store-b", origin_request_id="b-1")
    theirs = _request(origin_member="store-c", origin_request_id="b-1")
    repo.requests.add(mine)
    repo.requests.add(theirs)
    assert repo.requests.by_origin("store-b", "b-1") == mine
    assert repo.requests.by_origin("store-c", "b-1") == theirs
    assert repo.requests.by_origin("store-b", "b-2") is None
    with pytest.raises(DB_ERRORS):  # one request per member's request id
        repo.requests.add(_request(origin_member="store-b", origin_request_id="b-1"))


def test_forwards_to_send_until_acknowledged(backend: Backend) -> None:
    repo, _ = _open(backend)
    first = _request(T0, status=RequestStatus.FORWARDED, forwarded_to="store-b")
    second = _request(T0 + DAY, status=RequestStatus.FORWARDED, forwarded_to="store-b")
    elsewhere = _request(T0, status=RequestStatus.FORWARDED, forwarded_to="store-c")
    still_open = _request(T0, forwarded_to="store-b")  # not forwarded (any more)
    for request in (second, elsewhere, first, still_open):
        repo.requests.add(request)
    assert _ids(repo.requests.forwards_to_send("store-b")) == _ids([first, second])
    # An acknowledgement names the member: store-c cannot acknowledge store-b's forwards.
    repo.requests.mark_forward_acked("store-c", [first.request_id])
    assert _ids(repo.requests.forwards_to_send("store-b")) == _ids([first, second])
    with repo.unit_of_work():
        repo.requests.mark_forward_acked("store-b", [first.request_id, "0" * 32])
    assert _ids(repo.requests.forwards_to_send("store-b")) == _ids([second])
    repo.requests.mark_forward_acked("store-b", [])
    assert _ids(repo.requests.forwards_to_send("store-c")) == _ids([elsewhere])
    # The acknowledgement is not a field of the request: an update keeps it.
    repo.requests.update(replace(first, summary="x"))
    assert _ids(repo.requests.forwards_to_send("store-b")) == _ids([second])


def test_answers_to_send_until_acknowledged(backend: Backend) -> None:
    repo, seed = _open(backend)
    manager = seed.user("manager")

    def closed(origin_id: str, at: datetime, status: RequestStatus) -> DataRequest:
        return _request(T0, origin_member="store-b", origin_request_id=origin_id,
                        status=status, answered_by=manager, answered_at=at, answer="done",
                        refusal_ground=RefusalGround.USE_LAWFUL
                        if status is RequestStatus.REFUSED else None,
                        answer_reason="適法" if status is RequestStatus.REFUSED else "")

    late = closed("b-1", T0 + 3 * DAY, RequestStatus.ANSWERED)
    early = closed("b-2", T0 + DAY, RequestStatus.REFUSED)
    pending = _request(T0, origin_member="store-b", origin_request_id="b-3")
    other = replace(closed("c-1", T0, RequestStatus.ANSWERED), origin_member="store-c")
    for request in (late, early, pending, other):
        repo.requests.add(request)
    assert _ids(repo.requests.answers_to_send("store-b")) == _ids([early, late])
    repo.requests.mark_answer_acked("store-c", ["b-2"])
    assert _ids(repo.requests.answers_to_send("store-b")) == _ids([early, late])
    repo.requests.mark_answer_acked("store-b", ["b-2", "b-9"])
    assert _ids(repo.requests.answers_to_send("store-b")) == _ids([late])
    assert _ids(repo.requests.answers_to_send("store-c")) == _ids([other])


def test_closed_personal_text_is_found_and_wiped(backend: Backend) -> None:
    """Issue 10: closed requests' contact, summary and answer text go after their lifetime."""
    repo, seed = _open(backend)
    manager = seed.user("manager")
    cutoff = T0 + 10 * DAY

    def closed(at: datetime, **changes: Any) -> DataRequest:
        return _request(T0, status=RequestStatus.ANSWERED, answered_by=manager,
                        answered_at=at, answer="disclosed", **changes)

    old = closed(T0 + 2 * DAY)
    older_reason_only = closed(T0 + DAY, contact="", summary="", answer_reason="理由")
    old_blank = closed(T0, contact="", summary="")
    young = closed(cutoff + DAY)
    still_open = _request(T0)
    for request in (old, older_reason_only, old_blank, young, still_open):
        repo.requests.add(request)
    assert repo.requests.closed_with_personal_text(cutoff) == [older_reason_only.request_id,
                                                               old.request_id]
    with repo.unit_of_work():
        repo.requests.wipe_personal_text([old.request_id, older_reason_only.request_id])
    assert repo.requests.closed_with_personal_text(cutoff) == []
    wiped = repo.requests.get(old.request_id)
    assert wiped == replace(old, contact="", summary="", answer_reason="")
    assert wiped is not None and wiped.answer == "disclosed"  # the outcome stays
    assert repo.requests.get(young.request_id) == young
    assert repo.requests.get(still_open.request_id) == still_open
    assert repo.requests.closed_with_personal_text(cutoff + 2 * DAY) == [young.request_id]


def test_held_templates_are_those_of_proposed_and_active_entries(backend: Backend) -> None:
    repo, seed = _open(backend)
    clerk = seed.user("clerk")
    entries = {state: seed.entry(state, clerk) for state in EntryState}
    vectors = {state: secrets.token_bytes(16) for state in EntryState}
    ids = {state: seed.template(entries[state], "yunet-sface", vectors[state])
           for state in (EntryState.ACTIVE, EntryState.PROPOSED, EntryState.ERASED,
                         EntryState.WITHDRAWN)}
    seed.template(entries[EntryState.ACTIVE], "scrfd-mbf", secrets.token_bytes(16))
    held = repo.requests.held_templates("yunet-sface")
    assert [t.template_id for t in held] == sorted(
        ids[s] for s in (EntryState.ACTIVE, EntryState.PROPOSED))
    by_entry = {t.entry_id: t for t in held}
    for state in (EntryState.ACTIVE, EntryState.PROPOSED):
        record = by_entry[entries[state]]
        assert (record.pack, record.vector) == ("yunet-sface", vectors[state])
    assert repo.requests.held_templates("no-such-pack") == []


def test_unit_of_work_rolls_back_requests(backend: Backend) -> None:
    repo, _ = _open(backend)
    kept, lost = _request(), _request()
    repo.requests.add(kept)
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.requests.add(lost)
        repo.requests.update(replace(kept, summary="changed"))
        repo.requests.wipe_personal_text([kept.request_id])
        raise RuntimeError("the use case failed")
    assert repo.requests.get(lost.request_id) is None
    assert repo.requests.get(kept.request_id) == kept


# --- ReviewRepository (G-REV-1) ---------------------------------------------------------------

def test_reviews_round_trip_in_order(backend: Backend) -> None:
    repo, seed = _open(backend)
    clerk, manager = seed.user("clerk"), seed.user("manager")
    entry_id, other = seed.entry(EntryState.ACTIVE, clerk), seed.entry(EntryState.ACTIVE, clerk)
    second = EntryReview(entry_id, ReviewDecision.WITHDRAW, "もう不要", manager, T0 + 90 * DAY)
    first = EntryReview(entry_id, ReviewDecision.KEEP, "再犯の恐れ", manager, T0)
    with repo.unit_of_work():
        repo.add_review(second)
        repo.add_review(first)
    assert repo.reviews(entry_id) == [first, second]
    assert repo.reviews(other) == []
    assert repo.last_reviews() == {entry_id: T0 + 90 * DAY}
    repo.add_review(EntryReview(other, ReviewDecision.KEEP, "理由", manager, T0 + DAY))
    assert repo.last_reviews() == {entry_id: T0 + 90 * DAY, other: T0 + DAY}
    assert repo.reviews(other)[0].reviewed_at.tzinfo is not None


def test_review_of_unknown_entry_is_refused(backend: Backend) -> None:
    repo, seed = _open(backend)
    manager = seed.user("manager")
    with pytest.raises(DB_ERRORS):
        repo.add_review(EntryReview("0" * 32, ReviewDecision.KEEP, "理由", manager, T0))
    assert repo.last_reviews() == {}


def test_unit_of_work_rolls_back_reviews(backend: Backend) -> None:
    repo, seed = _open(backend)
    clerk, manager = seed.user("clerk"), seed.user("manager")
    entry_id = seed.entry(EntryState.ACTIVE, clerk)
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.add_review(EntryReview(entry_id, ReviewDecision.KEEP, "理由", manager, T0))
        raise RuntimeError("the use case failed")
    assert repo.reviews(entry_id) == []
    assert repo.last_reviews() == {}


# --- sealing on PostgreSQL (issue 15) ---------------------------------------------------------

def test_personal_text_is_sealed_to_its_row(backend: Backend) -> None:
    """The server sees no contact, summary or reason; a value moved to another row won't open."""
    if backend.name != "postgres":
        pytest.skip("SQLCipher encrypts the whole file (tests/registry/test_encryption_at_rest.py)")
    repo, seed = _open(backend)
    clerk, manager = seed.user("clerk"), seed.user("manager")
    entry_id = seed.entry(EntryState.ACTIVE, clerk)
    victim, other = _request(), _request(contact="someone else", summary="other")
    repo.requests.add(victim)
    repo.requests.add(other)
    repo.add_review(EntryReview(entry_id, ReviewDecision.KEEP, SUMMARY, manager, T0))
    repo.add_review(EntryReview(entry_id, ReviewDecision.KEEP, "二件目", manager, T0 + DAY))
    db = repo.connection
    raw = db.execute("SELECT contact, summary FROM data_requests WHERE request_id = %s",
                     (victim.request_id,)).fetchone()
    for blob, clear in zip(raw, (CONTACT, SUMMARY), strict=True):
        assert isinstance(blob, bytes)
        assert clear.encode() not in blob and "山田".encode() not in blob
    reasons = db.execute("SELECT review_id, reason FROM entry_reviews ORDER BY review_id"
                         ).fetchall()
    assert all(SUMMARY.encode() not in bytes(r[1]) for r in reasons)
    # Someone with write access copies the victim's contact onto the other request...
    db.execute("UPDATE data_requests SET contact = %s WHERE request_id = %s",
               (raw[0], other.request_id))
    with pytest.raises(SealedIntegrityError, match="data_requests.contact") as refused:
        repo.requests.get(other.request_id)
    assert CONTACT not in str(refused.value)
    # ...or the first review's reason onto the second.
    db.execute("UPDATE entry_reviews SET reason = %s WHERE review_id = %s",
               (reasons[0][1], reasons[1][0]))
    with pytest.raises(SealedIntegrityError, match="entry_reviews.reason") as refused:
        repo.reviews(entry_id)
    assert SUMMARY not in str(refused.value)
    assert repo.requests.get(victim.request_id) == victim

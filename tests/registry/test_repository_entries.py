"""Entries, face data and the index version: the same behaviour on SQLCipher and PostgreSQL.

Issue 15, item 5: `EntryRepository`, `FaceDataRepository` and `IndexRepository`
exercised through their protocol methods only, on both back-ends (`backend`
fixture): round trips, orderings, updates, the purge that erases a person's
face data (G-REG-4, G-RET-1), not-found and duplicate errors, and the rollback
of a unit of work. On PostgreSQL the personal columns are sealed by the
application; `test_postgres_seals_every_personal_value_bound_to_its_row`
reads the raw rows to prove nobody with the database sees them in the clear.

Rows of other aggregates these need (a user who proposes, a box's alert, an
audit text) are made by `Others`: through their protocols on SQLCipher, by a
plain INSERT on PostgreSQL, whose stores for them belong to other groups.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlcipher3

from kernel.errors import NotFoundError, SealedIntegrityError
from registry.config import DEFAULT_STORE_ID
from registry.domain import (
    Alert,
    AlertStatus,
    ConfirmationKind,
    Entry,
    EntryState,
    EvidenceRecord,
    IncidentInput,
    OffenceCategory,
    Role,
)
from registry.repository import EntryRepository, FaceDataRepository, IndexRepository
from registry.storage.postgres.entries import PostgresEntries, PostgresFaceData, PostgresIndex
from tests.registry.backends import Backend
from tests.registry.test_repository_contract import _mismatches

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
PACK = "yunet-sface"
OTHER_PACK = "scrfd-mbf"
NAME = "山田 太郎"  # personal: must never reach PostgreSQL in the clear
FEATURES = "黒い帽子、左頬にほくろ"
POLICE_REF = "被害届-2026-0042"
DUPLICATE = (sqlcipher3.dbapi2.IntegrityError, psycopg.IntegrityError)
STORES = (PostgresEntries, PostgresFaceData, PostgresIndex)


def open_repo(backend: Backend) -> Any:
    return backend.open(*STORES)


class Others:
    """Rows of aggregates outside this group that the purge and the foreign keys reach."""

    def __init__(self, backend: Backend, repo: Any) -> None:
        self.postgres = backend.name == "postgres"
        self.repo = repo

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        return self.repo.connection.execute(query, params)

    def user(self, name: str = "mgr1") -> int:
        if not self.postgres:
            return int(self.repo.add_user(name, Role.MANAGER, "argon2-hash", T0).user_id)
        return int(self._sql("INSERT INTO users (username, password_hash, created_at) "
                             "VALUES (%s, 'argon2-hash', %s) RETURNING user_id",
                             (name, T0)).fetchone()[0])

    def device(self, name: str = "box-1") -> None:
        if not self.postgres:
            self.repo.add_device(name, hashlib.sha256(name.encode()).hexdigest(), T0,
                                 DEFAULT_STORE_ID)
            return
        self._sql("INSERT INTO stores (store_id, name, created_at) VALUES ('s1', 'Store 1', %s) "
                  "ON CONFLICT DO NOTHING", (T0,))
        self._sql("INSERT INTO devices (name, store_id, token_sha256, created_at) "
                  "VALUES (%s, 's1', %s, %s)", (name, hashlib.sha256(name.encode()).hexdigest(),
                                                T0))

    def alert(self, alert_id: str, entry_id: str, snapshot: str | None, reason: str) -> None:
        alert = Alert(alert_id, "box-1", "cam-1", T0, T0, 0.71, 0.5, entry_id, 1, snapshot,
                      AlertStatus.CONFIRMED, None, None, reason, DEFAULT_STORE_ID)
        if not self.postgres:
            self.repo.add_alert(alert)
            return
        self._sql(
            "INSERT INTO alerts (alert_id, store_id, device, camera, detected_at, received_at, "
            "score, threshold, entry_id, index_version, snapshot_image_id, status, "
            "decision_reason) VALUES (%s, 's1', 'box-1', 'cam-1', %s, %s, 0.71, 0.5, %s, 1, %s, "
            "'confirmed', %s)",
            (alert_id, T0, T0, entry_id, snapshot,
             self.repo._fields.seal("alerts", "decision_reason", alert_id, reason.encode())))

    def snapshot_and_reason(self, alert_id: str) -> tuple[str | None, str]:
        """What the alert still holds: its snapshot id and its decision reason (opened)."""
        if not self.postgres:
            alert = self.repo.alert(alert_id)
            return alert.snapshot_image_id, alert.decision_reason
        snapshot, sealed = self._sql("SELECT snapshot_image_id, decision_reason FROM alerts "
                                     "WHERE alert_id = %s", (alert_id,)).fetchone()
        return snapshot, self.repo._fields.open_text("alerts", "decision_reason", alert_id,
                                                      sealed)

    def audit_text(self, entry_id: str, text: str) -> str:
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        if not self.postgres:
            self.repo.add_audit_text(entry_id, sha256, text)
        else:
            self._sql("INSERT INTO audit_texts (sha256, entry_id, text) VALUES (%s, %s, %s)",
                      (sha256, entry_id, self.repo._fields.seal(
                          "audit_texts", "text", f"{entry_id}:{sha256}", text.encode())))
        return sha256

    def audit_text_kept(self, entry_id: str, sha256: str) -> bool:
        if not self.postgres:
            return self.repo.audit_text(entry_id, sha256) is not None
        return self._sql("SELECT 1 FROM audit_texts WHERE entry_id = %s AND sha256 = %s",
                         (entry_id, sha256)).fetchone() is not None


def make_entry(entry_id: str, by: int, *, state: EntryState = EntryState.ACTIVE,
               proposed_at: datetime = T0, expires_at: datetime | None = None,
               name: str = NAME) -> Entry:
    decided = state is not EntryState.PROPOSED
    return Entry(
        entry_id=entry_id, state=state, store_id="s1", features=FEATURES, display_name=name,
        proposed_by=by, proposed_at=proposed_at, decided_by=by if decided else None,
        decided_at=proposed_at + timedelta(hours=1) if decided else None,
        decision_reason="二人目の承認: 被害届あり" if decided else "",
        expires_at=expires_at if expires_at is not None else (
            proposed_at + timedelta(days=3 * 365) if decided else None),
        revision=1, closed_at=None, closed_reason="",
    )


def an_incident(occurred_at: datetime = T0, ref: str = POLICE_REF) -> IncidentInput:
    return IncidentInput(OffenceCategory.THEFT, occurred_at, ConfirmationKind.POLICE_REPORT, ref,
                         damage="化粧品 3点 (4,800円)", description="レジを通さず退店")


def vector(seed: int) -> bytes:
    """A unit-length float32 vector, as the templates table keeps it (128-D like SFace)."""
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32).tobytes()


def seeded(backend: Backend) -> tuple[Any, Others, int]:
    repo = open_repo(backend)
    others = Others(backend, repo)
    return repo, others, others.user()


# --- the contract ---------------------------------------------------------------------------

@pytest.mark.parametrize(("protocol", "store"), [
    (EntryRepository, PostgresEntries), (FaceDataRepository, PostgresFaceData),
    (IndexRepository, PostgresIndex)], ids=lambda p: p.__name__)
def test_each_postgres_store_implements_its_protocol_on_its_own(protocol: type,
                                                                store: type) -> None:
    """Issue 15: the same names, kinds, defaults and annotations as the protocol declares."""
    assert issubclass(store, protocol)
    assert _mismatches(protocol, store) == []


# --- EntryRepository ------------------------------------------------------------------------

def test_an_entry_round_trips_with_every_field(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    entry = replace(make_entry("e-1", by), closed_at=T0 + timedelta(days=9), revision=3,
                    closed_reason="本人からの削除請求 (G-REG-4)")
    repo.add_entry(entry)
    assert repo.entry("e-1") == entry
    assert repo.entry("e-1").proposed_at.utcoffset() == timedelta(0)
    assert repo.entry("nobody") is None
    proposed = make_entry("e-2", by, state=EntryState.PROPOSED)
    repo.add_entry(proposed)
    assert repo.entry("e-2") == proposed  # None and "" stay None and ""


def test_an_entry_id_is_added_once(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    with pytest.raises(DUPLICATE):
        repo.add_entry(make_entry("e-1", by, name="別人"))
    assert repo.entry("e-1").display_name == NAME


def test_entries_are_listed_by_proposal_time_and_filtered_by_state(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("late", by, proposed_at=T0 + timedelta(days=2)))
    repo.add_entry(make_entry("early", by, state=EntryState.PROPOSED, proposed_at=T0))
    repo.add_entry(make_entry("middle", by, state=EntryState.WITHDRAWN,
                              proposed_at=T0 + timedelta(days=1)))
    assert [e.entry_id for e in repo.entries()] == ["early", "middle", "late"]
    assert [e.entry_id for e in repo.entries([EntryState.ACTIVE, EntryState.PROPOSED])] == [
        "early", "late"]
    assert [e.entry_id for e in repo.entries([EntryState.WITHDRAWN])] == ["middle"]
    assert repo.entries([EntryState.ERASED]) == []
    assert repo.entries([]) == []


def test_due_for_expiry_lists_active_entries_up_to_now_soonest_first(backend: Backend) -> None:
    """G-REG-4: an active entry whose retention ended, the boundary included."""
    repo, _, by = seeded(backend)
    now = T0 + timedelta(days=30)
    repo.add_entry(make_entry("later", by, expires_at=now - timedelta(days=1)))
    repo.add_entry(make_entry("sooner", by, expires_at=now - timedelta(days=5)))
    repo.add_entry(make_entry("exactly", by, expires_at=now))
    repo.add_entry(make_entry("not-yet", by, expires_at=now + timedelta(microseconds=1)))
    repo.add_entry(make_entry("proposed", by, state=EntryState.PROPOSED,
                              expires_at=now - timedelta(days=9)))
    repo.add_entry(make_entry("withdrawn", by, state=EntryState.WITHDRAWN,
                              expires_at=now - timedelta(days=9)))
    assert [e.entry_id for e in repo.due_for_expiry(now)] == ["sooner", "later", "exactly"]
    assert repo.due_for_expiry(T0) == []


def test_update_entry_rewrites_every_field_and_refuses_an_unknown_entry(
        backend: Backend) -> None:
    """G-REG-3: a correction rewrites the entry; its id and proposer stay."""
    repo, others, by = seeded(backend)
    other = others.user("mgr2")
    repo.add_entry(make_entry("e-1", by, state=EntryState.PROPOSED))
    corrected = replace(make_entry("e-1", by), decided_by=other, display_name="山田 花子",
                        features="眼鏡", revision=2, state=EntryState.ERASED,
                        closed_at=T0 + timedelta(days=3), closed_reason="消去請求")
    repo.update_entry(corrected)
    assert repo.entry("e-1") == corrected
    with pytest.raises(NotFoundError):
        repo.update_entry(make_entry("nobody", by))
    assert repo.entry("nobody") is None


def test_criteria_version_is_recorded_once_per_text_and_refused_for_an_unknown_entry(
        backend: Backend) -> None:
    """G-REG-2: the criteria version a proposal was judged under, its text kept once."""
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    repo.add_entry(make_entry("e-2", by))
    assert repo.criteria_version_of("e-1") is None
    sha = "a" * 64
    repo.set_criteria_version("e-1", sha, "theft", "被害届のある万引き", T0)
    repo.set_criteria_version("e-2", sha, "theft", "a later text under the same hash", T0)
    assert repo.criteria_version_of("e-1") == (sha, "被害届のある万引き")
    assert repo.criteria_version_of("e-2") == (sha, "被害届のある万引き")
    repo.set_criteria_version("e-1", "b" * 64, "theft", "改訂版の基準", T0 + timedelta(days=1))
    assert repo.criteria_version_of("e-1") == ("b" * 64, "改訂版の基準")
    with pytest.raises(NotFoundError):
        repo.set_criteria_version("nobody", sha, "theft", "x", T0)
    assert repo.criteria_version_of("nobody") is None


def test_incidents_round_trip_in_order_of_occurrence_per_entry(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    repo.add_entry(make_entry("e-2", by))
    recorded = T0 + timedelta(days=1)
    second = repo.add_incident("e-1", "s2", an_incident(T0 - timedelta(days=1), "REF-2"), by,
                               recorded)
    first = repo.add_incident("e-1", "s1", an_incident(T0 - timedelta(days=5)), by, recorded)
    blank = repo.add_incident("e-2", "s1", replace(an_incident(), damage="", description=""),
                              by, recorded)
    assert first.incident_id != second.incident_id
    assert repo.incidents("e-1") == [first, second]
    assert (first.confirmation_ref, first.store_id, first.recorded_at) == (POLICE_REF, "s1",
                                                                          recorded)
    assert repo.incidents("e-2") == [blank]
    assert (blank.damage, blank.description) == ("", "")
    assert repo.incidents("nobody") == []


def test_an_incident_needs_its_confirmation_reference(backend: Backend) -> None:
    """G-REG-2: a blank reference is refused by the store itself (a CHECK on SQLCipher)."""
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    with pytest.raises((*DUPLICATE, ValueError)):
        repo.add_incident("e-1", "s1", an_incident(ref="  "), by, T0)
    assert repo.incidents("e-1") == []


# --- FaceDataRepository ---------------------------------------------------------------------

def test_templates_round_trip_in_the_order_added(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    repo.add_entry(make_entry("e-2", by))
    ids = [repo.add_template("e-1", PACK, vector(1), 128, "img-1", '{"ok": true}'),
           repo.add_template("e-2", PACK, vector(2), 128, "img-2", "{}"),
           repo.add_template("e-1", OTHER_PACK, vector(3), 128, "img-1", "{}")]
    assert ids == sorted(ids) and len(set(ids)) == 3
    templates = repo.templates("e-1")
    assert [(t.template_id, t.pack, t.vector, t.image_id) for t in templates] == [
        (ids[0], PACK, vector(1), "img-1"), (ids[2], OTHER_PACK, vector(3), "img-1")]
    assert templates[0].quality == '{"ok": true}' and templates[0].entry_id == "e-1"
    assert repo.templates("nobody") == []


def test_active_templates_are_those_of_active_unsuspended_entries_of_the_pack(
        backend: Backend) -> None:
    """What the index publishes: a suspended entry stays active but leaves it (G-SHR-4)."""
    repo, _, by = seeded(backend)
    for entry_id, state in (("active", EntryState.ACTIVE), ("proposed", EntryState.PROPOSED),
                            ("expired", EntryState.EXPIRED), ("suspended", EntryState.ACTIVE),
                            ("active-2", EntryState.ACTIVE)):
        repo.add_entry(make_entry(entry_id, by, state=state))
    wanted = [repo.add_template("active-2", PACK, vector(10), 128, "i-1", "{}")]
    for n, entry_id in enumerate(("proposed", "expired", "suspended")):
        repo.add_template(entry_id, PACK, vector(20 + n), 128, f"x-{n}", "{}")
    wanted.append(repo.add_template("active", PACK, vector(11), 128, "i-2", "{}"))
    repo.add_template("active", OTHER_PACK, vector(12), 128, "i-2", "{}")
    wanted.append(repo.add_template("active-2", PACK, vector(13), 128, "i-3", "{}"))
    repo.suspend_entry("suspended", T0, "local")
    published = repo.active_templates(PACK)
    assert [t.template_id for t in published] == wanted
    assert [t.vector for t in published] == [vector(10), vector(11), vector(13)]
    assert [t.entry_id for t in repo.active_templates(OTHER_PACK)] == ["active"]
    assert repo.active_templates("no-such-pack") == []
    repo.unsuspend_entry("suspended")
    assert "suspended" in {t.entry_id for t in repo.active_templates(PACK)}


def test_evidence_round_trips_by_time_and_an_image_is_recorded_once(backend: Backend) -> None:
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    repo.add_entry(make_entry("e-2", by))
    later = EvidenceRecord("img-a", "e-1", "1" * 64, 2, T0 + timedelta(seconds=1))
    tie_b = EvidenceRecord("img-c", "e-1", "2" * 64, 0, T0)
    tie_a = EvidenceRecord("img-b", "e-1", "3" * 64, 1, T0)
    for record in (later, tie_b, tie_a, EvidenceRecord("img-d", "e-2", "4" * 64, 0, T0)):
        repo.add_evidence(record)
    assert repo.evidence("e-1") == [tie_a, tie_b, later]
    assert repo.evidence("nobody") == []
    with pytest.raises(DUPLICATE):
        repo.add_evidence(replace(later, entry_id="e-2"))
    assert repo.all_evidence_ids() == {"img-a", "img-b", "img-c", "img-d"}


def test_all_evidence_ids_include_alert_snapshots(backend: Backend) -> None:
    repo, others, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    others.device()
    assert repo.all_evidence_ids() == set()
    repo.add_evidence(EvidenceRecord("img-1", "e-1", "1" * 64, 0, T0))
    others.alert("a-1", "e-1", "snap-1", "")
    others.alert("a-2", "e-1", None, "")
    assert repo.all_evidence_ids() == {"img-1", "snap-1"}


def test_purge_erases_one_persons_face_data_everywhere_and_nothing_else(
        backend: Backend) -> None:
    """G-REG-4 / G-RET-1: templates, evidence, incidents and audit texts go; alerts stay as
    a record that a match happened, without the picture or the reason staff typed."""
    repo, others, by = seeded(backend)
    others.device()
    for entry_id in ("gone", "kept"):
        repo.add_entry(make_entry(entry_id, by))
        repo.add_template(entry_id, PACK, vector(1), 128, f"{entry_id}-img", "{}")
        repo.add_evidence(EvidenceRecord(f"{entry_id}-img", entry_id, "1" * 64, 0, T0))
        repo.add_incident(entry_id, "s1", an_incident(), by, T0)
    repo.add_evidence(EvidenceRecord("gone-img-2", "gone", "2" * 64, 0, T0))
    others.alert("a-snap", "gone", "gone-snap", "本人と確認")
    others.alert("a-none", "gone", None, "見間違い")
    others.alert("a-kept", "kept", "kept-snap", "本人")
    text = others.audit_text("gone", "自由記述の理由")
    kept_text = others.audit_text("kept", "残る理由")

    erased = repo.purge_face_data("gone")

    assert sorted(erased) == ["gone-img", "gone-img-2", "gone-snap"]
    assert (repo.templates("gone"), repo.evidence("gone"), repo.incidents("gone")) == ([], [], [])
    assert others.snapshot_and_reason("a-snap") == (None, "")
    assert others.snapshot_and_reason("a-none") == (None, "")
    assert not others.audit_text_kept("gone", text)
    assert repo.entry("gone") is not None  # the tombstone is the caller's update
    assert [len(repo.templates("kept")), len(repo.evidence("kept")),
            len(repo.incidents("kept"))] == [1, 1, 1]
    assert others.snapshot_and_reason("a-kept") == ("kept-snap", "本人")
    assert others.audit_text_kept("kept", kept_text)
    assert repo.all_evidence_ids() == {"kept-img", "kept-snap"}
    assert repo.purge_face_data("gone") == []
    assert repo.purge_face_data("nobody") == []


# --- IndexRepository ------------------------------------------------------------------------

def test_the_watchlist_version_only_grows(backend: Backend) -> None:
    repo = open_repo(backend)
    assert repo.watchlist_version() == 0
    assert repo.bump_watchlist_version() == 1
    assert repo.bump_watchlist_version() == 2
    assert repo.raise_watchlist_version(10) == 10
    assert repo.raise_watchlist_version(5) == 10
    assert repo.raise_watchlist_version(10) == 10
    assert repo.bump_watchlist_version() == 11
    assert repo.watchlist_version() == 11


def test_suspensions_keep_their_first_source_until_lifted(backend: Backend) -> None:
    """G-SHR-4: an objection suspends; a second suspension of the same entry changes nothing."""
    repo, _, by = seeded(backend)
    for entry_id in ("e-1", "e-2"):
        repo.add_entry(make_entry(entry_id, by))
    assert repo.suspended_entries() == {}
    repo.suspend_entry("e-1", T0, "member-b")
    repo.suspend_entry("e-1", T0 + timedelta(days=1), "local")
    repo.suspend_entry("e-2", T0, "local")
    assert repo.suspended_entries() == {"e-1": "member-b", "e-2": "local"}
    repo.unsuspend_entry("e-1")
    repo.unsuspend_entry("e-1")  # lifting twice is no error
    repo.unsuspend_entry("nobody")
    assert repo.suspended_entries() == {"e-2": "local"}
    with pytest.raises(DUPLICATE):  # only an existing entry can be suspended
        repo.suspend_entry("nobody", T0, "local")


# --- one transaction boundary ---------------------------------------------------------------

def test_a_failed_unit_of_work_leaves_entries_face_data_and_index_unchanged(
        backend: Backend) -> None:
    repo, others, by = seeded(backend)
    others.device()
    repo.add_entry(make_entry("kept", by))
    repo.add_template("kept", PACK, vector(1), 128, "kept-img", "{}")
    repo.add_evidence(EvidenceRecord("kept-img", "kept", "1" * 64, 0, T0))
    others.alert("a-1", "kept", "kept-snap", "本人")
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.add_entry(make_entry("new", by))
        repo.add_incident("new", "s1", an_incident(), by, T0)
        repo.add_template("new", PACK, vector(2), 128, "new-img", "{}")
        repo.add_evidence(EvidenceRecord("new-img", "new", "2" * 64, 0, T0))
        repo.set_criteria_version("new", "c" * 64, "theft", "基準", T0)
        repo.update_entry(replace(make_entry("kept", by), display_name="書き換え"))
        repo.suspend_entry("kept", T0, "local")
        assert repo.purge_face_data("kept") == ["kept-img", "kept-snap"]
        repo.bump_watchlist_version()
        raise RuntimeError("the audit record could not be written")
    assert repo.entry("new") is None
    assert repo.entry("kept").display_name == NAME
    assert [t.vector for t in repo.templates("kept")] == [vector(1)]
    assert [r.image_id for r in repo.evidence("kept")] == ["kept-img"]
    assert others.snapshot_and_reason("a-1") == ("kept-snap", "本人")
    assert repo.suspended_entries() == {}
    assert repo.watchlist_version() == 0
    assert repo.all_evidence_ids() == {"kept-img", "kept-snap"}


# --- sealing (PostgreSQL only) --------------------------------------------------------------

def test_postgres_seals_every_personal_value_bound_to_its_row(backend: Backend) -> None:
    """Issue 15 / G-SEC-2: the database holds names, features, reasons, police references and
    templates only as ciphertext, and a value moved onto another row does not open there."""
    if backend.name != "postgres":
        pytest.skip("SQLCipher encrypts the whole file; sealing per column is PostgreSQL's")
    repo, _, by = seeded(backend)
    repo.add_entry(make_entry("e-1", by))
    repo.add_entry(make_entry("e-2", by, name="佐藤 次郎"))
    incident = repo.add_incident("e-1", "s1", an_incident(), by, T0)
    repo.add_incident("e-2", "s1", an_incident(ref="REF-OTHER"), by, T0)
    first = repo.add_template("e-1", PACK, vector(1), 128, "img-1", "{}")
    second = repo.add_template("e-2", PACK, vector(2), 128, "img-2", "{}")
    db = repo.connection

    raw = db.execute("SELECT features, display_name, decision_reason, closed_reason "
                     "FROM entries WHERE entry_id = 'e-1'").fetchone()
    raw += db.execute("SELECT confirmation_ref, damage, description FROM incidents "
                      "WHERE incident_id = %s", (incident.incident_id,)).fetchone()
    raw += db.execute("SELECT vector FROM templates WHERE template_id = %s",
                      (first,)).fetchone()
    clear = [NAME, FEATURES, "二人目の承認", POLICE_REF, "化粧品", "レジを通さず"]
    for blob in raw:
        assert isinstance(blob, bytes) and blob  # even a blank reason is sealed
        assert not any(text.encode() in blob for text in clear)
        assert vector(1)[:16] not in blob

    # Someone with write access moves one person's name, reference and face onto another row.
    db.execute("UPDATE entries SET display_name = (SELECT display_name FROM entries "
               "WHERE entry_id = 'e-1') WHERE entry_id = 'e-2'")
    with pytest.raises(SealedIntegrityError):
        repo.entry("e-2")
    db.execute("UPDATE incidents SET confirmation_ref = %s WHERE entry_id = 'e-2'", (raw[4],))
    with pytest.raises(SealedIntegrityError):
        repo.incidents("e-2")
    db.execute("UPDATE templates SET vector = %s WHERE template_id = %s", (raw[7], second))
    with pytest.raises(SealedIntegrityError):
        repo.templates("e-2")
    with pytest.raises(SealedIntegrityError):
        repo.active_templates(PACK)
    assert repo.entry("e-1").display_name == NAME  # the original row still opens

"""The narrow interfaces between the registry's rules and its storage, one per aggregate.

Services speak only these Protocols; the embedded SQLCipher implementation is
in `registry/storage/sqlcipher/` (composed in `registry/storage/sqlcipher_repository.py`).
A chain's central registry can implement them on its server database (PostgreSQL
next) without touching the rules: it implements a dozen small interfaces, each
checked on its own by `tests/registry/test_repository_contract.py`, not one big one.

Repositories never commit: `UnitOfWork.unit_of_work()` is the transaction
boundary, and each use case writes its change and its audit record inside one.
Every aggregate protocol is written inside that one boundary, so a back-end
implements it once for all of them (on one connection).

`RegistryRepository` is the composite that `RegistryContext.repo` satisfies; a
module that needs one aggregate only types its parameter with the small protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

from registry.domain import (
    Alert,
    AlertStatus,
    BoxStatus,
    BreachIncident,
    DataRequest,
    Device,
    EmergencyCheck,
    EmergencyShare,
    Entry,
    EntryReview,
    EntryState,
    ErasureConfirmation,
    EvidenceRecord,
    HeldCopy,
    ImportedEntry,
    InboundState,
    Incident,
    IncidentInput,
    IndexChanges,
    LoginFailures,
    RecordedAction,
    Role,
    SentBundle,
    StopUseRight,
    Store,
    TemplateRecord,
    Triage,
    User,
    WebSession,
)


class AuditRow(Protocol):
    """One stored audit record; read-only (properties), as the chain check only reads it."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def entry_id(self) -> str | None: ...
    @property
    def details(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@runtime_checkable
class UnitOfWork(Protocol):
    """The transaction boundary every aggregate below is written in.

    A use case writes its change and its audit record in one unit (the trail
    never disagrees with the data, G-SHR-7 / G-BRE-3); a nested unit joins the
    outer one, so use cases compose.
    """

    def unit_of_work(self) -> AbstractContextManager[None]: ...


@runtime_checkable
class StoreRepository(Protocol):
    """The operator's stores (issue 15, item 1): what boxes, staff and alerts belong to."""

    def add_store(self, store: Store, now: datetime) -> None:
        """`ConflictError` if the id is taken."""
        ...
    def store(self, store_id: str) -> Store | None: ...
    def stores(self) -> list[Store]:
        """Every store, by id."""
        ...


@runtime_checkable
class UserRepository(Protocol):
    """The `users` aggregate: named staff, their roles and training (G-SEC-1).

    A user has one role, scoped to their store (`store_id`), or chain-wide when None.
    """

    def add_user(self, username: str, role: Role, password_hash: str, now: datetime,
                 store_id: str | None = None) -> User: ...
    def user_by_name(self, username: str) -> User | None: ...
    def user_by_id(self, user_id: int) -> User | None: ...
    def password_hash_of(self, username: str) -> str | None: ...
    def set_password_hash(self, user_id: int, password_hash: str) -> None: ...
    def set_trained(self, user_id: int, at: datetime) -> None: ...
    def set_role(self, user_id: int, role: Role) -> None: ...
    def set_active(self, user_id: int, active: bool) -> None: ...
    def users(self) -> list[User]: ...
    def username_of(self, user_id: int) -> str: ...


@runtime_checkable
class SessionRepository(Protocol):
    """People's web sessions and the login lockout: authentication state (G-SEC-2).

    `name_key` is the SHA-256 of the user name as typed: no typed text is kept.
    """

    def add_web_session(self, session: WebSession) -> None: ...
    def web_session(self, session_id: str) -> WebSession | None: ...
    def touch_web_session(self, session_id: str, at: datetime) -> None: ...
    def delete_web_session(self, session_id: str) -> None: ...
    def delete_stale_web_sessions(self, *, idle_before: datetime, now: datetime) -> int: ...
    def delete_all_web_sessions(self) -> int: ...
    def login_failures(self, name_key: str) -> LoginFailures | None: ...
    def record_login_failure(self, name_key: str, at: datetime) -> int:
        """Count one more consecutive failure for the name; the new count."""
        ...
    def lock_login(self, name_key: str, until: datetime) -> None: ...
    def clear_login_failures(self, name_key: str) -> None: ...
    def prune_login_failures(self, *, last_failure_before: datetime, now: datetime) -> int: ...


@runtime_checkable
class DeviceRepository(Protocol):
    """Edge boxes and their token hashes: who may fetch the index and post alerts (G-SEC-2)."""

    def add_device(self, name: str, token_sha256: str, now: datetime, store_id: str
                   ) -> Device: ...
    def device_by_name(self, name: str) -> Device | None: ...
    def device_by_token_hash(self, token_sha256: str) -> Device | None: ...
    def devices(self) -> list[Device]: ...
    def set_device_active(self, device_id: int, active: bool) -> None: ...
    def record_box_status(self, status: BoxStatus) -> None:
        """Keep `status` as its device's latest report (replacing the one before)."""
        ...
    def box_statuses(self, store_id: str | None = None) -> list[BoxStatus]:
        """The latest report of every box that reported (of `store_id`'s boxes only, if
        given), by device name."""
        ...


@runtime_checkable
class EntryRepository(Protocol):
    """Watchlist entries, the criteria each was judged under, and their incidents.

    Serves registration and approval (G-REG-2, G-REG-5), correction (G-REG-3)
    and expiry (G-REG-4).
    """

    def add_entry(self, entry: Entry) -> None: ...
    def entry(self, entry_id: str) -> Entry | None: ...
    def entries(self, states: Sequence[EntryState] | None = None) -> list[Entry]: ...
    def due_for_expiry(self, now: datetime) -> list[Entry]: ...
    def update_entry(self, entry: Entry) -> None: ...
    def set_criteria_version(self, entry_id: str, sha256: str, category: str, criteria: str,
                             at: datetime) -> None:
        """G-REG-2: the criteria version a proposal was judged under (text kept once)."""
        ...
    def criteria_version_of(self, entry_id: str) -> tuple[str, str] | None:
        """(sha256, criteria text) recorded on the entry; None if none was recorded."""
        ...
    def add_incident(
        self, entry_id: str, store_id: str, incident: IncidentInput, by: int, now: datetime
    ) -> Incident: ...
    def incidents(self, entry_id: str) -> list[Incident]: ...


@runtime_checkable
class FaceDataRepository(Protocol):
    """An entry's face data: templates and registration evidence (G-REG-1, G-RET-1).

    `purge_face_data` is the one eraser of a person's face data and reaches into
    alerts and audit texts too, so erasure is one call whatever the back-end.
    """

    def add_template(
        self, entry_id: str, pack: str, vector: bytes, dim: int, image_id: str, quality: str
    ) -> int: ...
    def templates(self, entry_id: str) -> list[TemplateRecord]: ...
    def active_templates(self, pack: str) -> list[TemplateRecord]:
        """Templates of active entries that are not suspended: what the index publishes."""
        ...
    def add_evidence(self, record: EvidenceRecord) -> None: ...
    def evidence(self, entry_id: str) -> list[EvidenceRecord]: ...
    def all_evidence_ids(self) -> set[str]:
        """Every image id a row refers to: registration evidence and alert snapshots."""
        ...
    def purge_face_data(self, entry_id: str) -> list[str]:
        """Delete templates, evidence rows and incidents, unlink alert snapshots; return
        the image ids (evidence and snapshots) whose files the caller must erase."""
        ...


@runtime_checkable
class IndexRepository(Protocol):
    """What the published index follows besides entry states: its version, suspensions, and
    the log of what each published version changed (the deltas boxes fetch, issue 15 item 4).

    Every change of what the boxes may match bumps the version, so a box never
    keeps matching an erased or suspended entry (G-REG-4, G-SHR-4 objections).
    A suspended entry stays active but leaves the index (`active_templates`).
    """

    def watchlist_version(self) -> int: ...
    def bump_watchlist_version(self) -> int: ...
    def raise_watchlist_version(self, at_least: int) -> int: ...
    def suspend_entry(self, entry_id: str, since: datetime, source: str) -> None: ...
    def unsuspend_entry(self, entry_id: str) -> None: ...
    def suspended_entries(self) -> dict[str, str]:
        """entry id -> source ("local" or the member whose objection it is)."""
        ...
    def index_members(self) -> dict[int, str]:
        """Template id -> entry id of the newest logged index version (empty before any)."""
        ...
    def log_index_version(self, version: int, added: Mapping[int, str],
                          removed: Mapping[int, str], at: datetime) -> bool:
        """Record what `version` changed against the newest logged one, and make it the
        members; False (nothing written) if `version` is not newer than the newest logged."""
        ...
    def index_changes(self, since: int) -> IndexChanges | None:
        """What changed from `since` to the newest logged version; None when `since` was
        never logged or its log was pruned: the box needs the whole index (issue 15)."""
        ...
    def prune_index_log(self, *, keep_versions: int, logged_before: datetime) -> int:
        """Forget logged versions older than the newest `keep_versions` or logged before
        `logged_before` (the newest is always kept); the number forgotten."""
        ...


@runtime_checkable
class AlertRepository(Protocol):
    """Alerts from the edge boxes and staff's decisions on them; snapshots' lifetime (G-RET-1)."""

    def add_alert(self, alert: Alert) -> None: ...
    def alert(self, alert_id: str) -> Alert | None: ...
    def alerts(self, status: AlertStatus | None = None, store_id: str | None = None
               ) -> list[Alert]:
        """Oldest first; of one store if `store_id` is given (None: every store)."""
        ...
    def decide_alert(self, alert: Alert) -> None:
        """Write an open alert's decision (status, by, at, reason, snapshot); `ConflictError`
        if it was decided meanwhile."""
        ...
    def stray_alert_snapshots(self) -> list[tuple[str, str]]:
        """(alert id, snapshot id) for every snapshot whose entry is not active (G-RET-1)."""
        ...
    def clear_alert_snapshot(self, alert_id: str) -> None: ...
    def alert_counts(self, store_id: str | None = None) -> list[tuple[str, AlertStatus, int]]:
        """(device, status, number of alerts), for the precision figure; of one store's
        alerts if `store_id` is given."""
        ...


@runtime_checkable
class SchemeRepository(Protocol):
    """The joint-use scheme in force (G-SHR-1, G-SHR-4): every adopted one, newest last.

    `content` is the scheme's canonical JSON, kept so what was in force can be shown later.
    """

    def add_adopted_scheme(self, sha256: str, at: datetime, content: bytes) -> None: ...
    def adopted_schemes(self) -> list[tuple[str, datetime, bytes]]: ...
    def current_scheme_sha256(self) -> str | None: ...


@runtime_checkable
class OutboundRepository(Protocol):
    """The origin's side of joint use: bundles sent, what each member holds, erasures confirmed.

    The record of each provision to a member (G-SHR-7) and the proof that an
    erased entry left every member (G-SHR-4, G-REG-4).
    """

    def add_sent_bundle(self, bundle: SentBundle) -> None: ...
    def sent_bundles(self, member_id: str) -> list[SentBundle]: ...
    def last_acked_sequence(self, member_id: str) -> int: ...
    def acknowledge_bundle(self, member_id: str, sequence: int, at: datetime) -> None:
        """Record `sequence` as the member's acknowledged one; drop bundles it supersedes."""
        ...
    def held_copies(self, member_id: str) -> dict[str, HeldCopy]: ...
    def set_held_copy(self, copy: HeldCopy) -> None: ...
    def add_erasure_confirmation(self, confirmation: ErasureConfirmation) -> None: ...
    def erasure_confirmations(self, entry_id: str) -> list[ErasureConfirmation]: ...


@runtime_checkable
class InboundRepository(Protocol):
    """The receiver's side of joint use: entries imported from members, the last bundle applied
    per member (G-SHR-1, G-SHR-2)."""

    def add_imported_entry(self, imported: ImportedEntry) -> None: ...
    def update_imported_entry(self, imported: ImportedEntry) -> None: ...
    def supersede_imported_entry(self, entry_id: str) -> None: ...
    def imported_entry(self, entry_id: str) -> ImportedEntry | None: ...
    def imported_by_origin(self, origin_member: str, origin_entry_id: str
                           ) -> ImportedEntry | None: ...
    def imported_entry_ids(self) -> set[str]: ...
    def joint_use_intake_user(self, now: datetime) -> int:
        """The id of the pseudo-user recorded as proposer of imported entries (created once;
        it can never log in)."""
        ...
    def inbound_state(self, member_id: str) -> InboundState | None: ...
    def inbound_states(self) -> list[InboundState]: ...
    def set_inbound_state(self, state: InboundState) -> None: ...


@runtime_checkable
class EmergencyShareRepository(Protocol):
    """One-off emergency provisions outside joint use and the checks behind each (G-SHR-6)."""

    def add_emergency_share(self, share: EmergencyShare) -> None: ...
    def emergency_share(self, share_id: str) -> EmergencyShare | None: ...
    def set_emergency_share_state(self, share_id: str, state: str, at: datetime | None) -> None: ...
    def add_emergency_check(self, check: EmergencyCheck) -> None: ...
    def emergency_checks(self, share_id: str) -> list[EmergencyCheck]: ...


@runtime_checkable
class AuditRepository(Protocol):
    """The append-only, hash-chained audit trail, its prune anchors, and the free text it holds
    only as a SHA-256 (kept with its entry's lifetime, G-RET-1)."""

    def append_audit(
        self, at: str, actor: str, action: str, entry_id: str | None, details: str,
        prev_hash: str, hash_: str,
    ) -> int: ...
    def last_audit(self) -> tuple[int, str] | None: ...
    def audit_hash(self, seq: int) -> str | None:
        """The hash of record `seq`, None if the trail holds no such record (one query: the
        head anchor's check after every write)."""
        ...
    def last_audit_details(self, action: str) -> str | None:
        """The details (JSON text) of the newest audit record of `action`, if any."""
        ...
    def audit_anchor(self) -> tuple[int, str] | None:
        """The (seq, hash) of the newest pruned record: the base the chain verifies from."""
        ...
    def prune_audit(self, through_seq: int, hash_: str, record_at: str, pruned_at: str,
                    records: int) -> None:
        """Anchor (seq, hash) and delete every record up to it, in the caller's transaction."""
        ...
    def audit_rows(self, since_seq: int = 0) -> Iterator[AuditRow]: ...
    def add_audit_text(self, entry_id: str, sha256: str, text: str) -> None: ...
    def audit_text(self, entry_id: str, sha256: str) -> str | None: ...


@runtime_checkable
class ReviewRepository(Protocol):
    """Periodic reviews of registrations (G-REV-1)."""

    def add_review(self, review: EntryReview) -> None: ...
    def last_reviews(self) -> dict[str, datetime]:
        """entry_id -> when it was last reviewed."""
        ...
    def reviews(self, entry_id: str) -> list[EntryReview]: ...


@runtime_checkable
class RequestRepository(Protocol):
    """The request desk's data requests: disclosure, correction, stop-use (G-DSR-1..4).

    Reached as `RegistryRepository.requests`, not mixed into the composite, as its
    names (`add`, `get`, `all`) are the desk's own.
    """

    def add(self, request: DataRequest) -> None: ...
    def update(self, request: DataRequest) -> None: ...
    def get(self, request_id: str) -> DataRequest | None: ...
    def all(self) -> list[DataRequest]: ...
    def overdue(self, now: datetime) -> list[DataRequest]: ...
    def by_origin(self, member: str, origin_request_id: str) -> DataRequest | None: ...
    def forwards_to_send(self, member: str) -> list[DataRequest]:
        """Requests forwarded to `member` whose arrival it has not acknowledged yet."""
        ...
    def answers_to_send(self, member: str) -> list[DataRequest]:
        """Requests `member` forwarded here, answered, the answer not acknowledged yet."""
        ...
    def mark_forward_acked(self, member: str, request_ids: Sequence[str]) -> None: ...
    def mark_answer_acked(self, member: str, origin_request_ids: Sequence[str]) -> None: ...
    def closed_with_personal_text(self, answered_before: datetime) -> list[str]:
        """Closed requests answered before the moment that still hold contact or free text."""
        ...
    def wipe_personal_text(self, request_ids: Sequence[str]) -> None:
        """Blank contact, summary and answer text; kind, dates and outcome stay (issue 10)."""
        ...
    def held_templates(self, pack: str) -> list[TemplateRecord]:
        """Templates of every entry that still holds face data (proposed or active, suspended
        or not, own or imported): everything a person may ask about."""
        ...


@runtime_checkable
class BreachRepository(Protocol):
    """Personal-data breach incidents and the steps recorded against them (G-BRE-1..4)."""

    def add_breach_incident(self, incident: BreachIncident) -> None:
        """The incident as opened (its triage too, if given); steps follow by
        `add_breach_action`, so an incident that already carries some is refused."""
        ...
    def breach_incident(self, incident_id: str) -> BreachIncident | None:
        """The incident with exactly this id, with its steps in the order recorded."""
        ...
    def breach_incidents(self) -> list[BreachIncident]:
        """Every incident, earliest discovery first (ties by id)."""
        ...
    def set_breach_triage(self, incident_id: str, triage: Triage) -> None:
        """Record (or replace) the rule-7 test; NotFoundError for an unknown incident."""
        ...
    def add_breach_action(self, incident_id: str, action: RecordedAction) -> None:
        """One containment or reporting step; NotFoundError for an unknown incident."""
        ...


@runtime_checkable
class StopUseRepository(Protocol):
    """`entry_stop_use_rights`: who may ask for use to stop after a reportable leak (G-BRE-4)."""

    def add_stop_use_right(self, right: StopUseRight) -> bool:
        """Mark the right; False when the entry already has it for that incident (kept as is)."""
        ...
    def stop_use_rights(self, entry_id: str | None = None) -> list[StopUseRight]:
        """Oldest first (then by incident and entry); with `entry_id`, that entry's only."""
        ...


@runtime_checkable
class RegistryRepository(
    UnitOfWork, StoreRepository, UserRepository, SessionRepository, DeviceRepository,
    EntryRepository,
    FaceDataRepository, IndexRepository, AlertRepository, SchemeRepository, OutboundRepository,
    InboundRepository, EmergencyShareRepository, AuditRepository, ReviewRepository,
    BreachRepository, StopUseRepository, Protocol,
):
    """Every aggregate on one transaction boundary: what `RegistryContext.repo` provides."""

    @property
    def requests(self) -> RequestRepository:
        """The request desk's store, on the same transaction boundary."""
        ...


class UserStore(UserRepository, StoreRepository, UnitOfWork, Protocol):
    """What the account rules write: users, inside a unit of work."""


class AuditStore(AuditRepository, UnitOfWork, Protocol):
    """What the audit trail writes: its records, pruning inside a unit of work."""

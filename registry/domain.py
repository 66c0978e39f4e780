"""The registry's vocabulary: roles, entry states, offence categories, records.

Plain frozen dataclasses: the storage layer fills them, the services decide
with them, nothing here touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Role(str, Enum):
    """G-SEC-1: named staff with roles; the responsible person is a manager."""

    STAFF = "staff"  # proposes registrations
    MANAGER = "manager"  # responsible person: approves, rejects, corrects, erases
    ADMIN = "admin"  # users, configuration, keys, backups
    AUDITOR = "auditor"  # reads the audit trail and reports; never sees a face


class EntryState(str, Enum):
    PROPOSED = "proposed"
    ACTIVE = "active"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # G-REG-3: a wrong entry taken back
    EXPIRED = "expired"  # G-REG-4: retention ran out
    ERASED = "erased"  # erasure on request or by decision

    @property
    def is_final(self) -> bool:
        """Final states hold no face data any more: only a tombstone remains."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {EntryState.REJECTED, EntryState.WITHDRAWN, EntryState.EXPIRED, EntryState.ERASED}
)


class OffenceCategory(str, Enum):
    """G-REG-5: the only categories that may be registered."""

    THEFT = "theft"  # 万引き
    VOYEURISM = "voyeurism"  # 盗撮
    PROPERTY_DAMAGE = "property_damage"  # 器物損壊
    ASSAULT = "assault"  # 暴行・傷害
    PUBLIC_INDECENCY = "public_indecency"  # 公然わいせつ
    NUISANCE = "nuisance"  # 迷惑行為


class ConfirmationKind(str, Enum):
    """G-REG-2: how the offence was objectively confirmed."""

    POLICE_REPORT = "police_report"  # 被害届
    OTHER = "other"  # e.g. a court record or the offender's written admission


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    role: Role
    trained_at: datetime | None  # G-SEC-1: privacy training recorded
    active: bool

    @property
    def trained(self) -> bool:
        return self.trained_at is not None


@dataclass(frozen=True)
class IncidentInput:
    """What a person states about one incident when proposing or adding a re-offence."""

    category: OffenceCategory
    occurred_at: datetime
    confirmation_kind: ConfirmationKind
    confirmation_ref: str  # e.g. the police damage-report number
    damage: str = ""
    description: str = ""


@dataclass(frozen=True)
class Incident:
    incident_id: int
    entry_id: str
    store_id: str
    category: OffenceCategory
    occurred_at: datetime
    confirmation_kind: ConfirmationKind
    confirmation_ref: str
    damage: str
    description: str
    recorded_by: int
    recorded_at: datetime


@dataclass(frozen=True)
class Entry:
    """One watchlist subject. `display_name` is personal data that never leaves the store."""

    entry_id: str
    state: EntryState
    store_id: str
    features: str
    display_name: str
    proposed_by: int
    proposed_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str
    expires_at: datetime | None
    revision: int
    closed_at: datetime | None
    closed_reason: str


@dataclass(frozen=True)
class TemplateRecord:
    template_id: int
    entry_id: str
    pack: str
    vector: bytes  # float32, unit length
    image_id: str
    quality: str  # the gate's verdict as JSON, kept for audits of G-REG-1


@dataclass(frozen=True)
class IndexChanges:
    """What the published index changed from version `since` to `version` (issue 15, item 4).

    Netted over every logged version in between: a template added and removed
    again in between is in neither map, one removed and added back (an entry
    suspended, then lifted) is in neither either. Template id -> entry id.
    """

    since: int
    version: int
    added: dict[int, str]
    removed: dict[int, str]


def net_index_changes(since: int, version: int,
                      rows: list[tuple[int, int, str, bool]]) -> IndexChanges:
    """Fold logged rows (version, template id, entry id, added), in version order, into one
    change; the one rule both back-ends share."""
    added: dict[int, str] = {}
    removed: dict[int, str] = {}
    for _, template_id, entry_id, was_added in rows:
        if was_added:
            if removed.pop(template_id, None) is None:
                added[template_id] = entry_id
        elif added.pop(template_id, None) is None:
            removed[template_id] = entry_id
    return IndexChanges(since, version, added, removed)


@dataclass(frozen=True)
class EvidenceRecord:
    image_id: str
    entry_id: str
    sha256: str
    masked_faces: int
    added_at: datetime


@dataclass(frozen=True)
class Device:
    """An in-store edge box allowed to call the registry. Its token is never held, only a hash."""

    device_id: int
    name: str
    created_at: datetime
    active: bool


INDEX_STATES = ("none", "current", "stale")


@dataclass(frozen=True)
class BoxStatus:
    """A box's last report: can it still alert? Counts and states only, never a person.

    Kept in the registry database (one row per device, replaced by each
    report), so every API worker on every host shows the same board.
    """

    device: str
    reported_at: datetime
    index_version: int | None
    index_state: str  # one of INDEX_STATES
    outbox_pending: int
    cameras_live: int
    cameras_total: int

    @property
    def blind(self) -> bool:
        """The box cannot confirm its watchlist is current, so it raises no alert (fail closed)."""
        return self.index_state == "stale"


class AlertStatus(str, Enum):
    """A match is a lead, not a verdict: staff confirm or dismiss every alert."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    LAPSED = "lapsed"  # G-RET-1: nobody judged it within open_alert_days; snapshot erased


@dataclass(frozen=True)
class Alert:
    """One match reported by an edge box. The snapshot is an encrypted evidence image.

    `snapshot_image_id` is None once the entry's face data was erased (G-REG-4):
    the record of the alert stays, the picture of the person does not.
    """

    alert_id: str
    device: str
    camera: str
    detected_at: datetime
    received_at: datetime
    score: float
    threshold: float
    entry_id: str
    index_version: int
    snapshot_image_id: str | None
    status: AlertStatus
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str


@dataclass(frozen=True)
class WebSession:
    """A person's login on the tablet pages or the API, held by the server.

    `session_id` is the SHA-256 of the token in the browser's cookie: a copy of
    the database (a backup, a stolen disk) holds no usable session.
    """

    session_id: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    csrf_token: str
    expires_at: datetime  # absolute end, however busy the session is


@dataclass(frozen=True)
class LoginFailures:
    """Consecutive failed logins for one user name (known or not) and any lock on it."""

    name_sha256: str  # the name as typed is not kept (it may be a mistyped password)
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None


# --- joint use (G-SHR-1..7) ---------------------------------------------------------


@dataclass(frozen=True)
class ImportedEntry:
    """Where an entry received from a member came from. The local entry is not editable here."""

    entry_id: str  # the local id (never the origin's: a member cannot choose ids here)
    origin_member: str
    origin_entry_id: str
    origin_revision: int
    origin_expires_at: datetime
    imported_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SentItem:
    """One thing a bundle carried about one of this store's entries."""

    entry_id: str
    kind: str  # entry | correction | tombstone | suspend | unsuspend
    revision: int


@dataclass(frozen=True)
class SentBundle:
    """A bundle exported to a member and not yet acknowledged."""

    member_id: str
    bundle_sha256: str
    sequence: int
    created_at: datetime
    items: tuple[SentItem, ...]


@dataclass(frozen=True)
class HeldCopy:
    """What a member acknowledged holding of one of this store's entries."""

    member_id: str
    entry_id: str
    revision: int
    suspended: bool
    closed: bool  # the member confirmed the erasure


@dataclass(frozen=True)
class InboundState:
    """The last bundle applied from one member, and the receipt that was issued for it."""

    member_id: str
    last_sequence: int
    bundle_sha256: str
    applied_at: datetime
    receipt: bytes


@dataclass(frozen=True)
class ErasureConfirmation:
    """A member's signed receipt says it erased its copy of one of this store's entries."""

    entry_id: str
    member_id: str
    sequence: int
    confirmed_at: datetime  # when the member applied it (its receipt says)
    recorded_at: datetime  # when the receipt was applied here


@dataclass(frozen=True)
class EmergencyShare:
    """G-SHR-6: one provision of one entry to one named recipient outside the scheme."""

    share_id: str
    entry_id: str
    recipient: str
    requested_by: int
    requested_at: datetime
    state: str  # open | provided | cancelled
    provided_at: datetime | None


@dataclass(frozen=True)
class EmergencyCheck:
    """One person's recorded check of the three requirements, each with a reason."""

    share_id: str
    user_id: int
    role: Role
    present_danger: str
    necessity: str
    proportionality: str
    checked_at: datetime


# --- requests from the people registered (G-DSR-1..4) and periodic review (G-REV-1) -----------


class RequestKind(str, Enum):
    """What a person asks the desk for (APPI 33-35; G-DSR-1..3, G-SHR-4 反論の機会)."""

    DISCLOSURE = "disclosure"  # 開示
    CORRECTION = "correction"  # 訂正
    STOP_USE = "stop-use"  # 利用停止
    ERASURE = "erasure"  # 消去
    COMPLAINT = "complaint"  # 苦情
    OBJECTION = "objection"  # 反論


class RequestStatus(str, Enum):
    OPEN = "open"
    FORWARDED = "forwarded"  # about an imported entry: sent to the origin store, awaiting it
    ANSWERED = "answered"
    REFUSED = "refused"

    @property
    def is_closed(self) -> bool:
        return self in (RequestStatus.ANSWERED, RequestStatus.REFUSED)


class IdentityMethod(str, Enum):
    """How the requester's identity was checked (G-DSR-4). The document itself is not kept."""

    DRIVERS_LICENCE = "drivers_licence"
    PASSPORT = "passport"
    MY_NUMBER_CARD = "my_number_card"
    RESIDENCE_CARD = "residence_card"
    HEALTH_INSURANCE_CARD = "health_insurance_card"
    OTHER_OFFICIAL = "other_official"


class RefusalGround(str, Enum):
    """The only grounds a request may be refused on; a reason is recorded with each.

    APPI 33(2) (disclosure) lists the first three; APPI 34/35 oblige correction,
    stop-use and erasure only where the facts are wrong or the use unlawful.
    G-DSR-1: a nuisance-act entry does not qualify for the harm exception by itself.
    """

    HARM_TO_PERSON_OR_OTHERS = "appi_33_2_i"  # life, body, property or rights of anyone harmed
    SERIOUS_BUSINESS_HINDRANCE = "appi_33_2_ii"  # serious hindrance to the business
    VIOLATES_OTHER_LAW = "appi_33_2_iii"  # disclosure would break another law
    FACTS_CORRECT = "appi_34_facts_correct"  # correction: the recorded facts are right
    USE_LAWFUL = "appi_35_use_lawful"  # stop-use/erasure/objection: the use meets the law


DISCLOSURE_GROUNDS = frozenset({RefusalGround.HARM_TO_PERSON_OR_OTHERS,
                                RefusalGround.SERIOUS_BUSINESS_HINDRANCE,
                                RefusalGround.VIOLATES_OTHER_LAW})
REFUSAL_GROUNDS: dict[RequestKind, frozenset[RefusalGround]] = {
    RequestKind.DISCLOSURE: DISCLOSURE_GROUNDS,
    RequestKind.CORRECTION: frozenset({RefusalGround.FACTS_CORRECT}),
    RequestKind.STOP_USE: frozenset({RefusalGround.USE_LAWFUL}),
    RequestKind.ERASURE: frozenset({RefusalGround.USE_LAWFUL}),
    RequestKind.OBJECTION: frozenset({RefusalGround.USE_LAWFUL}),
    RequestKind.COMPLAINT: frozenset(),  # a complaint is always answered
}


@dataclass(frozen=True)
class DataRequest:
    """One request or complaint at this desk, or one a member forwarded here.

    `contact` (how to reach the requester) and `summary` are personal data; they
    stay in this store's encrypted database, never in the audit trail, a bundle,
    a list or a log. A forwarded request carries neither.
    """

    request_id: str
    kind: RequestKind
    status: RequestStatus
    received_at: datetime
    due_at: datetime
    identity_method: IdentityMethod
    identity_checked_by: int | None  # None: checked at the member that forwarded it
    by_agent: bool
    contact: str
    summary: str
    opened_by: int | None
    assigned_to: int | None
    entry_id: str | None  # the local entry the search found (None: not found / not searched)
    forwarded_to: str | None  # the origin member an imported entry's request went to
    origin_member: str | None  # set when a member forwarded this request here
    origin_request_id: str | None
    answered_by: int | None
    answered_at: datetime | None
    answer: str  # what was done: disclosed, corrected, suspended, erased, replied, not_held
    refusal_ground: RefusalGround | None
    answer_reason: str

    def overdue(self, now: datetime) -> bool:
        return not self.status.is_closed and self.due_at < now


class ReviewDecision(str, Enum):
    KEEP = "keep"
    WITHDRAW = "withdraw"


@dataclass(frozen=True)
class EntryReview:
    """G-REV-1 (見直しの機会): a manager other than the proposer looked at an entry again."""

    entry_id: str
    decision: ReviewDecision
    reason: str
    reviewed_by: int
    reviewed_at: datetime

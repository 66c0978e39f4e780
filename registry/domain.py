"""The registry's vocabulary: roles, entry states, offence categories, records.

Plain frozen dataclasses: the storage layer fills them, the services decide
with them, nothing here touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any
from zoneinfo import ZoneInfo


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
class Store:
    """One store of the operator (issue 15, item 1): its boxes, staff and alerts belong to it.

    A single-store registry has one, `registry.store_id`; a chain has hundreds.
    The watchlist, approvals, retention, requests and erasure are the operator's,
    chain-wide: a store is where alerts happen and who may see them (G-SEC-1).
    """

    store_id: str
    name: str


@dataclass(frozen=True)
class User:
    """A named person with one role (G-SEC-1), scoped to their store.

    `store_id` None: the chain office (or a single store's own staff, registered
    before stores existed): the role reaches every store. Otherwise the role
    reaches that store's alerts, boxes and precision only.
    """

    user_id: int
    username: str
    role: Role
    trained_at: datetime | None  # G-SEC-1: privacy training recorded
    active: bool
    store_id: str | None = None

    @property
    def chain_wide(self) -> bool:
        return self.store_id is None

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
    store_id: str  # the store it stands in; its alerts are that store's


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
    store_id: str  # the store of the device that sent it: who may see and judge it


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


# --- personal-data breach incidents (G-BRE-1..4) ------------------------------------------------
# The incident record and the rule-8 deadlines it carries: here rather than in
# `registry.breach` so the storage layer fills them without importing a service.
# Days count from the day the store learned of the leak, that day being day 1
# (PPC Q&A), on the Japanese calendar.

JST = ZoneInfo("Asia/Tokyo")
PRELIMINARY_TARGET_DAY, PRELIMINARY_DAY, FINAL_DAY, FINAL_DAY_MALICIOUS = 3, 5, 30, 60


class Ground(StrEnum):
    """The four grounds of APPI rule 7 that make a leak reportable."""

    SENSITIVE = "sensitive"  # 1号: 要配慮個人情報 (records that may show a criminal past)
    PROPERTY = "property"  # 2号: 財産的被害が生じるおそれ
    MALICIOUS = "malicious"  # 3号: 不正の目的 (attack, theft, insider)
    OVER_1000 = "over-1000"  # 4号: 本人の数が1,000人を超える

    @property
    def label(self) -> str:
        return {
            Ground.SENSITIVE: "第1号（要配慮個人情報）",
            Ground.PROPERTY: "第2号（財産的被害）",
            Ground.MALICIOUS: "第3号（不正の目的）",
            Ground.OVER_1000: "第4号（千人超）",
        }[self]


class Containment(StrEnum):
    """Containment and reporting steps recorded against an incident (G-BRE-3)."""

    DISABLE_DEVICES = "disable-devices"
    ROTATE_KEY = "rotate-key"
    STOP_EDGE = "stop-edge"
    PRESERVE_EVIDENCE = "preserve-evidence"
    REPORT_DRAFTED = "report-drafted"
    REPORT_SUBMITTED = "report-submitted"


@dataclass(frozen=True)
class RegistryCounts:
    """What the registry held when the incident was opened: the persons the leak may touch."""

    entries: int  # one entry is one person
    images: int
    templates: int
    named_entries: int  # entries with a recorded name
    partners: int  # joint-use member stores other than this one
    by_state: dict[str, int]


@dataclass(frozen=True)
class Triage:
    grounds: tuple[Ground, ...]
    reason: str
    by: str
    at: datetime

    @property
    def reportable(self) -> bool:
        return bool(self.grounds)


@dataclass(frozen=True)
class RecordedAction:
    kind: Containment
    actor: str
    at: datetime
    details: dict[str, Any]


@dataclass(frozen=True)
class Deadlines:
    """Calendar days in Japan; `final` is 60 days only when ground 3 (malicious) applies."""

    discovered_on: date
    preliminary_target: date
    preliminary: date
    final: date


class IncidentState(StrEnum):
    """Where an incident stands, for lists: what the responders must do next."""

    UNTRIAGED = "untriaged"  # the rule-7 test is not recorded yet
    NOT_REPORTABLE = "not-reportable"  # no ground applies (the reason is recorded)
    REPORTING = "reporting"  # reportable; a report to the Commission is still to be sent
    REPORTED = "reported"  # reportable; both reports recorded as submitted


@dataclass(frozen=True)
class DeadlineState:
    """One Commission report's deadline as of `now` (G-BRE-1): due, days left, sent or not."""

    report: str  # "preliminary" (速報) or "final" (確報)
    label: str
    due: date
    days_left: int  # negative once past
    submitted: bool

    @property
    def overdue(self) -> bool:
        return not self.submitted and self.days_left < 0

    def near(self, warn_days: int) -> bool:
        """Due within `warn_days` days (or past), and not sent yet."""
        return not self.submitted and self.days_left <= warn_days


@dataclass(frozen=True)
class BreachIncident:
    incident_id: str
    store_id: str
    discovered_at: datetime
    discovered_by: str
    how: str
    summary: str
    opened_by: str
    opened_at: datetime
    counts: RegistryCounts
    affected: tuple[str, ...]
    triage: Triage | None
    actions: tuple[RecordedAction, ...]

    @property
    def deadlines(self) -> Deadlines:
        return breach_deadlines(self.discovered_at,
                                malicious=self.triage is not None
                                and Ground.MALICIOUS in self.triage.grounds)

    def submitted(self, report: str) -> bool:
        return any(a.kind is Containment.REPORT_SUBMITTED and a.details.get("report") == report
                   for a in self.actions)

    @property
    def state(self) -> IncidentState:
        if self.triage is None:
            return IncidentState.UNTRIAGED
        if not self.triage.reportable:
            return IncidentState.NOT_REPORTABLE
        if self.submitted("preliminary") and self.submitted("final"):
            return IncidentState.REPORTED
        return IncidentState.REPORTING

    def deadline_states(self, now: datetime) -> list[DeadlineState]:
        """The 速報 and 確報 deadlines as of `now`; none once triaged as not reportable.

        Before triage they are shown as if reportable: the clock runs from discovery.
        """
        if self.triage is not None and not self.triage.reportable:
            return []
        d, today = self.deadlines, now.astimezone(JST).date()
        return [DeadlineState(report, label, due, (due - today).days, self.submitted(report))
                for report, label, due in (("preliminary", "速報 preliminary report",
                                            d.preliminary),
                                           ("final", "確報 final report", d.final))]


def breach_day(n: int, start: date) -> date:
    """Day `n` counting `start` as day 1."""
    return start + timedelta(days=n - 1)


def breach_deadlines(discovered_at: datetime, *, malicious: bool) -> Deadlines:
    start = discovered_at.astimezone(JST).date()
    return Deadlines(start, breach_day(PRELIMINARY_TARGET_DAY, start),
                     breach_day(PRELIMINARY_DAY, start),
                     breach_day(FINAL_DAY_MALICIOUS if malicious else FINAL_DAY, start))


@dataclass(frozen=True)
class StopUseRight:
    """A person who may ask for use to stop after a reportable leak (G-BRE-4, APPI 35(5))."""

    entry_id: str
    incident_id: str
    since: datetime

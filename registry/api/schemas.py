"""Request and response bodies of the API, one family per resource.

`AlertIn` is what a box sends (defined beside the service that receives it,
`registry.alerts.queue`); `AlertReceipt` is all the box gets back. The people's
models follow: `*In` bodies refuse unknown fields, `*Out` answers hold no
face template, and images travel only as PNG from their own routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.alerts.queue import AlertIn
from registry.clock import Timestamp
from registry.domain import (
    AlertStatus,
    ConfirmationKind,
    EntryState,
    IncidentInput,
    OffenceCategory,
    Role,
)
from registry.text import CONFIRMATION_REF, DAMAGE, DESCRIPTION, DISPLAY_NAME, FEATURES, REASON

__all__ = ["AlertIn", "AlertReceipt", "IndexVersionOut"]  # and the people's models below


class AlertReceipt(BaseModel):
    """The answer to an alert: stored now (201) or already stored before (200)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    created: bool


class BoxStatusIn(BaseModel):
    """A box's report on itself (every 30 s and on a change): counts and states only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_version: int | None = Field(ge=0, le=2**63 - 1)
    index_state: Literal["none", "current", "stale"]
    outbox_pending: int = Field(ge=0, le=10_000_000)
    cameras_live: int = Field(ge=0, le=1024)
    cameras_total: int = Field(ge=0, le=1024)


class IndexKeyOut(BaseModel):
    """The registry's current index key for a chain's box (base64 of 32 bytes); never logged."""

    model_config = ConfigDict(frozen=True)

    key: str


class IndexVersionOut(BaseModel):
    """The published index's version and pack, from its clear header (cheap to poll)."""

    model_config = ConfigDict(frozen=True)

    version: int
    pack: str


# --- people ---------------------------------------------------------------------------

# Free text: the registry's one rule (`registry.text`), refused here before anything runs.
Reason = Annotated[str, REASON]


class LoginIn(BaseModel):
    """A person's credentials (JSON body or form fields of the same names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """Who is logged in, and the CSRF token every state-changing request must carry."""

    model_config = ConfigDict(frozen=True)

    username: str
    role: Role
    trained: bool
    csrf_token: str
    expires_at: datetime


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Reason = ""


class CorrectIn(BaseModel):
    """G-REG-3: what to correct (at least one field) and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: Reason
    features: Annotated[str, FEATURES] | None = None
    display_name: Annotated[str, DISPLAY_NAME] | None = None


class IncidentIn(BaseModel):
    """One objectively confirmed offence (G-REG-2) of a registrable category (G-REG-5).

    `occurred_at`: an ISO date-time with its offset, or a date (taken as 00:00 UTC),
    within the registry's range (`registry.clock.Timestamp`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: OffenceCategory
    occurred_at: Timestamp
    confirmation_kind: ConfirmationKind = ConfirmationKind.POLICE_REPORT
    confirmation_ref: Annotated[str, Field(min_length=1), CONFIRMATION_REF]
    damage: Annotated[str, DAMAGE] = ""
    description: Annotated[str, DESCRIPTION] = ""

    def to_input(self) -> IncidentInput:
        return IncidentInput(self.category, self.occurred_at, self.confirmation_kind,
                             self.confirmation_ref.strip(), self.damage.strip(),
                             self.description.strip())


class ProposalFromAlertIn(BaseModel):
    """Propose the person an alert's snapshot shows, with the incident that justifies it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: IncidentIn
    features: Annotated[str, FEATURES] = ""
    display_name: Annotated[str, DISPLAY_NAME] = ""


class ProposalOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: str
    templates: int
    refused_photos: list[str]


class QualityOut(BaseModel):
    """The registration gate's verdict on one photo (G-REG-1), before anything is stored."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reasons: list[str]
    faces: int
    bystanders_masked: int
    metrics: dict[str, float]


class AlertOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    store_id: str
    device: str
    camera: str
    detected_at: datetime
    received_at: datetime
    score: float
    threshold: float
    entry_id: str
    entry_state: str
    entry_evidence_images: list[str]
    index_version: int
    has_snapshot: bool
    status: AlertStatus
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str


class PrecisionOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    confirmed: int
    dismissed: int
    open: int
    precision: float | None


class DevicePrecisionOut(PrecisionOut):
    device: str


class StorePrecisionOut(PrecisionOut):
    """Per store: confirmed / (confirmed + dismissed); null before any decision."""

    store_id: str
    by_device: list[DevicePrecisionOut]


class IncidentOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: OffenceCategory
    occurred_at: datetime
    store_id: str
    confirmation_kind: ConfirmationKind
    confirmation_ref: str
    damage: str
    description: str


class EntryOut(BaseModel):
    """What staff and managers see of an entry: never the face templates themselves."""

    model_config = ConfigDict(frozen=True)

    entry_id: str
    state: EntryState
    store_id: str
    display_name: str
    features: str
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str
    expires_at: datetime | None
    closed_at: datetime | None
    closed_reason: str
    revision: int
    incidents: list[IncidentOut]
    templates: int
    evidence_images: list[str]
    # Reportable leaks after which the person may ask for use to stop (G-BRE-4).
    stop_use_rights: list[str] = []


class PendingProposalOut(EntryOut):
    approvable_by_me: bool
    not_approvable_because: str


class ChainProblemOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    reason: str


class AuditVerifyOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    records: int
    problem: ChainProblemOut | None


class AuditRecordOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    at: datetime
    actor: str
    action: str
    entry_id: str | None
    details: dict[str, Any]
    hash: str

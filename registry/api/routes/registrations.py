"""Registrations: check a photo, propose (from photos or an alert), a second person decides.

Proposing needs a trained staff member or manager (G-SEC-1); approving and
rejecting a trained manager who is not the proposer (G-REG-2: 403 with the
rule for the proposer, 409 for a proposal decided meanwhile).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile
from pydantic import ValidationError

from kernel.errors import RuleViolationError
from registry.api.deps import ContextDep, EngineDep, HostDep, NowDep, require_roles
from registry.api.schemas import (
    EntryOut,
    IncidentIn,
    PendingProposalOut,
    ProposalFromAlertIn,
    ProposalOut,
    QualityOut,
    ReasonIn,
)
from registry.api.uploads import MAX_PHOTOS, photo_from_upload, photos_from_uploads
from registry.domain import ConfirmationKind, OffenceCategory, Role, User
from registry.text import CONFIRMATION_REF, DAMAGE, DESCRIPTION, DISPLAY_NAME, FEATURES
from registry.watchlist.approval import (
    ProposalResult,
    approve,
    assess_photo,
    pending_proposals,
    propose,
    propose_from_alert,
    reject,
)
from registry.watchlist.entries import view

router = APIRouter(prefix="/api/v1", tags=["registrations"])

StaffOrManager = Annotated[User, Depends(require_roles(Role.STAFF, Role.MANAGER))]
Manager = Annotated[User, Depends(require_roles(Role.MANAGER))]
EntryId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the entry's id")]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the alert's id")]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "not logged in"},
    403: {"description": "wrong role, no recorded training, own proposal, or no CSRF token"},
}
_UPLOAD_ERRORS: dict[int | str, dict[str, str]] = {
    413: {"description": "a photo (or the request) is too large"},
    422: {"description": "not an image, no usable face (G-REG-1), or a bad field"},
    **_ERRORS,
}


def _proposal_out(result: ProposalResult) -> ProposalOut:
    return ProposalOut(entry_id=result.entry_id, templates=result.templates,
                       refused_photos=list(result.refused_photos))


@router.post("/quality-check", response_model=QualityOut, responses=_UPLOAD_ERRORS)
def quality_check(photo: Annotated[UploadFile, File(description="one photo")],
                  engine: EngineDep, host: HostDep, user: StaffOrManager) -> QualityOut:
    """Would this photo pass the registration gate (G-REG-1)? Nothing is stored."""
    assessment = assess_photo(engine, host.registration_quality, photo_from_upload(photo).image)
    return QualityOut.model_validate(assessment.to_dict())


@router.post("/proposals", status_code=201, response_model=ProposalOut,
             responses=_UPLOAD_ERRORS)
def create_proposal(
    host: HostDep,
    photos: Annotated[list[UploadFile], File(description=f"1 to {MAX_PHOTOS} photos, 8 MB each")],
    category: Annotated[OffenceCategory, Form()],
    occurred_at: Annotated[str, Form(max_length=40,
                                     description="ISO date-time with offset, or a date")],
    confirmation_ref: Annotated[str, Form(min_length=1,
                                          description="e.g. the police damage-report number"),
                                CONFIRMATION_REF],
    engine: EngineDep, ctx: ContextDep, user: StaffOrManager, now: NowDep,
    confirmation_kind: Annotated[ConfirmationKind, Form()] = ConfirmationKind.POLICE_REPORT,
    damage: Annotated[str, Form(), DAMAGE] = "",
    description: Annotated[str, Form(), DESCRIPTION] = "",
    features: Annotated[str, Form(), FEATURES] = "",
    name: Annotated[str, Form(description="never leaves this store"), DISPLAY_NAME] = "",
) -> ProposalOut:
    """Propose a registration from photos and the incident; a different manager approves it."""
    try:
        incident = IncidentIn(category=category, occurred_at=occurred_at,
                              confirmation_kind=confirmation_kind,
                              confirmation_ref=confirmation_ref, damage=damage,
                              description=description)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise RuleViolationError(f"{where}: {problem['msg']}") from None
    result = propose(ctx, engine, host.registration_quality, actor=user,
                     photos=photos_from_uploads(photos), incident=incident.to_input(),
                     features=features, display_name=name, now=now)
    return _proposal_out(result)


@router.post("/proposals/from-alert/{alert_id}", status_code=201, response_model=ProposalOut,
             responses={404: {"description": "no such alert"},
                        409: {"description": "the alert's snapshot was erased"},
                        **_UPLOAD_ERRORS})
def create_proposal_from_alert(alert_id: AlertId, body: ProposalFromAlertIn, host: HostDep,
                               engine: EngineDep, ctx: ContextDep, user: StaffOrManager,
                               now: NowDep) -> ProposalOut:
    """Propose the person in an alert's snapshot (the face that matched is the subject)."""
    result = propose_from_alert(
        ctx, engine, host.registration_quality, actor=user,
        alert_id=alert_id, incident=body.incident.to_input(), features=body.features,
        display_name=body.display_name, now=now)
    return _proposal_out(result)


@router.get("/proposals", response_model=list[PendingProposalOut], responses=_ERRORS)
def list_proposals(ctx: ContextDep, user: StaffOrManager) -> list[PendingProposalOut]:
    """Proposals awaiting a decision, with whether the caller may approve each."""
    return [PendingProposalOut.model_validate(p.to_dict())
            for p in pending_proposals(ctx, actor=user)]


@router.post("/proposals/{entry_id}/approve", response_model=EntryOut, responses={
    404: {"description": "no such entry"}, 409: {"description": "not awaiting a decision"},
    **_ERRORS})
def approve_proposal(entry_id: EntryId, body: ReasonIn, ctx: ContextDep, user: Manager,
                     now: NowDep) -> EntryOut:
    """G-REG-2: a trained manager other than the proposer activates the entry."""
    approve(ctx, actor=user, entry_id=entry_id, reason=body.reason, now=now)
    return EntryOut.model_validate(view(ctx, actor=user, entry_id=entry_id).to_dict())


@router.post("/proposals/{entry_id}/reject", response_model=EntryOut, responses={
    404: {"description": "no such entry"}, 409: {"description": "not awaiting a decision"},
    **_ERRORS})
def reject_proposal(entry_id: EntryId, body: ReasonIn, ctx: ContextDep, user: Manager,
                    now: NowDep) -> EntryOut:
    """Turn the proposal down; its photos and templates are erased at once."""
    reject(ctx, actor=user, entry_id=entry_id, reason=body.reason, now=now)
    return EntryOut.model_validate(view(ctx, actor=user, entry_id=entry_id).to_dict())

"""The watchlist: entries with state, expiry and incidents; correct, withdraw, re-offence, erase.

Reading: staff, managers and admins (never auditors: the evidence images are
faces). Changing: managers (erasure on request also admins), with recorded
training, as the services require.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from registry.api.deps import ContextDep, NowDep, require_roles
from registry.api.schemas import CorrectIn, EntryOut, IncidentIn, ReasonIn
from registry.context import RegistryContext
from registry.domain import EntryState, Role, User
from registry.watchlist.entries import (
    add_reoffence,
    correct,
    erase,
    evidence_png,
    list_entries,
    view,
    withdraw,
)

router = APIRouter(prefix="/api/v1/watchlist", tags=["watchlist"])

Reader = Annotated[User, Depends(require_roles(Role.STAFF, Role.MANAGER, Role.ADMIN))]
Manager = Annotated[User, Depends(require_roles(Role.MANAGER))]
Eraser = Annotated[User, Depends(require_roles(Role.MANAGER, Role.ADMIN))]
EntryId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the entry's id")]
ImageId = Annotated[str, Path(pattern=r"^[0-9a-f-]{8,64}$", description="an evidence image id")]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "not logged in"},
    403: {"description": "wrong role, no recorded training, or no CSRF token"},
    404: {"description": "no such entry"},
}
_CHANGE_ERRORS: dict[int | str, dict[str, str]] = {
    409: {"description": "the entry is closed (or not active) meanwhile"},
    422: {"description": "no reason, nothing to correct, or a bad incident"},
    **_ERRORS,
}


def _out(ctx: RegistryContext, user: User, entry_id: str) -> EntryOut:
    return EntryOut.model_validate(view(ctx, actor=user, entry_id=entry_id).to_dict())


@router.get("", response_model=list[EntryOut], responses=_ERRORS)
def list_watchlist(ctx: ContextDep, user: Reader,
                   state: Annotated[list[EntryState] | None, Query()] = None) -> list[EntryOut]:
    """Entries (all, or `?state=active&state=proposed`), oldest proposal first."""
    return [EntryOut.model_validate(v.to_dict())
            for v in list_entries(ctx, actor=user, states=state)]


@router.get("/{entry_id}", response_model=EntryOut, responses=_ERRORS)
def read_entry(entry_id: EntryId, ctx: ContextDep, user: Reader) -> EntryOut:
    return _out(ctx, user, entry_id)


@router.get("/{entry_id}/evidence/{image_id}", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the masked evidence image"},
    **_ERRORS})
def evidence_image(entry_id: EntryId, image_id: ImageId, ctx: ContextDep,
                   user: Reader) -> Response:
    """One evidence image of the entry (bystanders masked), PNG."""
    return Response(evidence_png(ctx, actor=user, entry_id=entry_id, image_id=image_id),
                    media_type="image/png")


@router.post("/{entry_id}/correct", response_model=EntryOut, responses=_CHANGE_ERRORS)
def correct_entry(entry_id: EntryId, body: CorrectIn, ctx: ContextDep, user: Manager,
                  now: NowDep) -> EntryOut:
    """G-REG-3: correct the features or the name; the audit names the fields, not values."""
    correct(ctx, actor=user, entry_id=entry_id, reason=body.reason, now=now,
            features=body.features, display_name=body.display_name)
    return _out(ctx, user, entry_id)


@router.post("/{entry_id}/withdraw", response_model=EntryOut, responses=_CHANGE_ERRORS)
def withdraw_entry(entry_id: EntryId, body: ReasonIn, ctx: ContextDep, user: Manager,
                   now: NowDep) -> EntryOut:
    """G-REG-3: take back a wrong entry; its face data is erased at once."""
    withdraw(ctx, actor=user, entry_id=entry_id, reason=body.reason, now=now)
    return _out(ctx, user, entry_id)


@router.post("/{entry_id}/reoffence", response_model=EntryOut, responses=_CHANGE_ERRORS)
def add_entry_reoffence(entry_id: EntryId, body: IncidentIn, ctx: ContextDep, user: Manager,
                        now: NowDep) -> EntryOut:
    """G-REG-4: a new confirmed offence restarts the retention period."""
    add_reoffence(ctx, actor=user, entry_id=entry_id, incident=body.to_input(), now=now)
    return _out(ctx, user, entry_id)


@router.post("/{entry_id}/erase", response_model=EntryOut, responses=_CHANGE_ERRORS)
def erase_entry(entry_id: EntryId, body: ReasonIn, ctx: ContextDep, user: Eraser,
                now: NowDep) -> EntryOut:
    """G-DSR-2: erase on request or by decision; only a tombstone remains."""
    erase(ctx, actor=user, entry_id=entry_id, reason=body.reason, now=now)
    return _out(ctx, user, entry_id)

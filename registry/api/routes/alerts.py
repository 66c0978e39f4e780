"""Alerts for staff: review the match, confirm or dismiss it, and the store's precision figure.

Staff and managers only: the snapshot is a face, so auditors and admins get 403.
A store's people see their own store's alerts; the chain office every store's, or
one store's with `?store=` (issue 15, item 1). Another store's alert is a 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from registry.alerts.queue import (
    alert_snapshot_png,
    alert_view,
    alert_views,
    confirm_alert,
    dismiss_alert,
    precision,
)
from registry.api.deps import ContextDep, NowDep, require_roles
from registry.api.schemas import AlertOut, ReasonIn, StorePrecisionOut
from registry.config import STORE_ID_PATTERN
from registry.context import RegistryContext
from registry.domain import AlertStatus, Role, User

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

StaffOrManager = Annotated[User, Depends(require_roles(Role.STAFF, Role.MANAGER))]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the alert's id")]
StoreFilter = Annotated[str | None, Query(
    pattern=STORE_ID_PATTERN, description="one store's alerts (the chain office; a store's "
    "people always see their own store's)")]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "not logged in"},
    403: {"description": "wrong role, no recorded training, or no CSRF token"},
    404: {"description": "no such alert or store (or another store's)"},
}


@router.get("", response_model=list[AlertOut], responses=_ERRORS)
def list_alerts(ctx: ContextDep, user: StaffOrManager,
                status: Annotated[AlertStatus | None, Query()] = None,
                store: StoreFilter = None) -> list[AlertOut]:
    """Alerts, newest first; `?status=open` for the ones still to decide."""
    return [AlertOut.model_validate(v.to_dict())
            for v in alert_views(ctx, actor=user, status=status, store=store)]


@router.get("/precision", response_model=StorePrecisionOut, responses=_ERRORS)
def store_precision(ctx: ContextDep, user: StaffOrManager,
                    store: StoreFilter = None) -> StorePrecisionOut:
    """How many decided alerts were the registered person, for this store and each box."""
    return StorePrecisionOut.model_validate(precision(ctx, actor=user, store=store).to_dict())


@router.get("/{alert_id}/snapshot", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the masked snapshot"}, **_ERRORS})
def snapshot(alert_id: AlertId, ctx: ContextDep, user: StaffOrManager) -> Response:
    """The alert's snapshot (every face but the matched one masked), PNG."""
    return Response(alert_snapshot_png(ctx, actor=user, alert_id=alert_id),
                    media_type="image/png")


@router.post("/{alert_id}/confirm", response_model=AlertOut, responses={
    409: {"description": "already decided"}, **_ERRORS})
def confirm(alert_id: AlertId, body: ReasonIn, ctx: ContextDep, user: StaffOrManager,
            now: NowDep) -> AlertOut:
    """It is the registered person (checked by a trained person); the reason is optional."""
    confirm_alert(ctx, actor=user, alert_id=alert_id, reason=body.reason, now=now)
    return _one(ctx, user, alert_id)


@router.post("/{alert_id}/dismiss", response_model=AlertOut, responses={
    409: {"description": "already decided"}, 422: {"description": "no reason given"},
    **_ERRORS})
def dismiss(alert_id: AlertId, body: ReasonIn, ctx: ContextDep, user: StaffOrManager,
            now: NowDep) -> AlertOut:
    """A wrong match (someone else): the reason is required, the snapshot is erased."""
    dismiss_alert(ctx, actor=user, alert_id=alert_id, reason=body.reason, now=now)
    return _one(ctx, user, alert_id)


def _one(ctx: RegistryContext, user: User, alert_id: str) -> AlertOut:
    return AlertOut.model_validate(alert_view(ctx, actor=user, alert_id=alert_id).to_dict())

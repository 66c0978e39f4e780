"""The audit trail for auditors (and admins, managers): report, verification, records. No faces."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from registry.api.deps import ContextDep, NowDep, require_roles
from registry.api.schemas import AuditRecordOut, AuditVerifyOut, ChainProblemOut
from registry.clock import EARLIEST, Timestamp
from registry.domain import User
from registry.oversight.report import (
    MAX_RECORDS,
    OVERSIGHT_ROLES,
    audit_records,
    audit_report,
    verify_trail,
)

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Overseer = Annotated[User, Depends(require_roles(*OVERSIGHT_ROLES))]
From = Annotated[Timestamp | None, Query(alias="from",
                                         description="start (default: the beginning)")]
To = Annotated[Timestamp | None, Query(alias="to", description="end, exclusive (default: now)")]
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "not logged in"},
    403: {"description": "not an auditor, admin or manager"},
    422: {"description": "a bad period"},
}


def _period(start: datetime | None, end: datetime | None, now: datetime
            ) -> tuple[datetime, datetime]:
    return start or EARLIEST, end or now + timedelta(seconds=1)


@router.get("/report", responses=_ERRORS)
def report(ctx: ContextDep, user: Overseer, now: NowDep, start: From = None,
           end: To = None) -> dict[str, Any]:
    """Counts per kind of change in [from, to): registrations, approvals, erasures, alerts..."""
    first, last = _period(start, end, now)
    return audit_report(ctx, actor=user, start=first, end=last)


@router.get("/verify", response_model=AuditVerifyOut, responses=_ERRORS)
def verify(ctx: ContextDep, user: Overseer) -> AuditVerifyOut:
    """Walk the hash chain; the first record that was edited, deleted or re-ordered."""
    result = verify_trail(ctx, actor=user)
    problem = (ChainProblemOut(seq=result.problem.seq, reason=result.problem.reason)
               if result.problem else None)
    return AuditVerifyOut(ok=result.ok, records=result.records, problem=problem)


@router.get("/records", response_model=list[AuditRecordOut], responses=_ERRORS)
def records(ctx: ContextDep, user: Overseer, now: NowDep, start: From = None, end: To = None,
            limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 200) -> list[AuditRecordOut]:
    """The records in [from, to), newest first (ids, counts and hashes; no faces, no names)."""
    first, last = _period(start, end, now)
    return [AuditRecordOut.model_validate(r)
            for r in audit_records(ctx, actor=user, start=first, end=last, limit=limit)]

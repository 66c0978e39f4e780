"""The tablet pages: server-rendered HTML for staff, managers, admins and auditors.

Same services, same guards as the JSON API: every page names the roles that
may open it (`require_roles`), the session cookie identifies the person, and
every form posts the session's CSRF token (`csrf_token` field), checked by
`deps.current_session` before the route runs. Images are not served here: the
pages point at the role-guarded image routes of the API
(`/api/v1/alerts/{id}/snapshot`, `/api/v1/watchlist/{entry}/evidence/{image}`),
which never answer an auditor.

A form that succeeds redirects (303) to its page with a notice (`?done=<key>`);
one that fails shows its page again with one line saying why, and the status
the JSON API would give (see `registry.api.html.PageRoute`).

    GET  /login, POST /login, POST /logout, GET / (the role's first page)
    GET  /alerts                       POST /alerts/{id}/confirm | /alerts/{id}/dismiss
    GET  /propose, /propose/from-alert/{id}      POST /propose, /propose/check
    GET  /approvals                    POST /approvals/{id}/approve | /approvals/{id}/reject
    GET  /watchlist[?state=all]        POST /watchlist/{id}/correct | withdraw | reoffence
    GET  /incidents                    POST /incidents, /incidents/{id}/disable-devices |
         preserve-evidence | triage | drafts/{draft} | drafts/{draft}/submitted
    GET  /audit
    GET  /requests                     POST /reviews/{id}/keep | /reviews/{id}/withdraw
                                       POST /requests (open), /requests/{id}/search (photo),
                                            /requests/{id}/answer | /requests/{id}/refuse
    GET  /requests/{id}/disclosure, /requests/{id}/disclosure/{image}.png (the document)
"""

from __future__ import annotations

import hmac
import tempfile
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any, ClassVar

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from kernel.errors import AuthenticationError, RegistryError, RuleViolationError
from models.engine import FaceEngine
from models.quality import QualityPolicy
from registry.accounts.devices import boxes_needing_attention
from registry.accounts.sessions import SessionUser, log_out, resolve_session
from registry.accounts.stores import store_in_view
from registry.alerts.queue import (
    AlertView,
    alert_snapshot_png,
    alert_view,
    confirm_alert,
    dismiss_alert,
)
from registry.api.deps import (
    ContextDep,
    CurrentSession,
    EngineDep,
    GateDep,
    NowDep,
    WebDep,
    allow_public,
    get_gate,
    get_host,
    require_roles,
)
from registry.api.errors import status_of
from registry.api.html import (
    LOGIN_CSRF_COOKIE,
    PageRenderer,
    PageRoute,
    home_of,
    login_page,
    nav_page,
    render,
    safe_next,
    static_file,
)
from registry.api.page_data import (
    PhotoVerdict,
    alerts_data,
    approvals_data,
    audit_data,
    build_page,
    incidents_data,
    propose_data,
    requests_data,
    translator,
    watchlist_data,
)
from registry.api.routes.session import check_same_origin
from registry.api.schemas import IncidentIn
from registry.api.sessions import COOKIE_NAME, clear_session_cookie, log_in, set_session_cookie
from registry.api.uploads import decode_photo, photo_from_upload, photos_from_uploads
from registry.breach import incident as breach
from registry.breach.report import DEFAULT_BODY, DEFAULT_INQUIRY_DESK, Draft, make_draft
from registry.clock import parse_timestamp
from registry.config import STORE_ID_PATTERN, RegistrationCriteria
from registry.context import RegistryContext
from registry.domain import (
    ConfirmationKind,
    Ground,
    IdentityMethod,
    IncidentInput,
    RefusalGround,
    RequestKind,
    ReviewDecision,
    Role,
    User,
)
from registry.i18n import STORE_TZ
from registry.requests import desk
from registry.text import CONFIRMATION_REF, DAMAGE, DESCRIPTION, DISPLAY_NAME, FEATURES, REASON
from registry.watchlist.approval import (
    Photo,
    approve,
    assess_photo,
    propose,
    propose_from_alert,
    reject,
)
from registry.watchlist.entries import (
    add_reoffence,
    correct,
    view,
    withdraw,
)
from registry.watchlist.reviews import review

Anyone = Annotated[User, Depends(require_roles(*Role))]
StaffOrManager = Annotated[User, Depends(require_roles(Role.STAFF, Role.MANAGER))]
Manager = Annotated[User, Depends(require_roles(Role.MANAGER))]
Reader = Annotated[User, Depends(require_roles(Role.STAFF, Role.MANAGER, Role.ADMIN))]
Responder = Annotated[User, Depends(require_roles(Role.MANAGER, Role.ADMIN))]  # G-BRE-1..4
Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]
# The tablet's pages: opened by whom the navigation offers them to (`html.NAV`).
OpensAlerts = Annotated[User, Depends(nav_page("/alerts").guard)]
OpensPropose = Annotated[User, Depends(nav_page("/propose").guard)]
OpensApprovals = Annotated[User, Depends(nav_page("/approvals").guard)]
OpensWatchlist = Annotated[User, Depends(nav_page("/watchlist").guard)]
OpensAudit = Annotated[User, Depends(nav_page("/audit").guard)]  # the chain office's
OpensIncidents = Annotated[User, Depends(nav_page("/incidents").guard)]
OpensRequests = Annotated[User, Depends(nav_page("/requests").guard)]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
# One store's alerts (the chain office's picker); empty: its "all stores" choice.
StoreFilter = Annotated[str | None, Query(pattern=rf"^$|{STORE_ID_PATTERN}")]
RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
ImageName = Annotated[str, Path(pattern=r"^evidence-[0-9]{1,3}\.png$")]
EntryId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
BreachId = Annotated[str, Path(pattern=r"^BR-[0-9]{8}-[0-9a-f]{6}$")]  # breach.open_incident
# Free text: the registry's one rule (`registry.text`), as in the JSON API.
Reason = Annotated[str, Form(), REASON]
Damage = Annotated[str, Form(), DAMAGE]
Description = Annotated[str, Form(), DESCRIPTION]
ConfirmationRef = Annotated[str, Form(), CONFIRMATION_REF]
Features = Annotated[str, Form(), FEATURES]
DisplayName = Annotated[str, Form(), DISPLAY_NAME]


def rerender(request: Request, page: str, message: str, status: int) -> HTMLResponse | None:
    """A failed request's page again, with the message; None if there is no session."""
    gate = get_gate(request)
    host = get_host(request)
    now = host.clock()
    with gate.use_from_thread() as ctx:
        try:
            current = resolve_session(ctx, host.web,
                                      token=request.cookies.get(COOKIE_NAME), now=now)
        except AuthenticationError:
            return None
        user, token = current.user, current.session.csrf_token
        try:
            template, data = build_page(page, request, ctx, user, now)
        except (RegistryError, LookupError):  # this person may not see that page either
            template, data = "error.html", {}
    return render(request, template, page=page, user=user, csrf_token=token,
                  status_code=status, error=message, **data)


class Pages(PageRoute):
    """The pages' routes: failures are shown on the page they belong to."""

    # Annotated as in the base: mypy otherwise reads a callable class variable as a method.
    rerender: ClassVar[PageRenderer | None] = staticmethod(rerender)


router = APIRouter(route_class=Pages, include_in_schema=False, tags=["pages"])


def _page(request: Request, current: SessionUser, template: str, page: str,
          **data: Any) -> HTMLResponse:
    return render(request, template, page=page, user=current.user,
                  csrf_token=current.session.csrf_token, **data)


def _done(path: str, notice: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"{path}?done={notice}{anchor}", status_code=303)


def _criteria(request: Request) -> RegistrationCriteria:
    """The written registration criteria the registry was opened with (G-REG-2)."""
    return get_host(request).registry.criteria


def _policy(request: Request) -> QualityPolicy:
    return get_host(request).registration_quality


# --- static files, login, logout ---------------------------------------------------------

@router.get("/static/{name}")
@allow_public
def static(name: str) -> Response:
    """The pages' stylesheet and script (no data in them)."""
    found = static_file(name)
    if found is None:
        raise HTTPException(404, "not found")
    body, media_type = found
    return Response(body, media_type=media_type)


@router.get("/login")
@allow_public
def login_form(request: Request) -> HTMLResponse:
    return login_page(request, next_path=request.query_params.get("next", "/"))


@router.post("/login")
@allow_public
async def login(request: Request, gate: GateDep, web: WebDep, now: NowDep,
          username: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=1024)],
          csrf_token: Annotated[str, Form(max_length=128)] = "",
          next_path: Annotated[str, Form(alias="next", max_length=500)] = "/") -> Response:
    """Check the password, start a session, and open the page asked for (or the role's first)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        t = translator(request)
        return login_page(request, status_code=403, error=t("err_csrf"), username=username,
                          next_path=next_path)
    check_same_origin(request)
    try:
        issued = await log_in(gate, web, username=username, password=password, now=now)
    except AuthenticationError as exc:
        return login_page(request, status_code=401, error=str(exc), username=username,
                          next_path=next_path)
    target = safe_next(next_path)
    response = RedirectResponse((home_of(issued.user) or "/") if target == "/" else target,
                                status_code=303)
    set_session_cookie(response, issued.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", secure=True, httponly=True,
                           samesite="strict")
    return response


@router.post("/logout")
def logout(current: CurrentSession, ctx: ContextDep, now: NowDep, user: Anyone) -> Response:
    log_out(ctx, current, now=now)
    response = RedirectResponse("/login?done=logged_out_notice", status_code=303)
    clear_session_cookie(response)
    return response


@router.get("/")
def home(request: Request, current: CurrentSession, user: Anyone) -> Response:
    """The person's first page; a role with none here (a store's auditor) is told so."""
    first = home_of(user)
    if first is None:
        return _page(request, current, "error.html", "/", status_code=403,
                     error=translator(request)("no_pages"))
    return RedirectResponse(first, status_code=303)


# --- alerts -------------------------------------------------------------------------------

@router.get("/alerts")
def alerts_page(request: Request, ctx: ContextDep, current: CurrentSession,
                user: OpensAlerts, now: NowDep, store: StoreFilter = None) -> HTMLResponse:
    """The store's alerts and its boxes' warnings; the chain office's: every store's, or
    `?store=`'s (issue 15, item 1)."""
    in_view = store_in_view(ctx.repo, user, store or None)
    return _page(request, current, "alerts.html", "/alerts",
                 **alerts_data(ctx, user, translator(request),
                               boxes=boxes_needing_attention(ctx.repo, now, in_view),
                               store=in_view))


@router.post("/alerts/{alert_id}/confirm")
def alert_confirm(alert_id: AlertId, ctx: ContextDep, user: StaffOrManager, now: NowDep,
                  reason: Reason = "") -> RedirectResponse:
    confirm_alert(ctx, actor=user, alert_id=alert_id, reason=reason, now=now)
    return _done("/alerts", "confirmed_notice", f"#alert-{alert_id}")


@router.post("/alerts/{alert_id}/dismiss")
def alert_dismiss(alert_id: AlertId, ctx: ContextDep, user: StaffOrManager, now: NowDep,
                  reason: Reason = "") -> RedirectResponse:
    dismiss_alert(ctx, actor=user, alert_id=alert_id, reason=reason, now=now)
    return _done("/alerts", "dismissed_notice", f"#alert-{alert_id}")


# --- propose --------------------------------------------------------------------------------

def _incident(values: dict[str, str]) -> IncidentInput:
    """The incident typed into the form; a date-time without a zone is the store's time."""
    text = values.get("occurred_at", "").strip()
    if not text:
        raise RuleViolationError("occurred_at: give the date and time of the incident")
    moment = parse_timestamp(text, "occurred_at", naive_zone=STORE_TZ)
    try:
        incident = IncidentIn(
            category=values.get("category", ""),
            occurred_at=moment,
            confirmation_kind=values.get("confirmation_kind") or ConfirmationKind.POLICE_REPORT,
            confirmation_ref=values.get("confirmation_ref", ""),
            damage=values.get("damage", ""), description=values.get("description", ""),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise RuleViolationError(f"{where}: {problem['msg']}") from None
    return incident.to_input()


def _chosen(uploads: list[UploadFile]) -> list[UploadFile]:
    """The files actually chosen (a browser posts an empty part for an empty file input)."""
    return [u for u in uploads if u.filename or (u.size or 0) > 0]


def _verdicts(ctx: RegistryContext, engine: FaceEngine, policy: QualityPolicy, user: User,
              alert_id: str, uploads: list[UploadFile]) -> list[PhotoVerdict]:
    if alert_id:
        png = alert_snapshot_png(ctx, actor=user, alert_id=alert_id)
        photos = [Photo(f"snapshot {alert_id[:8]}", decode_photo(png, "snapshot"))]
    else:
        photos = photos_from_uploads(_chosen(uploads))
    verdicts = []
    for photo in photos:
        assessment = assess_photo(engine, policy, photo.image)
        summary = assessment.to_dict()
        verdicts.append(PhotoVerdict(photo.label, assessment.faces > 0, assessment.passed,
                                     assessment.reasons if assessment.faces else (),
                                     summary["metrics"]))
    return verdicts


def _alert_or_none(ctx: RegistryContext, user: User, alert_id: str) -> AlertView | None:
    return alert_view(ctx, actor=user, alert_id=alert_id) if alert_id else None


Photos = Annotated[list[UploadFile], File()]
FromAlert = Annotated[str, Form(pattern=r"^([0-9a-f]{32})?$")]


@dataclass(frozen=True)
class ProposalForm:
    """The propose form's fields as typed (all optional here; the services say what is missing)."""

    category: str = ""
    occurred_at: str = ""
    confirmation_kind: str = ""
    confirmation_ref: str = ""
    damage: str = ""
    description: str = ""
    features: str = ""
    display_name: str = ""

    def values(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if isinstance(v, str)}


def proposal_form(
    category: Annotated[str, Form(max_length=40)] = "",
    occurred_at: Annotated[str, Form(max_length=40)] = "",
    confirmation_kind: Annotated[str, Form(max_length=40)] = "",
    confirmation_ref: ConfirmationRef = "",
    damage: Damage = "", description: Description = "",
    features: Features = "",
    display_name: DisplayName = "",
) -> ProposalForm:
    return ProposalForm(category, occurred_at, confirmation_kind, confirmation_ref, damage,
                        description, features, display_name)


ProposalFormDep = Annotated[ProposalForm, Depends(proposal_form)]


@router.get("/propose")
def propose_page(request: Request, current: CurrentSession, user: OpensPropose) -> HTMLResponse:
    return _page(request, current, "propose.html", "/propose",
                 **propose_data(None, user, translator(request), criteria=_criteria(request)))


@router.get("/propose/from-alert/{alert_id}")
def propose_from_alert_page(alert_id: AlertId, request: Request, ctx: ContextDep,
                            current: CurrentSession, user: StaffOrManager) -> HTMLResponse:
    alert = alert_view(ctx, actor=user, alert_id=alert_id)
    return _page(request, current, "propose.html", "/propose",
                 **propose_data(alert, user, translator(request), criteria=ctx.policy.criteria))


@router.post("/propose/check")
def propose_check(request: Request, ctx: ContextDep, engine: EngineDep, current: CurrentSession,
                  user: StaffOrManager, form: ProposalFormDep, photos: Photos = [],  # noqa: B006
                  alert_id: FromAlert = "") -> HTMLResponse:
    """The quality gate's verdict for the chosen photos (G-REG-1); nothing is stored.

    From the page's script (`X-Requested-With: fetch`) the answer is the verdict
    alone, to put into the page; otherwise the whole page with the verdict.
    """
    fragment = request.headers.get("x-requested-with") == "fetch"
    try:
        verdicts = _verdicts(ctx, engine, _policy(request), user, alert_id, photos)
    except RegistryError as exc:
        status = status_of(exc)
        if not fragment or status is None:
            raise
        return render(request, "_error_line.html", page="/propose", user=user,
                      csrf_token=current.session.csrf_token, status_code=status, error=str(exc))
    data = propose_data(_alert_or_none(ctx, user, alert_id), user, translator(request),
                        criteria=ctx.policy.criteria, values=form.values(), verdicts=verdicts)
    template = "_verdict.html" if fragment else "propose.html"
    return _page(request, current, template, "/propose", **data)


@router.post("/propose")
def propose_submit(request: Request, ctx: ContextDep, engine: EngineDep, current: CurrentSession,
                   user: StaffOrManager, now: NowDep, form: ProposalFormDep,
                   photos: Photos = [],  # noqa: B006
                   alert_id: FromAlert = "") -> Response:
    """Propose from the alert's snapshot or the uploaded photos; a different manager approves."""
    values = form.values()
    try:
        incident = _incident(values)
        if alert_id:
            propose_from_alert(ctx, engine, _policy(request), actor=user, alert_id=alert_id,
                               incident=incident, features=form.features,
                               display_name=form.display_name, now=now)
        else:
            propose(ctx, engine, _policy(request), actor=user,
                    photos=photos_from_uploads(_chosen(photos)), incident=incident,
                    features=form.features, display_name=form.display_name, now=now)
    except RegistryError as exc:
        status = status_of(exc)
        if status is None:
            raise
        data = propose_data(_alert_or_none(ctx, user, alert_id), user, translator(request),
                            criteria=ctx.policy.criteria, values=values)
        return render(request, "propose.html", page="/propose", user=user,
                      csrf_token=current.session.csrf_token, status_code=status,
                      error=str(exc), **data)
    return _done("/approvals", "proposal_submitted")


# --- approvals ----------------------------------------------------------------------------

@router.get("/approvals")
def approvals_page(request: Request, ctx: ContextDep, current: CurrentSession,
                   user: OpensApprovals) -> HTMLResponse:
    return _page(request, current, "approvals.html", "/approvals",
                 **approvals_data(ctx, user, translator(request)))


@router.post("/approvals/{entry_id}/approve")
def approval_approve(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                     reason: Reason = "") -> RedirectResponse:
    approve(ctx, actor=user, entry_id=entry_id, reason=reason, now=now)
    return _done("/approvals", "approved_notice")


@router.post("/approvals/{entry_id}/reject")
def approval_reject(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                    reason: Reason = "") -> RedirectResponse:
    reject(ctx, actor=user, entry_id=entry_id, reason=reason, now=now)
    return _done("/approvals", "rejected_notice")


# --- watchlist ----------------------------------------------------------------------------

@router.get("/watchlist")
def watchlist_page(request: Request, ctx: ContextDep, current: CurrentSession,
                   user: OpensWatchlist) -> HTMLResponse:
    show_all = request.query_params.get("state") == "all"
    return _page(request, current, "watchlist.html", "/watchlist",
                 **watchlist_data(ctx, user, translator(request), show_all=show_all))


@router.post("/watchlist/{entry_id}/correct")
def watchlist_correct(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                      reason: Reason = "",
                      features: Annotated[Annotated[str, FEATURES] | None, Form()] = None,
                      display_name: Annotated[Annotated[str, DISPLAY_NAME] | None, Form()] = None
                      ) -> RedirectResponse:
    """G-REG-3: only the fields that changed are corrected (and named in the audit)."""
    entry = view(ctx, actor=user, entry_id=entry_id).entry

    def changed(typed: str | None, stored: str) -> str | None:
        return typed if typed is not None and typed.strip() != stored else None

    correct(ctx, actor=user, entry_id=entry_id, reason=reason, now=now,
            features=changed(features, entry.features),
            display_name=changed(display_name, entry.display_name))
    return _done("/watchlist", "corrected_notice", f"#entry-{entry_id}")


@router.post("/watchlist/{entry_id}/withdraw")
def watchlist_withdraw(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                       reason: Reason = "") -> RedirectResponse:
    withdraw(ctx, actor=user, entry_id=entry_id, reason=reason, now=now)
    return _done("/watchlist", "withdrawn_notice")


@router.post("/watchlist/{entry_id}/reoffence")
def watchlist_reoffence(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                        category: Annotated[str, Form(max_length=40)] = "",
                        occurred_at: Annotated[str, Form(max_length=40)] = "",
                        confirmation_kind: Annotated[str, Form(max_length=40)] = "",
                        confirmation_ref: ConfirmationRef = "",
                        damage: Damage = "", description: Description = "") -> RedirectResponse:
    incident = _incident({"category": category, "occurred_at": occurred_at,
                          "confirmation_kind": confirmation_kind,
                          "confirmation_ref": confirmation_ref, "damage": damage,
                          "description": description})
    add_reoffence(ctx, actor=user, entry_id=entry_id, incident=incident, now=now)
    return _done("/watchlist", "reoffence_notice", f"#entry-{entry_id}")


# --- audit ----------------------------------------------------------------------------------

@router.get("/audit")
def audit_page(request: Request, ctx: ContextDep, current: CurrentSession, user: OpensAudit,
               now: NowDep) -> HTMLResponse:
    """Counts and the chain's state; no image, no name of a registered person."""
    return _page(request, current, "audit.html", "/audit", **audit_data(ctx, user, now))


# --- breach incidents (G-BRE-1..4): managers and admins ---------------------------------

def _at(incident_id: str) -> str:
    return f"#incident-{incident_id}"


@router.get("/incidents")
def incidents_page(request: Request, ctx: ContextDep, current: CurrentSession, user: OpensIncidents,
                   now: NowDep) -> HTMLResponse:
    """Incidents with their state and the 速報/確報 deadlines (warned within a day or past)."""
    return _page(request, current, "incidents.html", "/incidents",
                 **incidents_data(ctx, user, now))


@router.post("/incidents")
def incident_open(ctx: ContextDep, user: Responder, now: NowDep,
                  discovered_at: Annotated[str, Form(max_length=40)],
                  discovered_by: Annotated[str, Form(), DISPLAY_NAME],
                  how: Annotated[str, Form(), REASON],
                  summary: Annotated[str, Form(), DESCRIPTION] = "") -> RedirectResponse:
    """Record the discovery (G-BRE-1); a time typed without a zone is the store's time."""
    moment = parse_timestamp(discovered_at.strip(), "discovered_at", naive_zone=STORE_TZ)
    incident_id = breach.open_incident(ctx, actor=user, discovered_at=moment,
                                       discovered_by=discovered_by, how=how, summary=summary,
                                       now=now)
    return _done("/incidents", "incident_opened_notice", _at(incident_id))


@router.post("/incidents/{incident_id}/disable-devices")
def incident_disable_devices(incident_id: BreachId, ctx: ContextDep, user: Admin,
                             now: NowDep) -> RedirectResponse:
    """Revoke every edge box's token (G-BRE-3); admins, as in `mamoru device disable`."""
    breach.contain_disable_devices(ctx, actor=user, incident_id=incident_id, now=now)
    return _done("/incidents", "devices_disabled_notice", _at(incident_id))


@router.post("/incidents/{incident_id}/preserve-evidence")
def incident_preserve_evidence(incident_id: BreachId, ctx: ContextDep, user: Responder,
                               now: NowDep) -> Response:
    """現状保存 from the tablet: the sealed copy of the audit trail, as a download.

    It is made in a private temporary folder and handed to the browser, never
    left on the data disk in the clear; its SHA-256 is in the incident and the
    audit trail, so the copy kept with the incident file can be checked later.
    The edge logs (journal) are added only by the CLI, which can read them.
    """
    with tempfile.TemporaryDirectory(prefix="mamoru-evidence-") as scratch:
        sealed = breach.preserve_evidence(ctx, actor=user, incident_id=incident_id, now=now,
                                          to_dir=FilePath(scratch) / "sealed")
        blob = sealed.read_bytes()
    return Response(blob, media_type="application/x-tar",
                    headers={"Content-Disposition": f'attachment; filename="{sealed.name}"',
                             "Cache-Control": "no-store"})


@router.post("/incidents/{incident_id}/triage")
def incident_triage(incident_id: BreachId, ctx: ContextDep, user: Responder, now: NowDep,
                    reason: Reason = "",
                    ground: Annotated[list[Ground], Form()] = []  # noqa: B006
                    ) -> RedirectResponse:
    """The rule-7 test (G-BRE-1): the grounds that apply, none = not reportable, and why."""
    breach.triage(ctx, actor=user, incident_id=incident_id, grounds=ground, reason=reason,
                  now=now)
    return _done("/incidents", "triage_recorded_notice", _at(incident_id))


@router.post("/incidents/{incident_id}/drafts/{draft}")
def incident_draft(incident_id: BreachId, draft: Draft, ctx: ContextDep, user: Responder,
                   now: NowDep,
                   inquiry_desk: Annotated[str, Form(), REASON] = DEFAULT_INQUIRY_DESK,
                   body: Annotated[str, Form(), DISPLAY_NAME] = DEFAULT_BODY) -> Response:
    """One draft as text (G-BRE-2, G-BRE-4); 速報 and 確報 are recorded as drafted.

    A POST (with the CSRF token), not a link: making a Commission draft is recorded.
    """
    text = make_draft(ctx, incident_id, draft, actor=user, now=now,
                      inquiry_desk=inquiry_desk.strip() or DEFAULT_INQUIRY_DESK,
                      body=body.strip() or DEFAULT_BODY)
    name = f"{breach.get_incident(ctx, incident_id).incident_id}-{draft.value}.md"
    return Response(text, media_type="text/markdown; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "no-store"})


@router.post("/incidents/{incident_id}/drafts/{draft}/submitted")
def incident_report_submitted(incident_id: BreachId, draft: Draft, ctx: ContextDep,
                              user: Responder, now: NowDep) -> RedirectResponse:
    """Record that the 速報 or 確報 was sent to the Commission: its deadline stops warning."""
    if not draft.to_commission:
        raise RuleViolationError("only the preliminary and final reports are submitted")
    breach.record_report(ctx, actor=user, incident_id=incident_id, report=draft.value,
                         submitted=True, now=now)
    return _done("/incidents", "report_submitted_notice", _at(incident_id))


# --- the request desk and periodic review (G-DSR-1..4, G-REV-1) ---------------------------

@router.get("/requests")
def requests_page(request: Request, ctx: ContextDep, current: CurrentSession, user: OpensRequests,
                  now: NowDep) -> HTMLResponse:
    """Requests and complaints (overdue first, no contact details) and reviews past due."""
    return _page(request, current, "requests.html", "/requests",
                 **requests_data(ctx, user, now))


@router.post("/reviews/{entry_id}/keep")
def review_keep(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                reason: Reason = "") -> RedirectResponse:
    review(ctx, actor=user, entry_id=entry_id, decision=ReviewDecision.KEEP, reason=reason,
           now=now)
    return _done("/requests", "review_kept_notice", "#reviews")


@router.post("/reviews/{entry_id}/withdraw")
def review_withdraw(entry_id: EntryId, ctx: ContextDep, user: Manager, now: NowDep,
                    reason: Reason = "") -> RedirectResponse:
    review(ctx, actor=user, entry_id=entry_id, decision=ReviewDecision.WITHDRAW, reason=reason,
           now=now)
    return _done("/requests", "withdrawn_notice", "#reviews")


# --- the desk's forms (G-DSR-1..4): open, search with the requester's photo, answer, refuse ---

Contact = Annotated[str, Form(min_length=1, max_length=desk.MAX_CONTACT)]
Summary = Annotated[str, Form(max_length=desk.MAX_SUMMARY)]


def _at_request(request_id: str, notice: str) -> RedirectResponse:
    return _done("/requests", notice, f"#request-{request_id}")


@router.post("/requests")
def request_open(ctx: ContextDep, user: Manager, now: NowDep,
                 kind: Annotated[RequestKind, Form()],
                 identity_method: Annotated[IdentityMethod, Form()],
                 contact: Contact, summary: Summary = "",
                 by_agent: Annotated[bool, Form()] = False) -> RedirectResponse:
    """Record a request after checking identity at the counter (G-DSR-4); the document
    shown is not kept, only how identity was checked."""
    opened = desk.open_request(ctx, actor=user, kind=kind, identity_method=identity_method,
                               contact=contact, by_agent=by_agent, summary=summary, now=now)
    return _at_request(opened.request_id, "request_opened_notice")


@router.post("/requests/{request_id}/search")
def request_search(request_id: RequestId, ctx: ContextDep, engine: EngineDep, user: Manager,
                   now: NowDep, photo: Annotated[UploadFile, File()]) -> RedirectResponse:
    """Search the watchlist with the requester's photo (G-DSR-1).

    The upload is parsed in memory (`registry.api.uploads` keeps multipart parts off
    the disk), decoded, searched and dropped: it is never written anywhere.
    """
    image = photo_from_upload(photo).image
    try:
        outcome = desk.search(ctx, engine, actor=user, request_id=request_id, image=image,
                              now=now)
    finally:
        del image
        photo.file.close()
    return _at_request(request_id, f"request_{outcome.outcome}_notice")


@router.post("/requests/{request_id}/answer")
def request_answer(request_id: RequestId, ctx: ContextDep, user: Manager, now: NowDep,
                   reason: Reason = "",
                   features: Annotated[str | None, Form(max_length=1000)] = None
                   ) -> RedirectResponse:
    """Do what the request asks and record the answer (a disclosure: print its document first)."""
    desk.answer(ctx, actor=user, request_id=request_id, reason=reason, now=now,
                features=features or None)
    return _at_request(request_id, "request_answered_notice")


@router.post("/requests/{request_id}/refuse")
def request_refuse(request_id: RequestId, ctx: ContextDep, user: Manager, now: NowDep,
                   ground: Annotated[RefusalGround, Form()], reason: Reason = "",
                   harm_justification: Reason = "") -> RedirectResponse:
    """Refuse on a legal ground with the reason (G-DSR-4); a nuisance-only entry needs the
    case's concrete harm as well (G-DSR-1)."""
    desk.refuse(ctx, actor=user, request_id=request_id, ground=ground, reason=reason, now=now,
                harm_justification=harm_justification)
    return _at_request(request_id, "request_refused_notice")


@router.get("/requests/{request_id}/disclosure")
def request_disclosure(request_id: RequestId, request: Request, ctx: ContextDep,
                       current: CurrentSession, user: Manager) -> HTMLResponse:
    """The disclosure document to print and hand over (JA/EN, masked images).

    Once printed it is outside mamoru's custody (README, retention): hand it over.
    """
    document = desk.disclosure(ctx, actor=user, request_id=request_id)
    return _page(request, current, "disclosure.html", "/requests", document=document,
                 text=document.to_markdown())


@router.get("/requests/{request_id}/disclosure/{image}")
def request_disclosure_image(request_id: RequestId, image: ImageName, ctx: ContextDep,
                             user: Manager) -> Response:
    """One masked image of the disclosure document (every other face masked)."""
    images = desk.disclosure(ctx, actor=user, request_id=request_id).images
    if image not in images:
        raise HTTPException(404, "no such image in this disclosure")
    return Response(images[image], media_type="image/png")

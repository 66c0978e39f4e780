"""What each tablet page shows, built from the domain services for one person.

The routes (`routes/pages.py`) call these builders; so does the failure path,
which shows a refused form's page again with its message. Each builder calls
the same service the JSON API calls (`registry.alerts.queue`, `registry.watchlist.approval`,
`registry.watchlist.entries`, `registry.oversight.report`), so it is refused for the same
roles. The cards are what the templates read; image URLs point at the API's
role-guarded image routes, never at files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request

from registry.alerts.queue import AlertView, alert_views, precision
from registry.api.html import lang_of
from registry.api.uploads import MAX_PHOTO_BYTES
from registry.breach import incident as breach
from registry.breach.report import DEFAULT_BODY, DEFAULT_INQUIRY_DESK, Draft
from registry.clock import EARLIEST, from_text
from registry.config import RegistrationCriteria
from registry.context import RegistryContext
from registry.domain import (
    REFUSAL_GROUNDS,
    Alert,
    BoxStatus,
    BreachIncident,
    ConfirmationKind,
    Containment,
    DeadlineState,
    EntryState,
    Ground,
    IdentityMethod,
    OffenceCategory,
    RequestKind,
    Role,
    User,
)
from registry.i18n import Translator
from registry.oversight.report import audit_report, verify_trail
from registry.requests import desk as requests
from registry.watchlist import reviews
from registry.watchlist.approval import pending_proposals
from registry.watchlist.criteria import all_criteria
from registry.watchlist.entries import EntryView, list_entries
from registry.watchlist.stop_use import stop_use_right_list

_CURRENT_STATES = [EntryState.PROPOSED, EntryState.ACTIVE]
CATEGORIES = [c.value for c in OffenceCategory]
CONFIRMATION_KINDS = [k.value for k in ConfirmationKind]


# --- what the templates show ----------------------------------------------------------

@dataclass(frozen=True)
class AlertCard:
    alert: Alert
    snapshot_url: str | None
    evidence_url: str | None
    entry_label: str
    decider: str | None
    can_decide: bool
    can_propose: bool
    store_name: str


@dataclass(frozen=True)
class ProposalCard:
    view: EntryView
    incidents: list[dict[str, Any]]
    evidence_urls: list[str]
    own: bool
    can_decide: bool
    why: str


@dataclass(frozen=True)
class EntryCard:
    view: EntryView
    incidents: list[dict[str, Any]]
    evidence_urls: list[str]


@dataclass(frozen=True)
class SealedCopy:
    """A sealed evidence copy (現状保存) written from the tablet, offered for download."""

    file: str
    sha256: str
    at: datetime


@dataclass(frozen=True)
class IncidentCard:
    """One breach incident as the incidents page shows it (G-BRE-1..4)."""

    incident: BreachIncident
    deadlines: list[DeadlineState]
    warn: list[bool]  # per deadline: due within WARN_DAYS (or past) and not sent
    sealed: list[SealedCopy]
    cli: dict[str, str]  # the steps that stay on the command line, as commands to run


@dataclass(frozen=True)
class PhotoVerdict:
    label: str
    found: bool
    passed: bool
    reasons: tuple[str, ...]
    metrics: dict[str, Any]


def snapshot_url(alert_id: str) -> str:
    return f"/api/v1/alerts/{alert_id}/snapshot"


def evidence_url(entry_id: str, image_id: str) -> str:
    return f"/api/v1/watchlist/{entry_id}/evidence/{image_id}"


def local_incidents(view_: EntryView, t: Translator) -> list[dict[str, Any]]:
    rows = view_.to_dict()["incidents"]
    return [{**row, "occurred_at_local": t.when(from_text(row["occurred_at"]))} for row in rows]


def alert_card(v: AlertView, user: User, t: Translator,
               store_names: Mapping[str, str] | None = None) -> AlertCard:
    """`store_names`: store id -> name, for the alert's store (its id where not given)."""
    a = v.alert
    return AlertCard(
        alert=a,
        snapshot_url=snapshot_url(a.alert_id) if a.snapshot_image_id else None,
        evidence_url=(evidence_url(a.entry_id, v.entry_evidence_images[0])
                      if v.entry_evidence_images else None),
        entry_label=t.enum("state", v.entry_state),
        decider=v.decided_by,
        can_decide=user.trained,
        can_propose=user.trained,
        store_name=(store_names or {}).get(a.store_id, a.store_id),
    )


def translator(request: Request) -> Translator:
    return Translator(lang_of(request))


# --- page builders: the data each page shows, for a person ------------------------------

def alerts_data(ctx: RegistryContext, user: User, t: Translator, *,
                boxes: Sequence[tuple[BoxStatus, str]] = (),
                store: str | None = None) -> dict[str, Any]:
    """`boxes`: (status, why) of the boxes staff must know about: a blind box raises no alert.

    The user's store's alerts and figure; the chain office's: `store`'s, or every store's.
    `stores`: what the chain office's store picker offers (none to a store's people, nor
    where there is only one store); `store`: the one shown (None: every store).
    """
    stores = ctx.repo.stores()
    names = {s.store_id: s.name for s in stores}
    return {"alerts": [alert_card(v, user, t, names)
                       for v in alert_views(ctx, actor=user, store=store)],
            "precision": precision(ctx, actor=user, store=store).store, "boxes": list(boxes),
            "stores": stores if user.chain_wide and len(stores) > 1 else [], "store": store}


def approvals_data(ctx: RegistryContext, user: User, t: Translator) -> dict[str, Any]:
    cards = []
    for pending in pending_proposals(ctx, actor=user):
        e = pending.view.entry
        own = e.proposed_by == user.user_id
        why = pending.not_approvable_because
        if user.role is not Role.MANAGER:
            why = t("manager_only")
        cards.append(ProposalCard(
            view=pending.view, incidents=local_incidents(pending.view, t),
            evidence_urls=[evidence_url(e.entry_id, i) for i in pending.view.evidence_images],
            own=own, can_decide=pending.approvable_by_me, why=why,
        ))
    return {"proposals": cards}


def watchlist_data(ctx: RegistryContext, user: User, t: Translator, *,
                   show_all: bool) -> dict[str, Any]:
    views = list_entries(ctx, actor=user, states=None if show_all else _CURRENT_STATES)
    return {
        "entries": [EntryCard(v, local_incidents(v, t),
                              [evidence_url(v.entry.entry_id, i) for i in v.evidence_images])
                    for v in views],
        "can_manage": user.role is Role.MANAGER and user.trained,
        "show_all": show_all, "categories": CATEGORIES, "confirmation_kinds": CONFIRMATION_KINDS,
    }


def audit_data(ctx: RegistryContext, user: User, now: datetime) -> dict[str, Any]:
    end = now + timedelta(seconds=1)
    report = audit_report(ctx, actor=user, start=EARLIEST, end=end)
    store = precision(ctx, actor=user).store
    return {
        "chain": verify_trail(ctx, actor=user), "report": report, "period": (None, now),
        "alerts": {"received": report.get("alerts_received", 0), "confirmed": store.confirmed,
                   "dismissed": store.dismissed, "open": store.open},
    }


def propose_data(alert: AlertView | None, user: User, t: Translator, *,
                 criteria: RegistrationCriteria,
                 values: dict[str, str] | None = None,
                 verdicts: list[PhotoVerdict] | None = None) -> dict[str, Any]:
    """`criteria`: the written criteria in force (G-REG-2), shown with their versions."""
    return {
        "criteria": all_criteria(criteria),
        "alert": alert_card(alert, user, t) if alert else None,
        "categories": CATEGORIES, "confirmation_kinds": CONFIRMATION_KINDS,
        "values": values or {}, "verdicts": verdicts,
        "can_submit": bool(verdicts) and any(v.passed for v in verdicts or ()),
        "max_upload_mb": MAX_PHOTO_BYTES // (1024 * 1024),
    }


# The incidents page warns when a report is due within this many days (or is past due).
INCIDENT_WARN_DAYS = 1


def sealed_copies(incident: BreachIncident) -> list[SealedCopy]:
    """The sealed evidence copies recorded against the incident (file name and SHA-256)."""
    return [SealedCopy(str(a.details["file"]), str(a.details.get("sha256", "")), a.at)
            for a in incident.actions
            if a.kind is Containment.PRESERVE_EVIDENCE and "file" in a.details]


def incident_card(incident: BreachIncident, now: datetime) -> IncidentCard:
    deadlines = incident.deadline_states(now)
    short = incident.incident_id
    return IncidentCard(
        incident=incident, deadlines=deadlines,
        warn=[d.near(INCIDENT_WARN_DAYS) for d in deadlines],
        sealed=sealed_copies(incident),
        cli={step: f"mamoru incident contain {short} --step {step} --as <admin>"
             for step in ("rotate-key", "stop-edge")},
    )


def incidents_data(ctx: RegistryContext, user: User, now: datetime) -> dict[str, Any]:
    """Breach incidents, newest first, with their deadlines as of `now` (managers, admins)."""
    breach.require_responder(user)
    incidents = sorted(breach.list_incidents(ctx), key=lambda i: i.discovered_at, reverse=True)
    return {"incidents": [incident_card(i, now) for i in incidents], "now": now,
            "grounds": list(Ground), "drafts": list(Draft),
            "default_body": DEFAULT_BODY, "default_inquiry_desk": DEFAULT_INQUIRY_DESK,
            "is_admin": user.role is Role.ADMIN}


def stop_use_data(ctx: RegistryContext) -> list[dict[str, Any]]:
    """Stop-use rights from reportable leaks (G-BRE-4) for the desk: entry, incident, since."""
    rows = []
    for right in reversed(stop_use_right_list(ctx)):
        entry = ctx.repo.entry(right.entry_id)
        rows.append({"entry_id": right.entry_id, "incident_id": right.incident_id,
                     "since": right.since,
                     "state": entry.state.value if entry is not None else None})
    return rows


def build_page(page: str, request: Request, ctx: RegistryContext, user: User,
           now: datetime) -> tuple[str, dict[str, Any]]:
    """The template and data of one page (by its nav href) for `user`."""
    t = translator(request)
    if page == "/alerts":
        return "alerts.html", alerts_data(ctx, user, t,
                                          store=request.query_params.get("store") or None)
    if page == "/approvals":
        return "approvals.html", approvals_data(ctx, user, t)
    if page == "/watchlist":
        show_all = request.query_params.get("state") == "all"
        return "watchlist.html", watchlist_data(ctx, user, t, show_all=show_all)
    if page == "/audit":
        return "audit.html", audit_data(ctx, user, now)
    if page == "/propose":
        return "propose.html", propose_data(None, user, t, criteria=ctx.policy.criteria)
    if page == "/requests":
        return "requests.html", requests_data(ctx, user, now)
    if page == "/incidents":
        return "incidents.html", incidents_data(ctx, user, now)
    raise LookupError(page)


def requests_data(ctx: RegistryContext, user: User, now: datetime) -> dict[str, Any]:
    """The desk (G-DSR-1..4): open requests first, overdue flagged; reviews due (G-REV-1).

    No contact details here: `mamoru request show` prints them for the answering manager.
    """
    rows = requests.list_requests(ctx, actor=user, now=now)
    rows.sort(key=lambda r: (r.status.is_closed, r.due_at))
    return {"requests": rows, "now": now, "stop_use": stop_use_data(ctx),  # G-BRE-4
            "overdue_requests": sum(1 for r in rows if r.overdue(now)),
            "reviews": [r for r in reviews.schedule(ctx) if r.overdue(now)],
            "can_manage": user.role is Role.MANAGER and user.trained,
            "request_kinds": [k.value for k in RequestKind],
            "identity_methods": [m.value for m in IdentityMethod],
            "refusal_grounds": {k.value: sorted(g.value for g in grounds)
                                for k, grounds in REFUSAL_GROUNDS.items()}}

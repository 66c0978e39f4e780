"""Personal-data breach response (G-BRE-1..4): the incident record, containment, triage, deadlines.

An incident records when and how a leak (or its likelihood) was discovered and
by whom, with a snapshot of what the registry held at that moment (entries,
images, templates, partners): the counts the report to the Commission needs.
Containment steps are commands recorded against the incident and in the audit
trail. Triage records the rule-7 test (which of the four grounds applies, or
why none does) and fixes the deadlines of rule 8: the preliminary report
(速報) within about 3-5 days, the final one (確報) within 30 days, 60 when the
leak may be malicious. Days count from the day the store learned of it, that
day being day 1 (PPC Q&A), on the Japanese calendar.

Judgements stay with people: the code never decides that something is or is
not reportable, it records who decided and why.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel.errors import NotFoundError, RuleViolationError
from registry.accounts.devices import disable_device
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.backup.key_rotation import rotate_key
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import (
    JST,
    BreachIncident,
    Containment,
    EntryState,
    Ground,
    RecordedAction,
    RegistryCounts,
    Role,
    StopUseRight,
    Triage,
    User,
)
from registry.domain import Deadlines as Deadlines  # still named here for its callers
from registry.domain import breach_deadlines as deadlines  # noqa: F401  (likewise)
from registry.scheme import parse_scheme
from registry.watchlist.stop_use import stop_use_right_list

HELD_STATES = (EntryState.PROPOSED, EntryState.ACTIVE)  # the states that still hold face data


def require_responder(actor: User) -> None:
    """Managers and admins respond to incidents (G-BRE-1..4); others are refused (403)."""
    require_role(actor, Role.MANAGER, Role.ADMIN)


_require_responder = require_responder


def registry_counts(ctx: RegistryContext) -> tuple[RegistryCounts, tuple[str, ...]]:
    """Count what the registry holds now, and the ids of the persons whose data it holds."""
    entries = ctx.repo.entries()
    held = [e for e in entries if e.state in HELD_STATES]
    by_state: dict[str, int] = {}
    for entry in entries:
        by_state[entry.state.value] = by_state.get(entry.state.value, 0) + 1
    images = sum(len(ctx.repo.evidence(e.entry_id)) for e in held)
    templates = sum(len(ctx.repo.templates(e.entry_id)) for e in held)
    counts = RegistryCounts(entries=len(held), images=images, templates=templates,
                            named_entries=sum(1 for e in held if e.display_name.strip()),
                            partners=_partner_count(ctx), by_state=by_state)
    return counts, tuple(e.entry_id for e in held)


def _partner_count(ctx: RegistryContext) -> int:
    adopted = ctx.repo.adopted_schemes()
    if not adopted:
        return 0
    scheme = parse_scheme(adopted[-1][2], Path("adopted-scheme.json"))
    return max(len(scheme.members) - 1, 0)


def open_incident(ctx: RegistryContext, *, actor: User, discovered_at: datetime,
                  discovered_by: str, how: str, summary: str, now: datetime) -> str:
    """Record the discovery (who, when, how) and what the registry held then; the incident id."""
    _require_responder(actor)
    if not discovered_by.strip() or not how.strip():
        raise RuleViolationError("say who discovered the incident and how")
    if discovered_at > now:
        raise RuleViolationError("the discovery cannot be in the future")
    incident_id = f"BR-{discovered_at.astimezone(JST):%Y%m%d}-{secrets.token_hex(3)}"
    with ctx.writing():
        counts, affected = registry_counts(ctx)
        with ctx.repo.unit_of_work():
            ctx.repo.add_breach_incident(BreachIncident(
                incident_id=incident_id, store_id=ctx.policy.store_id,
                discovered_at=discovered_at, discovered_by=discovered_by.strip(),
                how=how.strip(), summary=summary.strip(), opened_by=actor.username,
                opened_at=now, counts=counts, affected=affected, triage=None, actions=()))
            ctx.audit.record(actor=actor.username, action=Action.BREACH_OPENED, at=now,
                             details={"incident": incident_id,
                                      "discovered_at": to_text(discovered_at),
                                      "entries": counts.entries, "images": counts.images,
                                      "templates": counts.templates,
                                      "partners": counts.partners})
    return incident_id


def _record(ctx: RegistryContext, incident_id: str, kind: Containment, actor: str,
            now: datetime, details: dict[str, Any], action: Action) -> None:
    """One step in the incident's record and in the audit trail, in one transaction."""
    with ctx.repo.unit_of_work():
        ctx.repo.add_breach_action(incident_id, RecordedAction(kind, actor, now, details))
        ctx.audit.record(actor=actor, action=action, at=now,
                         details={"incident": incident_id, "step": kind.value, **details})


def contain_disable_devices(ctx: RegistryContext, *, actor: User, incident_id: str,
                            now: datetime) -> list[str]:
    """Revoke every edge box's token (admin): a stolen box can no longer talk to the registry."""
    get_incident(ctx, incident_id)
    require_role(actor, Role.ADMIN)
    names = [d.name for d in ctx.repo.devices() if d.active]
    for name in names:
        disable_device(ctx, admin=actor, name=name, now=now)
    with ctx.writing():
        _record(ctx, incident_id, Containment.DISABLE_DEVICES, actor.username, now,
                {"devices": names}, Action.BREACH_CONTAINMENT)
    return names


def contain_rotate_key(ctx: RegistryContext, *, actor: User, incident_id: str,
                       now: datetime) -> Path:
    """A new master key for every file (admin); old backups wiped. The fresh backup's path."""
    get_incident(ctx, incident_id)
    backup = rotate_key(ctx, actor=actor, now=now)
    with ctx.writing():
        _record(ctx, incident_id, Containment.ROTATE_KEY, actor.username, now,
                {"fresh_backup": backup.name}, Action.BREACH_CONTAINMENT)
    return backup


def contain_stop_edge(ctx: RegistryContext, *, actor: User, incident_id: str, now: datetime,
                      stop: Callable[[], str]) -> str:
    """Stop the edge services with `stop` (e.g. systemctl); its outcome is recorded as is."""
    _require_responder(actor)
    get_incident(ctx, incident_id)
    outcome = stop()
    with ctx.writing():
        _record(ctx, incident_id, Containment.STOP_EDGE, actor.username, now,
                {"outcome": outcome}, Action.BREACH_CONTAINMENT)
    return outcome


def preserve_evidence(ctx: RegistryContext, *, actor: User, incident_id: str, now: datetime,
                      to_dir: Path, logs: Sequence[tuple[str, bytes]] = ()) -> Path:
    """現状保存: a sealed copy of the audit trail and the logs as they are now.

    The copy is a tar (0400) of the full audit trail, its chain check and the
    given logs; its SHA-256 goes into the incident and the hash-chained audit
    trail, so any later change to the copy shows. It holds who did what, not
    faces: keep it with the incident file, off the box.
    """
    _require_responder(actor)
    get_incident(ctx, incident_id)
    chain = ctx.audit.verify()
    rows = [{"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
             "entry_id": r.entry_id, "details": r.details, "prev_hash": r.prev_hash,
             "hash": r.hash} for r in ctx.repo.audit_rows()]
    members: list[tuple[str, bytes]] = [
        ("audit.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                for r in rows).encode()),
        ("chain.json", json.dumps({"records": chain.records, "ok": chain.ok,
                                   "problem": chain.problem and chain.problem.reason,
                                   "head": rows[-1]["hash"] if rows else None,
                                   "taken_at": to_text(now)}).encode()),
        *((f"logs/{name}", data) for name, data in logs),
    ]
    to_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = to_dir / f"{incident_id}-evidence-{now.astimezone(JST):%Y%m%dT%H%M%S}.tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o400
            tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    target.write_bytes(blob)
    target.chmod(0o400)
    with ctx.writing():
        _record(ctx, incident_id, Containment.PRESERVE_EVIDENCE, actor.username, now,
                {"file": target.name, "sha256": hashlib.sha256(blob).hexdigest(),
                 "audit_records": len(rows), "chain_ok": chain.ok,
                 "logs": [name for name, _ in logs]},
                Action.BREACH_CONTAINMENT)
    return target


def triage(ctx: RegistryContext, *, actor: User, incident_id: str, grounds: Sequence[Ground],
           reason: str, now: datetime) -> Triage:
    """Record the rule-7 test; a reportable leak gives the affected persons a stop-use right.

    With no ground, `reason` must say why none applies (e.g. "encrypted, key
    in a TPM-sealed credential, box recovered unopened").
    """
    _require_responder(actor)
    incident = get_incident(ctx, incident_id)
    if not reason.strip():
        raise RuleViolationError("say why these grounds apply (or why none does)")
    result = Triage(tuple(dict.fromkeys(grounds)), reason.strip(), actor.username, now)
    with ctx.writing(), ctx.repo.unit_of_work():
        ctx.repo.set_breach_triage(incident.incident_id, result)
        marked = _mark_stop_use(ctx, incident, now) if result.reportable else 0
        ctx.audit.record(actor=actor.username, action=Action.BREACH_TRIAGED, at=now,
                         details={"incident": incident_id,
                                  "grounds": [g.value for g in result.grounds],
                                  "reportable": result.reportable, "stop_use_marked": marked})
    return result


def _mark_stop_use(ctx: RegistryContext, incident: BreachIncident, now: datetime) -> int:
    """G-BRE-4 (APPI 35(5)): each affected person may now ask for use to stop; mark them.

    The request desk (when present) reads `entry_stop_use_rights`; no entry is
    changed here, since stopping use is the person's choice.
    """
    marked = 0
    for entry_id in incident.affected:
        if ctx.repo.entry(entry_id) is None:
            continue
        if ctx.repo.add_stop_use_right(StopUseRight(entry_id, incident.incident_id, now)):
            ctx.audit.record(actor="system", action=Action.BREACH_STOP_USE_MARKED, at=now,
                             entry_id=entry_id, details={"incident": incident.incident_id})
            marked += 1
    return marked


def stop_use_rights(ctx: RegistryContext) -> dict[str, list[str]]:
    """entry id -> incidents after which the person may ask for use to stop (G-BRE-4)."""
    rights: dict[str, list[str]] = {}
    for right in stop_use_right_list(ctx):
        rights.setdefault(right.entry_id, []).append(right.incident_id)
    return rights


def record_report(ctx: RegistryContext, *, actor: User, incident_id: str, report: str,
                  submitted: bool, now: datetime) -> None:
    """A report drafted (or, with `submitted`, sent): recorded so status stops warning."""
    _require_responder(actor)
    get_incident(ctx, incident_id)
    kind = Containment.REPORT_SUBMITTED if submitted else Containment.REPORT_DRAFTED
    with ctx.writing():
        _record(ctx, incident_id, kind, actor.username, now, {"report": report},
                Action.BREACH_REPORT_DRAFTED)


def get_incident(ctx: RegistryContext, incident_id: str) -> BreachIncident:
    """The incident with that id, or with that unique prefix."""
    exact = ctx.repo.breach_incident(incident_id.strip())
    if exact is not None:
        return exact
    found = [i for i in ctx.repo.breach_incidents()
             if i.incident_id.startswith(incident_id.strip())]
    if not found:
        raise NotFoundError(f"no incident {incident_id}")
    if len(found) > 1:
        raise RuleViolationError(f"{incident_id} matches {len(found)} incidents; give more")
    return found[0]


def list_incidents(ctx: RegistryContext) -> list[BreachIncident]:
    """Every incident, earliest discovery first."""
    return ctx.repo.breach_incidents()


def status_lines(incident: BreachIncident, now: datetime, *, warn_days: int = 2) -> list[str]:
    """The incident's state and a warning before (and after) each open deadline."""
    lines = [f"{incident.incident_id}: discovered {incident.deadlines.discovered_on} "
             f"by {incident.discovered_by}"]
    if incident.triage is None:
        lines.append("WARNING: not triaged yet: record the rule-7 test "
                     "(`mamoru incident triage`); deadlines below assume it is reportable")
    elif not incident.triage.reportable:
        lines.append(f"not reportable ({incident.triage.reason}); no Commission deadlines")
        return lines
    for d in incident.deadline_states(now):
        if d.submitted:
            lines.append(f"{d.label}: submitted")
        elif d.overdue:
            lines.append(f"OVERDUE: {d.label} was due {d.due} ({-d.days_left} day(s) ago)")
        elif d.near(warn_days):
            lines.append(f"WARNING: {d.label} due {d.due} (in {d.days_left} day(s))")
        else:
            lines.append(f"{d.label} due {d.due} (in {d.days_left} day(s))")
    return lines

"""The life of an active entry: correct, re-offence, withdraw, erase; and what people may see.

Erasure is real (G-REG-4): templates, evidence images, incidents and the
personal fields go in one transaction that also writes the audit record; the
encrypted image files are overwritten and removed right after the commit (a
crash in between leaves unreferenced ciphertext that `recover()` sweeps);
the next published index no longer holds the person. Only a tombstone remains:
the entry id, its final state, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kernel.errors import ConflictError, NotFoundError, RuleViolationError
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import Entry, EntryState, IncidentInput, Role, User
from registry.text import DISPLAY_NAME, FEATURES
from registry.watchlist.incidents import validate_incident
from registry.watchlist.period import expiry_for
from registry.watchlist.reasons import required_reason
from registry.watchlist.stop_use import stop_use_right_list


class ImportedEntryError(RuleViolationError):
    """An entry shared by a joint-use member is changed only at its origin store (G-SHR-4).

    Raised wherever this store would change such an entry: forward the request there.
    """


def _entry(ctx: RegistryContext, entry_id: str) -> Entry:
    entry = ctx.repo.entry(entry_id)
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    return entry


def _own_entry(ctx: RegistryContext, entry_id: str) -> Entry:
    """An entry this store may change: not one imported from a joint-use member."""
    entry = _entry(ctx, entry_id)
    imported = ctx.repo.imported_entry(entry_id)
    if imported is not None:
        raise ImportedEntryError(
            f"entry {entry_id} was shared by joint-use member {imported.origin_member}; it is "
            "corrected, withdrawn or erased only at that store: forward the request there"
        )
    return entry


def close_entry(ctx: RegistryContext, entry: Entry, *, state: EntryState, action: Action,
                actor: str, reason: str, now: datetime,
                details: dict[str, Any] | None = None, publish: bool = True) -> None:
    """Erase an entry's face data and leave a tombstone in `state`. Call under `ctx.writing()`.

    A batch (the expiry job) passes `publish=False` and publishes once at the end.
    """
    if entry.state.is_final:
        raise ConflictError(f"entry {entry.entry_id} is already {entry.state.value}")
    with ctx.repo.unit_of_work():
        image_ids = ctx.repo.purge_face_data(entry.entry_id)
        ctx.repo.update_entry(replace(
            entry, state=state, features="", display_name="", revision=entry.revision + 1,
            closed_at=now, closed_reason=reason,
        ))
        record = {"from_state": entry.state.value, "reason": reason,
                  "evidence_images_erased": len(image_ids), **(details or {})}
        if entry.state is EntryState.ACTIVE:
            record["watchlist_version"] = ctx.repo.bump_watchlist_version()
        ctx.audit.record(actor=actor, action=action, at=now, entry_id=entry.entry_id,
                         details=record)
    for image_id in image_ids:
        ctx.evidence.delete(image_id)
    if publish:
        ctx.publish_index_if_stale()


def withdraw(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str,
             now: datetime) -> None:
    """G-REG-3: take back a wrong entry (misidentification, no offence after all)."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason)
    with ctx.writing():
        close_entry(ctx, _own_entry(ctx, entry_id), state=EntryState.WITHDRAWN,
                    action=Action.WITHDRAW, actor=actor.username, reason=reason, now=now)


def erase(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str,
          now: datetime) -> None:
    """Erase on request (G-DSR-2 stop-use/erasure) or by decision; managers and admins."""
    require_role(actor, Role.MANAGER, Role.ADMIN, trained=True)
    reason = required_reason(reason)
    with ctx.writing():
        close_entry(ctx, _own_entry(ctx, entry_id), state=EntryState.ERASED,
                    action=Action.ERASE, actor=actor.username, reason=reason, now=now)


def correct(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str, now: datetime,
            features: str | None = None, display_name: str | None = None) -> Entry:
    """G-REG-3/G-DSR-2: correct what is recorded; the audit names the fields, not the values."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason)
    changes = {field: rule.clean(value, field=field) for field, rule, value in
               (("features", FEATURES, features), ("display_name", DISPLAY_NAME, display_name))
               if value is not None}
    if not changes:
        raise RuleViolationError("nothing to correct: give --features or --display-name")
    with ctx.writing():
        entry = _own_entry(ctx, entry_id)
        if entry.state not in (EntryState.PROPOSED, EntryState.ACTIVE):
            raise ConflictError(f"entry {entry_id} is {entry.state.value}; it cannot be corrected")
        corrected = replace(entry, revision=entry.revision + 1,
                            features=changes.get("features", entry.features),
                            display_name=changes.get("display_name", entry.display_name))
        with ctx.repo.unit_of_work():
            ctx.repo.update_entry(corrected)
            ctx.audit.record(actor=actor.username, action=Action.CORRECT, at=now,
                             entry_id=entry_id,
                             details={"fields": sorted(changes), "reason": reason,
                                      "revision": corrected.revision})
    return corrected


def add_reoffence(ctx: RegistryContext, *, actor: User, entry_id: str, incident: IncidentInput,
                  now: datetime) -> Entry:
    """G-REG-4: a new, confirmed offence restarts the retention period from its date."""
    require_role(actor, Role.MANAGER, trained=True)
    incident = validate_incident(incident, now)
    with ctx.writing():
        entry = _own_entry(ctx, entry_id)
        if entry.state is not EntryState.ACTIVE:
            raise ConflictError(
                f"entry {entry_id} is {entry.state.value}; a re-offence is added to an active "
                "entry (otherwise propose a new registration)"
            )
        with ctx.repo.unit_of_work():
            ctx.repo.add_incident(entry_id, ctx.policy.store_id, incident, actor.user_id, now)
            expires_at = expiry_for(ctx.repo.incidents(entry_id), ctx.policy.retention_years)
            updated = replace(entry, expires_at=expires_at, revision=entry.revision + 1)
            ctx.repo.update_entry(updated)
            ctx.audit.record(actor=actor.username, action=Action.REOFFENCE, at=now,
                             entry_id=entry_id,
                             details={"category": incident.category.value,
                                      "confirmation": incident.confirmation_kind.value,
                                      "expires_at": expires_at.date().isoformat()})
    return updated


@dataclass(frozen=True)
class EntryView:
    """What staff and managers see of an entry (never the face templates themselves)."""

    entry: Entry
    proposer: str
    decider: str | None
    incidents: list[dict[str, Any]]
    templates: int
    evidence_images: list[str]
    # Incidents after which the person may ask for use to stop (G-BRE-4); read-only here.
    stop_use_rights: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "entry_id": e.entry_id,
            "state": e.state.value,
            "store_id": e.store_id,
            "display_name": e.display_name,
            "features": e.features,
            "proposed_by": self.proposer,
            "proposed_at": to_text(e.proposed_at),
            "decided_by": self.decider,
            "decided_at": to_text(e.decided_at) if e.decided_at else None,
            "decision_reason": e.decision_reason,
            "expires_at": to_text(e.expires_at) if e.expires_at else None,
            "closed_at": to_text(e.closed_at) if e.closed_at else None,
            "closed_reason": e.closed_reason,
            "revision": e.revision,
            "incidents": self.incidents,
            "templates": self.templates,
            "evidence_images": self.evidence_images,
            "stop_use_rights": self.stop_use_rights,
        }


def view(ctx: RegistryContext, *, actor: User, entry_id: str) -> EntryView:
    require_role(actor, Role.STAFF, Role.MANAGER, Role.ADMIN)
    return _view(ctx, _entry(ctx, entry_id))


def list_entries(ctx: RegistryContext, *, actor: User,
                 states: list[EntryState] | None = None) -> list[EntryView]:
    require_role(actor, Role.STAFF, Role.MANAGER, Role.ADMIN)
    return [_view(ctx, e) for e in ctx.repo.entries(states)]


def _view(ctx: RegistryContext, entry: Entry) -> EntryView:
    incidents = [
        {"category": i.category.value, "occurred_at": to_text(i.occurred_at),
         "store_id": i.store_id, "confirmation_kind": i.confirmation_kind.value,
         "confirmation_ref": i.confirmation_ref, "damage": i.damage,
         "description": i.description}
        for i in ctx.repo.incidents(entry.entry_id)
    ]
    return EntryView(
        entry=entry,
        proposer=ctx.repo.username_of(entry.proposed_by),
        decider=ctx.repo.username_of(entry.decided_by) if entry.decided_by else None,
        incidents=incidents,
        templates=len(ctx.repo.templates(entry.entry_id)),
        evidence_images=[r.image_id for r in ctx.repo.evidence(entry.entry_id)],
        stop_use_rights=[r.incident_id for r in stop_use_right_list(ctx, entry.entry_id)],
    )


def evidence_png(ctx: RegistryContext, *, actor: User, entry_id: str, image_id: str) -> bytes:
    """One of an entry's (masked) evidence images as PNG bytes; never for an auditor."""
    require_role(actor, Role.STAFF, Role.MANAGER, Role.ADMIN)
    entry = _entry(ctx, entry_id)
    if image_id not in {r.image_id for r in ctx.repo.evidence(entry.entry_id)}:
        raise NotFoundError(f"entry {entry_id} has no evidence image {image_id}")
    return ctx.evidence.get_bytes(image_id)

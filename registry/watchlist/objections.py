"""反論の機会 (G-SHR-4): a person objects to an entry; it is suspended everywhere until decided.

An objection is recorded at the store where the entry was registered (the
origin). The entry stays on record but leaves this store's index at once,
and the next bundle to every member carries the suspension, so it leaves
their indexes too. The decision is the origin's: an upheld objection erases
the entry (and the tombstone reaches every member); a dismissed one lifts the
suspension everywhere.
"""

from __future__ import annotations

from datetime import datetime

from kernel.errors import ConflictError, NotFoundError
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.domain import Entry, EntryState, Role, User
from registry.watchlist.entries import ImportedEntryError, close_entry
from registry.watchlist.reasons import required_reason


def _own_active(ctx: RegistryContext, entry_id: str) -> Entry:
    entry = ctx.repo.entry(entry_id)
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    imported = ctx.repo.imported_entry(entry_id)
    if imported is not None:
        raise ImportedEntryError(
            f"entry {entry_id} was shared by {imported.origin_member}: an objection is recorded "
            "and decided at that store; forward it there"
        )
    if entry.state is not EntryState.ACTIVE:
        raise ConflictError(f"entry {entry_id} is {entry.state.value}, not active")
    return entry


def record_objection(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str,
                     now: datetime) -> None:
    """Suspend an entry while the person's objection is decided (a manager records it)."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason, what="objection")
    with ctx.writing():
        _own_active(ctx, entry_id)
        if entry_id in ctx.repo.suspended_entries():
            raise ConflictError(f"entry {entry_id} is already suspended by an objection")
        with ctx.repo.unit_of_work():
            ctx.repo.suspend_entry(entry_id, now, "local")
            version = ctx.repo.bump_watchlist_version()
            ctx.audit.record(actor=actor.username, action=Action.OBJECTION_RECORDED, at=now,
                             entry_id=entry_id,
                             details={"reason": reason, "watchlist_version": version})
        ctx.publish_index_if_stale()


def decide_objection(ctx: RegistryContext, *, actor: User, entry_id: str, upheld: bool,
                     reason: str, now: datetime) -> None:
    """Upheld: the entry is erased here and, through tombstones, at every member.
    Dismissed: the suspension is lifted here and, through the next bundles, everywhere."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason, what="objection")
    with ctx.writing():
        entry = _own_active(ctx, entry_id)
        if ctx.repo.suspended_entries().get(entry_id) != "local":
            raise ConflictError(f"entry {entry_id} has no open objection")
        if upheld:
            close_entry(ctx, entry, state=EntryState.ERASED, action=Action.ERASE,
                        actor=actor.username, reason=f"objection upheld: {reason}", now=now,
                        details={"objection": "upheld"}, publish=False)
            with ctx.repo.unit_of_work():
                ctx.repo.unsuspend_entry(entry_id)
        else:
            with ctx.repo.unit_of_work():
                ctx.repo.unsuspend_entry(entry_id)
                version = ctx.repo.bump_watchlist_version()
                ctx.audit.record(actor=actor.username, action=Action.OBJECTION_DISMISSED, at=now,
                                 entry_id=entry_id,
                                 details={"reason": reason, "watchlist_version": version})
        ctx.publish_index_if_stale()

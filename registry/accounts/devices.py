"""Edge devices: the in-store boxes allowed to send alerts and fetch the index (G-SEC-2).

Each box authenticates with a bearer token that the registry generates once,
shows once, and never stores: only its SHA-256 is kept. The token is 256
random bits, so a fast hash is enough (there is nothing to brute-force, unlike
a person's password), and looking a token up by its hash means no secret is
ever compared character by character. A box that is lost, stolen or retired is
disabled; disabling is final (add a new device instead), so a restore from a
backup taken earlier re-applies it before anyone can use the old token again.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta

from kernel.errors import AuthenticationError, NotFoundError, RuleViolationError
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.domain import BoxStatus, Device, Role, Store, User
from registry.repository import DeviceRepository

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
TOKEN_BYTES = 32  # 256 bits
# token_urlsafe(32) is 43 characters; anything far longer is not a token of ours.
_MAX_TOKEN_CHARS = 128
_GENERIC_REFUSAL = "unknown, disabled or missing device token"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_device(ctx: RegistryContext, *, admin: User, name: str, now: datetime,
               store_id: str | None = None) -> str:
    """Register a box in a store; returns its token, which exists nowhere else after this call.

    `store_id` None: the installation's own store (`registry.store_id`), created on first
    need; a named store must exist (issue 15, item 1).
    """
    require_role(admin, Role.ADMIN)
    if not _NAME.match(name):
        raise RuleViolationError(
            "device names are 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with ctx.writing():
        if ctx.repo.device_by_name(name) is not None:
            raise RuleViolationError(f"device {name} already exists (names are never reused)")
        store = store_id or ctx.policy.store_id
        if store_id is not None and ctx.repo.store(store_id) is None:
            raise NotFoundError(f"no store {store_id} (add it with `mamoru store add`)")
        with ctx.repo.unit_of_work():
            if ctx.repo.store(store) is None:
                ctx.repo.add_store(Store(store, store), now)
            ctx.repo.add_device(name, token_hash(token), now, store)
            ctx.audit.record(actor=admin.username, action=Action.DEVICE_ADD, at=now,
                             details={"device": name, "store_id": store})
    return token


def authenticate_device(ctx: RegistryContext, token: str) -> Device:
    """The active device holding `token`, or `AuthenticationError` (never saying why)."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise AuthenticationError(_GENERIC_REFUSAL)
    device = ctx.repo.device_by_token_hash(token_hash(token))
    if device is None or not device.active:
        raise AuthenticationError(_GENERIC_REFUSAL)
    return device


def disable_device(ctx: RegistryContext, *, admin: User, name: str, now: datetime) -> None:
    """Revoke a box's token for good; its past alerts stay attributed to it."""
    require_role(admin, Role.ADMIN)
    with ctx.writing():
        device = ctx.repo.device_by_name(name)
        if device is None:
            raise NotFoundError(f"no device named {name}")
        if not device.active:
            raise RuleViolationError(f"device {name} is already disabled")
        with ctx.repo.unit_of_work():
            ctx.repo.set_device_active(device.device_id, False)
            ctx.audit.record(actor=admin.username, action=Action.DEVICE_DISABLED, at=now,
                             details={"device": name})


def list_devices(ctx: RegistryContext) -> list[Device]:
    return ctx.repo.devices()


def reapply_device_disables(ctx: RegistryContext) -> int:
    """Disable again every device the audit trail says was disabled; returns how many.

    A restored database may predate a disable; the audit trail is never
    restored, so it is the record to replay. Call inside the restore's unit of work.
    """
    count = 0
    for row in list(ctx.repo.audit_rows()):
        if row.action != Action.DEVICE_DISABLED.value:
            continue
        name = _device_name(row.details)
        device = ctx.repo.device_by_name(name) if name else None
        if device is not None and device.active:
            ctx.repo.set_device_active(device.device_id, False)
            count += 1
    return count


def _device_name(details: str) -> str | None:
    try:
        value = json.loads(details).get("device")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --- what each box says about itself ------------------------------------------------------

BOX_REPORT_INTERVAL_S = 30.0  # a box reports at least this often, and at once on a change
SILENT_AFTER = timedelta(seconds=3 * BOX_REPORT_INTERVAL_S)  # three reports missed


def report_box_status(ctx: RegistryContext, status: BoxStatus) -> None:
    """Keep a box's report as its latest, in the registry database.

    Not in the API worker's memory: with several workers (on several hosts)
    the report lands on one of them and the tablet may be served by another.
    One row per device, replaced, outside the writers' lock (like a session's
    last-seen time): a report every half minute from every box must not
    queue behind an expiry run, and two reports of one box cannot conflict
    beyond which one is the latest. One statement, no read first and no
    transaction around it (on PostgreSQL one round trip, not three): a report
    that repeats the stored one but for its time costs one row update.
    """
    ctx.repo.record_box_status(status)


def boxes_needing_attention(repo: DeviceRepository, now: datetime,
                            store_id: str | None = None) -> list[tuple[BoxStatus, str]]:
    """(status, why) for each box a person should look at: 'stale' or 'silent'.

    A stale watchlist: the box raises no alerts. Silent: no report for three
    intervals. A box that never reported (or whose registry was restored to
    before its first report) shows after its first report. `store_id`: that store's boxes
    only (a store's tablet, issue 15 item 1); None: every store's.
    """
    found = []
    for status in repo.box_statuses(store_id):
        if status.blind:
            found.append((status, "stale"))
        elif now - status.reported_at > SILENT_AFTER:
            found.append((status, "silent"))
    return found


# --- the index key a chain's box asks for ---------------------------------------------------


def deliver_index_key(ctx: RegistryContext, device: Device, now: datetime) -> bytes:
    """The index key for an active box, its delivery audited (the box's name, never the key).

    A chain's box holds no master key (issue 15): it opens the index and its
    deltas with this key alone, which opens nothing else of the registry.
    """
    with ctx.writing(), ctx.repo.unit_of_work():
        ctx.audit.record(actor=f"device:{device.name}", action=Action.INDEX_KEY_DELIVERED,
                         at=now, details={"device": device.name})
    return ctx.index_key()

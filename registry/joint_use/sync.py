"""Export, import and acknowledge bundles between the members of a joint-use scheme.

At the origin, `export_bundle` builds for one member everything it has not
acknowledged: this store's own active entries it does not hold yet,
corrections of those it holds, tombstones of those closed since, and
objection suspensions; and records the provision (to whom, when, which
entries, on what basis: G-SHR-7). Imported entries are never exported:
only the origin shares its own entries. A sync larger than
`joint_use_bundle_max_items` items or `joint_use_bundle_max_bytes` bytes
goes as several bundles with consecutive sequences (`export_parts`), each
applied whole and acknowledged on its own, in order.

At the recipient, `import_bundle` checks, in this order, and refuses the
whole bundle with a typed one-line error and no change at all if any check
fails: the clear header is addressed to us and signed by the current member
it names (before anything is decrypted); it decrypts for us and the signed
content verifies; the sequence is above the last one applied from that sender; the region
rule allows it; every template is of the pack this store indexes. It then
applies everything in one transaction: imported entries are active at once
(the origin's two-person approval is what counts) but are not editable
here, expire no later than at the origin nor later than this store's own
retention allows, and leave the index as soon as a tombstone, correction
or objection arrives. It returns the signed receipt for the origin.
`verify_bundle` (authenticate, decrypt, parse) needs no registry state, so
the API does it without the registry's lock and takes the lock only for
`apply_bundle`.

At the origin again, `apply_receipt` records what the member acknowledged
and which erasures it confirmed; `erasure_confirmations` lists them per
entry (G-SHR-4: erasure reaches every member, verifiably).

Crash safety follows the registry's rule: images are written before the
transaction (a crash leaves unreferenced files that `recover()` sweeps),
erased images are deleted after it (same), and the index is republished
from the database (`recover()` republishes a stale one). A bundle is thus
either applied whole or not at all, and a re-import after a crash either
applies it or is refused as already applied.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from kernel.evidence import StoredImage
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.clock import add_years
from registry.context import RegistryContext
from registry.domain import (
    FINAL_STATES,
    ConfirmationKind,
    Entry,
    EntryState,
    ErasureConfirmation,
    EvidenceRecord,
    HeldCopy,
    ImportedEntry,
    InboundState,
    IncidentInput,
    Role,
    SentBundle,
    SentItem,
    User,
)
from registry.joint_use import forwarding
from registry.joint_use.bundle import (
    Bundle,
    ForwardedRequest,
    Kind,
    Objection,
    Receipt,
    RequestAnswer,
    SealedHeader,
    Tombstone,
    TombstoneReason,
    authenticate_header,
    canonical_json,
    open_envelope,
    parse_payload,
    seal,
    sha256_hex,
)
from registry.joint_use.errors import (
    NoticeOutdatedError,
    ProvisionRefusedError,
    ReceiptError,
    StoreKeysError,
)
from registry.joint_use.export_schema import SharedEntry, shared_entry
from registry.joint_use.keys import StoreKeys, create_store_keys, load_store_keys
from registry.joint_use.policy import (
    SenderIsCurrentMember,
    Transfer,
    TransferPolicy,
    content_policy,
    provision_policy,
    signer_policy,
)
from registry.joint_use.scheme import LoadedScheme, former_members
from registry.notice.page import current_page
from registry.notice.publication import last_published_sha256
from registry.requests import desk as requests
from registry.scheme import SHARED_ITEMS

SYNC_ACTOR = "joint-use-sync"
BASIS = "joint use (共同利用, APPI 27(5)(iii)) under the published scheme"

_REASON: dict[EntryState, TombstoneReason] = {
    EntryState.WITHDRAWN: "withdrawn",
    EntryState.ERASED: "erased",
    EntryState.EXPIRED: "expired",
    EntryState.REJECTED: "rejected",
}
_CLOSE: dict[str, tuple[EntryState, Action]] = {
    "withdrawn": (EntryState.WITHDRAWN, Action.WITHDRAW),
    "erased": (EntryState.ERASED, Action.ERASE),
    "expired": (EntryState.EXPIRED, Action.EXPIRE),
    "rejected": (EntryState.REJECTED, Action.REJECT),
}


# --- this store's keys ----------------------------------------------------------------


def init_keys(ctx: RegistryContext, *, actor: User, now: datetime) -> StoreKeys:
    """Generate this store's signing and encryption keys (admin); their public halves go
    into the scheme file."""
    require_role(actor, Role.ADMIN)
    with ctx.writing():
        keys = create_store_keys(ctx.paths.joint_use_keys, ctx.master_key, ctx.policy.store_id)
        with ctx.repo.unit_of_work():
            ctx.audit.record(actor=actor.username, action=Action.JOINT_USE_KEYS_CREATED, at=now,
                             details={"member": keys.member_id,
                                      "signing_key": keys.signing_public,
                                      "encryption_key": keys.encryption_public})
    return keys


def store_keys(ctx: RegistryContext, scheme: LoadedScheme) -> StoreKeys:
    """Our private keys, refused unless the scheme publishes exactly their public halves."""
    keys = load_store_keys(ctx.paths.joint_use_keys, ctx.master_key)
    me = scheme.member(ctx.policy.store_id)
    if me is None:
        raise StoreKeysError(f"this store ({ctx.policy.store_id}) is not a member of the scheme")
    if keys.member_id != me.member_id or (me.signing_key, me.encryption_key) != (
            keys.signing_public, keys.encryption_public):
        raise StoreKeysError(
            f"the scheme lists other public keys for {me.member_id} than this store holds: "
            "have the managing party publish the keys `mamoru joint-use keys show` prints"
        )
    return keys


# --- export (origin) ------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    entries: list[Entry]
    corrections: list[Entry]
    tombstones: list[Entry]
    objections: list[tuple[Entry, str]]  # (entry, "suspend" | "unsuspend")


def _plan(ctx: RegistryContext, member: str, now: datetime) -> _Plan:
    """What `member` has not acknowledged yet, from this store's own entries only."""
    imported = ctx.repo.imported_entry_ids()
    held = ctx.repo.held_copies(member)
    pending = {i.entry_id for b in ctx.repo.sent_bundles(member) for i in b.items}
    suspended = ctx.repo.suspended_entries()
    plan = _Plan([], [], [], [])
    for entry in ctx.repo.entries([EntryState.ACTIVE]):
        if entry.entry_id in imported:
            continue  # never re-export what a member shared with us
        copy = held.get(entry.entry_id)
        is_suspended = entry.entry_id in suspended
        if copy is None:
            if not is_suspended and entry.expires_at is not None and entry.expires_at > now:
                plan.entries.append(entry)
            elif is_suspended and entry.entry_id in pending:
                plan.objections.append((entry, "suspend"))  # it may hold an unacknowledged copy
            continue
        if copy.revision < entry.revision:
            plan.corrections.append(entry)
        if is_suspended != copy.suspended:
            plan.objections.append((entry, "suspend" if is_suspended else "unsuspend"))
    closed = {e.entry_id: e for e in ctx.repo.entries(sorted(FINAL_STATES))}
    for entry_id in sorted((set(held) | pending) - imported):
        copy = held.get(entry_id)
        if entry_id in closed and not (copy is not None and copy.closed):
            plan.tombstones.append(closed[entry_id])
    return plan


def _shared(ctx: RegistryContext, entry: Entry) -> SharedEntry:
    return shared_entry(
        origin_member=ctx.policy.store_id,
        entry=entry,
        incidents=ctx.repo.incidents(entry.entry_id),
        templates=[t for t in ctx.repo.templates(entry.entry_id)
                   if t.pack == ctx.index_spec.pack],  # the pack this store runs
        images={r.image_id: ctx.evidence.get_bytes(r.image_id)
                for r in ctx.repo.evidence(entry.entry_id)},
    )


@dataclass(frozen=True)
class Exported:
    """One bundle of a sync, and how many of the sync's items are left for the next ones."""

    blob: bytes
    sequence: int
    items: int  # entries, corrections, tombstones, objections in this bundle
    remaining: int  # items for later bundles of the same sync


@dataclass(frozen=True)
class _Part:
    """The items of one bundle, closings first, so erasures reach a member soonest (G-SHR-4)."""

    tombstones: list[Entry] = field(default_factory=list)
    objections: list[tuple[Entry, str]] = field(default_factory=list)
    corrections: list[tuple[Entry, SharedEntry]] = field(default_factory=list)
    entries: list[tuple[Entry, SharedEntry]] = field(default_factory=list)

    def items(self) -> int:
        return (len(self.tombstones) + len(self.objections) + len(self.corrections)
                + len(self.entries))


def _parts(ctx: RegistryContext, plan: _Plan, max_parts: int | None) -> tuple[list[_Part], int]:
    """The plan cut into bundles of at most `joint_use_bundle_max_items` items and (but for a
    single entry larger than that) `joint_use_bundle_max_bytes` bytes of content; and how many
    items are left over once `max_parts` are full. Shared entries are built part by part."""
    max_items = ctx.policy.joint_use_bundle_max_items
    max_bytes = ctx.policy.joint_use_bundle_max_bytes - _ENVELOPE_ROOM
    queue: list[tuple[str, Entry, str]] = (
        [("tombstone", e, "") for e in plan.tombstones]
        + [("objection", e, a) for e, a in plan.objections]
        + [("correction", e, "") for e in plan.corrections]
        + [("entry", e, "") for e in plan.entries])
    parts = [_Part()]
    size = 0
    for done, (kind, entry, action) in enumerate(queue):
        shared = _shared(ctx, entry) if kind in ("entry", "correction") else None
        cost = len(canonical_json(shared)) if shared is not None else _SMALL_ITEM
        part = parts[-1]
        if part.items() and (part.items() >= max_items or size + cost > max_bytes):
            if max_parts is not None and len(parts) >= max_parts:
                return parts, len(queue) - done
            part, size = _Part(), 0
            parts.append(part)
        size += cost
        if kind == "tombstone":
            part.tombstones.append(entry)
        elif kind == "objection":
            part.objections.append((entry, action))
        elif kind == "correction":
            assert shared is not None
            part.corrections.append((entry, shared))
        else:
            assert shared is not None
            part.entries.append((entry, shared))
    return parts, 0


# Room for the envelope around a bundle's content, and the size counted for a tombstone or an
# objection (a few ids and a time).
_ENVELOPE_ROOM = 64 * 1024
_SMALL_ITEM = 512


def _last_sent(ctx: RegistryContext, member: str) -> int:
    """The highest sequence sent to `member` (acknowledged or still awaiting its receipt)."""
    pending = ctx.repo.sent_bundles(member)
    return max([ctx.repo.last_acked_sequence(member), *(b.sequence for b in pending)])


def ensure_notice_current(ctx: RegistryContext) -> None:
    """Refuse (NoticeOutdatedError) unless the last recorded notice is the current one."""
    recorded = last_published_sha256(ctx)
    current = current_page(ctx).sha256
    if recorded == current:
        return
    if recorded is None:
        raise NoticeOutdatedError(
            "no notice was ever published here: run `mamoru notice render --out DIR` and put "
            "the notice up before sharing (G-NOT-2, G-SHR-1)")
    raise NoticeOutdatedError(
        f"the published notice (sha256 {recorded[:12]}) is older than the settings or the "
        f"joint-use scheme it must describe (now {current[:12]}): run `mamoru notice render "
        "--out DIR` and put the new notice up before sharing (G-NOT-2, G-SHR-1)")


def export_bundle(ctx: RegistryContext, scheme: LoadedScheme, to_member: str, now: datetime, *,
                  actor: User | None = None,
                  policy: TransferPolicy | None = None) -> bytes:
    """The next bundle for `to_member`: what it has not acknowledged, up to one bundle's limits.

    Every export takes a new sequence number (one above the last sent), and
    each carries all the member has not acknowledged, so a later bundle covers
    every earlier one: exporting again before the member's receipt comes back
    (an erasure made meanwhile, a lost file) gives a bundle the member applies
    whether or not it applied the earlier one, never a second "#1" it would
    refuse as a replay.
    """
    return export_parts(ctx, scheme, to_member, now, actor=actor, policy=policy,
                        max_parts=1)[0].blob


def export_parts(ctx: RegistryContext, scheme: LoadedScheme, to_member: str, now: datetime, *,
                 actor: User | None = None, policy: TransferPolicy | None = None,
                 max_parts: int | None = None) -> list[Exported]:
    """Everything `to_member` has not acknowledged, as bundles of bounded size in sequence order.

    A first sync of thousands of entries becomes several bundles (sequences
    n, n+1, ...), each within `joint_use_bundle_max_items` and
    `joint_use_bundle_max_bytes`; the member applies them in order, each
    whole, and signs a receipt for each. `max_parts` stops after that many
    (the rest is exported by a later call).
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, Role.ADMIN, trained=True)
    me = ctx.policy.store_id
    if to_member == me:
        raise ProvisionRefusedError("a store does not send bundles to itself")
    keys = store_keys(ctx, scheme)
    (policy or provision_policy()).check(Transfer(
        scheme, me, to_member, _last_sent(ctx, to_member) + 1,
        frozenset(former_members(ctx, scheme))))
    ensure_notice_current(ctx)  # G-NOT-2/G-SHR-1: visitors were told what is shared
    recipient = scheme.member(to_member)
    assert recipient is not None  # the policy refused non-members
    with ctx.writing():
        first = _last_sent(ctx, to_member) + 1
        parts, left = _parts(ctx, _plan(ctx, to_member, now), max_parts)
        # Forwarded requests and answers to them are few and small: they ride in the first part.
        forwards = tuple(forwarding.forwards_for(ctx, to_member))
        answers = tuple(forwarding.answers_for(ctx, to_member))
        exported = []
        for offset, part in enumerate(parts):
            later = sum(p.items() for p in parts[offset + 1:]) + left
            blob = _seal_part(ctx, scheme, keys, recipient.encryption_public(), to_member,
                              first + offset, part, now, actor,
                              (forwards, answers) if offset == 0 else ((), ()))
            exported.append(Exported(blob, first + offset, part.items(), later))
    return exported


def _seal_part(ctx: RegistryContext, scheme: LoadedScheme, keys: StoreKeys,
               recipient_key: X25519PublicKey, to_member: str, sequence: int, part: _Part,
               now: datetime, actor: User | None,
               desk: tuple[tuple[ForwardedRequest, ...], tuple[RequestAnswer, ...]] = ((), ()),
               ) -> bytes:
    """Seal one bundle and record it as provided (G-SHR-7), in the caller's write lock."""
    me = ctx.policy.store_id
    bundle = Bundle(
        sender=me, recipient=to_member, sequence=sequence, created_at=now,
        scheme_sha256=scheme.sha256,
        entries=tuple(s for _, s in part.entries),
        corrections=tuple(s for _, s in part.corrections),
        tombstones=tuple(Tombstone(origin_entry_id=e.entry_id, reason=_REASON[e.state],
                                   closed_at=e.closed_at or now) for e in part.tombstones),
        objections=tuple(Objection(origin_entry_id=e.entry_id, action=a,
                                   at=now) for e, a in part.objections),
        requests=desk[0], request_answers=desk[1],
    )
    blob = seal("bundle", bundle, sender=me, recipient=to_member, sequence=sequence,
                signing_key=keys.signing, recipient_key=recipient_key)
    digest = sha256_hex(blob)
    entries = [e for e, _ in part.entries]
    corrections = [e for e, _ in part.corrections]
    items = (
        [SentItem(e.entry_id, "entry", e.revision) for e in entries]
        + [SentItem(e.entry_id, "correction", e.revision) for e in corrections]
        + [SentItem(e.entry_id, a, e.revision) for e, a in part.objections]
        + [SentItem(e.entry_id, "tombstone", e.revision) for e in part.tombstones]
    )
    with ctx.repo.unit_of_work():
        ctx.repo.add_sent_bundle(SentBundle(to_member, digest, sequence, now, tuple(items)))
        ctx.audit.record(
            actor=actor.username if actor else SYNC_ACTOR, action=Action.JOINT_USE_PROVIDED,
            at=now,
            details={"to": to_member, "sequence": sequence, "bundle_sha256": digest,
                     "basis": BASIS, "scheme_sha256": scheme.sha256,
                     "data_items": list(SHARED_ITEMS),
                     "entries": [e.entry_id for e in entries],
                     "corrections": [e.entry_id for e in corrections],
                     "tombstones": [e.entry_id for e in part.tombstones],
                     "objections": [[e.entry_id, a] for e, a in part.objections],
                     "requests_forwarded": [r.request_id for r in desk[0]],
                     "request_answers": [a.request_id for a in desk[1]],
                     "bytes": len(blob)},
        )
    return blob


# --- import (recipient) -----------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What one import applied, and the signed, encrypted receipt to send back to the origin."""

    sender: str
    sequence: int
    receipt: Receipt
    receipt_blob: bytes
    local_entries: tuple[str, ...]  # local ids of entries added or replaced
    skipped_expired: tuple[str, ...]  # origin ids already past their expiry here


@dataclass(frozen=True)
class _Change:
    """One shared entry to add or replace here, decided before anything is written."""

    shared: SharedEntry
    expires_at: datetime
    existing: ImportedEntry | None  # replace this local copy (None: a new local entry)
    supersede: bool  # the existing copy is closed here: start a new local entry


def _expiry_here(ctx: RegistryContext, shared: SharedEntry) -> datetime:
    """No later than at the origin, and no later than this store's own retention allows."""
    latest = max(o.occurred_at for o in shared.offences)
    return min(shared.expires_at, add_years(latest, ctx.policy.retention_years))


def _decide(ctx: RegistryContext, bundle: Bundle, now: datetime
            ) -> tuple[list[_Change], list[str], list[ImportedEntry]]:
    """Changes to make, origin ids skipped as expired, active copies to close as expired."""
    changes, skipped, expire = [], [], []
    for shared in (*bundle.entries, *bundle.corrections):
        existing = ctx.repo.imported_by_origin(bundle.sender, shared.origin_entry_id)
        local = ctx.repo.entry(existing.entry_id) if existing else None
        active = local is not None and not local.state.is_final
        expires_at = _expiry_here(ctx, shared)
        if expires_at <= now:
            skipped.append(shared.origin_entry_id)
            if existing is not None and active:
                expire.append(existing)
            continue
        if existing is not None and active and shared.revision <= existing.origin_revision:
            continue  # already held at this revision (a re-sent bundle's content)
        changes.append(_Change(shared, expires_at, existing if active else None,
                               supersede=existing is not None and not active))
    return changes, skipped, expire


def _stage_images(ctx: RegistryContext, changes: list[_Change]) -> dict[str, list[StoredImage]]:
    """Write the images before the transaction; a crash leaves orphans `recover()` sweeps."""
    staged: dict[str, list[StoredImage]] = {}
    try:
        for change in changes:
            staged[change.shared.origin_entry_id] = [ctx.evidence.put_png(png)
                                                     for png in change.shared.images]
    except BaseException:
        _delete_images(ctx, (i.image_id for images in staged.values() for i in images))
        raise
    return staged


def _delete_images(ctx: RegistryContext, image_ids: Iterable[str]) -> None:
    for image_id in image_ids:
        ctx.evidence.delete(image_id)


@dataclass(frozen=True)
class Receiver:
    """What checking an arriving envelope needs from this store, read once (under the lock).

    Holding these, `verify_bundle` runs without the registry: an API route
    authenticates and decrypts a bundle while edge boxes and people keep
    using the registry, and takes the lock only for `apply_bundle`.
    """

    me: str
    scheme: LoadedScheme
    keys: StoreKeys
    former: frozenset[str]

    def signer(self, member_id: str) -> Ed25519PublicKey:
        """The published key of a current member; a typed refusal for anyone else."""
        SenderIsCurrentMember().check(Transfer(self.scheme, member_id, self.me, 1, self.former))
        member = self.scheme.member(member_id)
        assert member is not None  # checked just above
        return member.verifier()

    def authenticate(self, clear: bytes, kind: Kind = "bundle") -> SealedHeader:
        """The envelope's header from its first bytes, addressed to us and signed by a member."""
        return authenticate_header(clear, kind=kind, our_id=self.me, signer=self.signer)


def receiver(ctx: RegistryContext, scheme: LoadedScheme) -> Receiver:
    """This store as the recipient of envelopes under `scheme` (its keys must match it)."""
    return Receiver(ctx.policy.store_id, scheme, store_keys(ctx, scheme),
                    frozenset(former_members(ctx, scheme)))


def next_sequence(ctx: RegistryContext, sender: str) -> int:
    """The only sequence accepted next from `sender` (replays and gaps are refused)."""
    inbound = ctx.repo.inbound_state(sender)
    return (inbound.last_sequence if inbound else 0) + 1


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle decrypted for us, signed by a current member, its payload parsed."""

    transfer: Transfer
    bundle: Bundle
    digest: str  # SHA-256 of the envelope, what the receipt names


def verify_bundle(rx: Receiver, blob: bytes, *,
                  signer: TransferPolicy | None = None) -> VerifiedBundle:
    """Authenticate, decrypt and parse a bundle; touches no registry state (no lock needed)."""
    opened = open_envelope(blob, kind="bundle", our_id=rx.me, our_key=rx.keys.encryption,
                           signer=rx.signer)
    transfer = Transfer(rx.scheme, opened.header.sender, rx.me, opened.header.sequence,
                        rx.former, opened=opened)
    (signer or signer_policy()).check(transfer)
    bundle: Bundle = parse_payload(opened, Bundle)
    return VerifiedBundle(transfer, bundle, sha256_hex(blob))


def apply_bundle(ctx: RegistryContext, rx: Receiver, verified: VerifiedBundle, now: datetime, *,
                 actor: User | None = None,
                 content: TransferPolicy | None = None) -> ImportResult:
    """Apply a verified bundle whole in one transaction, or refuse it and change nothing.

    The sequence is checked again here, under the write lock, so of two
    concurrent deliveries of one bundle exactly one is applied.
    """
    bundle = verified.bundle
    with ctx.writing():
        (content or content_policy()).check(replace(
            verified.transfer, bundle=bundle,
            expected_sequence=next_sequence(ctx, bundle.sender),
            indexed_pack=(ctx.index_spec.pack, ctx.index_spec.dim)))
        changes, skipped, expire = _decide(ctx, bundle, now)
        staged = _stage_images(ctx, changes)
        try:
            result, erased_images = _apply(ctx, rx.scheme, rx.keys, bundle, verified.digest,
                                           changes, skipped, expire, staged, now, actor)
        except BaseException:
            _delete_images(ctx, (i.image_id for images in staged.values() for i in images))
            raise
        _delete_images(ctx, erased_images)
        ctx.publish_index_if_stale()
    return result


def import_bundle(ctx: RegistryContext, scheme: LoadedScheme, blob: bytes, now: datetime, *,
                  actor: User | None = None, signer: TransferPolicy | None = None,
                  content: TransferPolicy | None = None) -> ImportResult:
    """Verify a bundle and apply it whole in one transaction, or refuse it and change nothing."""
    if actor is not None:
        require_role(actor, Role.MANAGER, Role.ADMIN, trained=True)
    rx = receiver(ctx, scheme)
    return apply_bundle(ctx, rx, verify_bundle(rx, blob, signer=signer), now, actor=actor,
                        content=content)


def _apply(ctx: RegistryContext, scheme: LoadedScheme, keys: StoreKeys, bundle: Bundle,
           digest: str, changes: list[_Change], skipped: list[str], expire: list[ImportedEntry],
           staged: dict[str, list[StoredImage]], now: datetime, actor: User | None
           ) -> tuple[ImportResult, list[str]]:
    sender = bundle.sender
    erased_images: list[str] = []
    local_ids: list[str] = []
    closed_here: list[str] = []
    index_changed = False
    with ctx.repo.unit_of_work():
        intake = ctx.repo.joint_use_intake_user(now)
        for change in changes:
            local_ids.append(_put_entry(ctx, sender, change, staged[change.shared.origin_entry_id],
                                        intake, now, erased_images))
            index_changed = True
        for expired in expire:
            erased_images += _close_copy(ctx, expired, "expired", sender, now,
                                         why="its expiry passed before this bundle arrived")
            index_changed = True
        objections_applied = []
        for objection in bundle.objections:
            copy = ctx.repo.imported_by_origin(sender, objection.origin_entry_id)
            local = ctx.repo.entry(copy.entry_id) if copy else None
            if copy is not None and local is not None and not local.state.is_final:
                if objection.action == "suspend":
                    ctx.repo.suspend_entry(copy.entry_id, now, sender)
                else:
                    ctx.repo.unsuspend_entry(copy.entry_id)
                index_changed = True
            objections_applied.append(objection.origin_entry_id)
        tombstones_applied = []
        for tombstone in bundle.tombstones:
            copy = ctx.repo.imported_by_origin(sender, tombstone.origin_entry_id)
            local = ctx.repo.entry(copy.entry_id) if copy else None
            if copy is not None and local is not None and not local.state.is_final:
                erased_images += _close_copy(ctx, copy, tombstone.reason, sender, now,
                                             why=f"{tombstone.reason} at the origin")
                closed_here.append(copy.entry_id)
                index_changed = True
            tombstones_applied.append(tombstone.origin_entry_id)  # held or not: none held now
        if index_changed:
            ctx.repo.bump_watchlist_version()
        who = actor.username if actor else SYNC_ACTOR
        requests_applied = forwarding.receive_forwarded(ctx, sender, bundle.requests, who, now)
        answers_applied = forwarding.receive_answers(ctx, sender, bundle.request_answers, who, now)
        new_ids = {e.origin_entry_id for e in bundle.entries}
        receipt = Receipt(
            issued_by=ctx.policy.store_id, origin=sender, sequence=bundle.sequence,
            bundle_sha256=digest, applied_at=now,
            entries_applied=tuple(c.shared.origin_entry_id for c in changes
                                  if c.shared.origin_entry_id in new_ids),
            corrections_applied=tuple(c.shared.origin_entry_id for c in changes
                                      if c.shared.origin_entry_id not in new_ids),
            tombstones_applied=tuple(tombstones_applied),
            objections_applied=tuple(objections_applied),
            requests_applied=tuple(requests_applied),
            request_answers_applied=tuple(answers_applied),
        )
        origin = scheme.member(sender)
        assert origin is not None  # the signer policy refused non-members
        receipt_blob = seal("receipt", receipt, sender=ctx.policy.store_id, recipient=sender,
                            sequence=bundle.sequence, signing_key=keys.signing,
                            recipient_key=origin.encryption_public())
        ctx.repo.set_inbound_state(InboundState(sender, bundle.sequence, digest, now,
                                                receipt_blob))
        ctx.audit.record(
            actor=actor.username if actor else SYNC_ACTOR, action=Action.JOINT_USE_RECEIVED,
            at=now,
            details={"from": sender, "sequence": bundle.sequence, "bundle_sha256": digest,
                     "basis": BASIS, "scheme_sha256": scheme.sha256,
                     "entries": local_ids, "tombstones": list(tombstones_applied),
                     "closed_here": closed_here, "objections": objections_applied,
                     "requests_received": requests_applied,
                     "request_answers": answers_applied,
                     "skipped_expired": skipped, "watchlist_version": ctx.repo.watchlist_version()},
        )
    result = ImportResult(sender, bundle.sequence, receipt, receipt_blob, tuple(local_ids),
                          tuple(skipped))
    return result, erased_images


def _put_entry(ctx: RegistryContext, sender: str, change: _Change, images: list[StoredImage],
               intake: int, now: datetime, erased_images: list[str]) -> str:
    """Add a new local copy of a shared entry, or replace the face data of the one held."""
    shared = change.shared
    if change.existing is not None:
        local_id = change.existing.entry_id
        erased_images += ctx.repo.purge_face_data(local_id)
        current = ctx.repo.entry(local_id)
        assert current is not None
        ctx.repo.update_entry(replace(current, features=shared.features,
                                      expires_at=change.expires_at,
                                      revision=current.revision + 1))
        ctx.repo.update_imported_entry(replace(change.existing, origin_revision=shared.revision,
                                               origin_expires_at=shared.expires_at,
                                               updated_at=now))
    else:
        if change.supersede:
            previous = ctx.repo.imported_by_origin(sender, shared.origin_entry_id)
            if previous is not None:
                ctx.repo.supersede_imported_entry(previous.entry_id)
        local_id = uuid.uuid4().hex
        ctx.repo.add_entry(Entry(
            entry_id=local_id, state=EntryState.ACTIVE, store_id=sender,
            features=shared.features, display_name="", proposed_by=intake, proposed_at=now,
            decided_by=None, decided_at=now,
            decision_reason=f"joint use: approved by two people at {sender}",
            expires_at=change.expires_at, revision=1, closed_at=None, closed_reason="",
        ))
        ctx.repo.add_imported_entry(ImportedEntry(
            local_id, sender, shared.origin_entry_id, shared.revision, shared.expires_at,
            now, now))
    for offence in shared.offences:
        ctx.repo.add_incident(local_id, sender, IncidentInput(
            offence.category, offence.occurred_at, ConfirmationKind.OTHER,
            f"joint use: confirmed at {sender}", offence.damage, ""), intake, now)
    for image in images:
        # masked_faces is not a shared item; 0 here means "not known at this store"
        ctx.repo.add_evidence(EvidenceRecord(image.image_id, local_id, image.sha256, 0, now))
    quality = json.dumps({"source": "joint_use", "origin": sender})
    for template in shared.templates:
        vector = np.frombuffer(template.vector, dtype=np.float32)
        image_id = images[template.image].image_id if template.image is not None else ""
        ctx.repo.add_template(local_id, template.pack, vector.tobytes(), template.dim, image_id,
                              quality)
    return local_id


def _close_copy(ctx: RegistryContext, copy: ImportedEntry, reason: str, sender: str,
                now: datetime, *, why: str) -> list[str]:
    """Erase a local copy like `close_entry` does, inside the caller's transaction.

    The audit record uses the same action as a local erasure, so a restore
    from backup re-applies it (G-REG-4). Image files are the caller's to delete
    after the commit.
    """
    state, action = _CLOSE[reason]
    entry = ctx.repo.entry(copy.entry_id)
    assert entry is not None
    image_ids = ctx.repo.purge_face_data(copy.entry_id)
    ctx.repo.unsuspend_entry(copy.entry_id)
    ctx.repo.update_entry(replace(entry, state=state, features="", display_name="",
                                  revision=entry.revision + 1, closed_at=now,
                                  closed_reason=f"joint use: {why} ({sender})"))
    ctx.audit.record(actor=f"joint-use:{sender}", action=action, at=now, entry_id=copy.entry_id,
                     details={"from_state": entry.state.value, "reason": f"joint use: {why}",
                              "joint_use_origin": sender,
                              "origin_entry_id": copy.origin_entry_id,
                              "evidence_images_erased": len(image_ids)})
    return image_ids


def last_receipt(ctx: RegistryContext, member: str) -> bytes:
    """The receipt issued for the last bundle applied from `member` (to send it again)."""
    state = ctx.repo.inbound_state(member)
    if state is None:
        raise ReceiptError(f"no bundle from {member} was ever applied here")
    return state.receipt


# --- receipts (origin) ------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedReceipt:
    member: str
    sequence: int
    tombstones_confirmed: tuple[str, ...]


def apply_receipt(ctx: RegistryContext, scheme: LoadedScheme, receipt_blob: bytes,
                  now: datetime, *, actor: User | None = None) -> AppliedReceipt:
    """Record what a member acknowledged, and which erasures it confirmed (G-SHR-4)."""
    if actor is not None:
        require_role(actor, Role.MANAGER, Role.ADMIN, trained=True)
    me = ctx.policy.store_id
    rx = receiver(ctx, scheme)
    opened = open_envelope(receipt_blob, kind="receipt", our_id=me, our_key=rx.keys.encryption,
                           signer=rx.signer)
    signer_policy().check(Transfer(scheme, opened.header.sender, me, opened.header.sequence,
                                   rx.former, opened=opened))
    receipt: Receipt = parse_payload(opened, Receipt)
    member = receipt.issued_by
    with ctx.writing():
        sent = {b.bundle_sha256: b for b in ctx.repo.sent_bundles(member)}
        bundle = sent.get(receipt.bundle_sha256)
        if bundle is None or bundle.sequence != receipt.sequence:
            acked = ctx.repo.last_acked_sequence(member)
            if receipt.sequence <= acked:
                raise ReceiptError(f"{member}'s receipt for bundle #{receipt.sequence} was already "
                                   f"applied (acknowledged up to #{acked}); nothing changed")
            raise ReceiptError(f"{member}'s receipt names a bundle #{receipt.sequence} this store "
                               "did not send; nothing changed")
        with ctx.repo.unit_of_work():
            confirmed = _acknowledge(ctx, member, bundle, receipt, now)
            requests.acknowledged(ctx, member, receipt.requests_applied,
                                  receipt.request_answers_applied)
            ctx.audit.record(
                actor=actor.username if actor else SYNC_ACTOR, action=Action.JOINT_USE_CONFIRMED,
                at=now,
                details={"from": member, "sequence": receipt.sequence,
                         "bundle_sha256": receipt.bundle_sha256,
                         "applied_at": receipt.applied_at.isoformat(),
                         "entries_acknowledged": len(receipt.entries_applied)
                         + len(receipt.corrections_applied),
                         "tombstones_confirmed": list(confirmed)},
            )
    return AppliedReceipt(member, receipt.sequence, confirmed)


def _acknowledge(ctx: RegistryContext, member: str, bundle: SentBundle, receipt: Receipt,
                 now: datetime) -> tuple[str, ...]:
    held = ctx.repo.held_copies(member)
    applied_tombstones = set(receipt.tombstones_applied)
    confirmed: list[str] = []
    order = {"entry": 0, "correction": 0, "suspend": 1, "unsuspend": 1, "tombstone": 2}
    with ctx.repo.unit_of_work():
        for item in sorted(bundle.items, key=lambda i: order[i.kind]):
            copy = held.get(item.entry_id)
            if item.kind in ("entry", "correction"):
                copy = HeldCopy(member, item.entry_id, item.revision,
                                copy.suspended if copy else False, False)
            elif item.kind in ("suspend", "unsuspend"):
                if copy is None:
                    continue  # it held no acknowledged copy; nothing to suspend there
                copy = replace(copy, suspended=item.kind == "suspend")
            elif item.entry_id in applied_tombstones:
                copy = HeldCopy(member, item.entry_id, item.revision, False, True)
                ctx.repo.add_erasure_confirmation(ErasureConfirmation(
                    item.entry_id, member, receipt.sequence, receipt.applied_at, now))
                confirmed.append(item.entry_id)
            else:
                continue
            ctx.repo.set_held_copy(copy)
            held[item.entry_id] = copy
        ctx.repo.acknowledge_bundle(member, receipt.sequence, now)
    return tuple(confirmed)


def erasure_confirmations(ctx: RegistryContext, entry_id: str) -> list[ErasureConfirmation]:
    """Which members confirmed, with a signed receipt, that they erased their copy."""
    return ctx.repo.erasure_confirmations(entry_id)


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberStatus:
    member_id: str
    store_name: str
    region: str
    may_receive: bool  # the region rule allows sharing with it
    last_sent: int
    last_acked: int
    last_received: int
    pending_erasures: tuple[str, ...]  # erased here, not yet confirmed by that member

    def to_dict(self) -> dict[str, object]:
        return {"member": self.member_id, "store_name": self.store_name, "region": self.region,
                "may_receive": self.may_receive, "last_sent": self.last_sent,
                "last_acked": self.last_acked, "last_received": self.last_received,
                "pending_erasure_confirmations": list(self.pending_erasures)}


def status(ctx: RegistryContext, scheme: LoadedScheme) -> list[MemberStatus]:
    """Per member: sequences sent, acknowledged, received; erasures awaiting confirmation."""
    me = ctx.policy.store_id
    rows = []
    for member in scheme.scheme.members:
        if member.member_id == me:
            continue
        pending = ctx.repo.sent_bundles(member.member_id)
        acked = ctx.repo.last_acked_sequence(member.member_id)
        held = ctx.repo.held_copies(member.member_id)
        candidates = ({e for e, c in held.items() if not c.closed}
                      | {i.entry_id for b in pending for i in b.items})
        waiting = []
        for entry_id in sorted(candidates):
            entry = ctx.repo.entry(entry_id)
            if entry is not None and entry.state.is_final:
                waiting.append(entry_id)
        inbound = ctx.repo.inbound_state(member.member_id)
        try:
            provision_policy().check(Transfer(scheme, me, member.member_id, acked + 1))
            allowed = True
        except ProvisionRefusedError:
            allowed = False
        rows.append(MemberStatus(
            member.member_id, member.store_name, member.region, allowed,
            _last_sent(ctx, member.member_id), acked,
            inbound.last_sequence if inbound else 0, tuple(waiting)))
    return rows

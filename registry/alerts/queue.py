"""Alerts from the edge boxes: a match is a lead, not a verdict ("what follows" 2).

An edge box that matches a visitor against the watchlist sends one alert: the
entry it matched, the score and threshold, the index version it searched, and
a snapshot in which every face but the matched one is already masked. The
registry keeps the alert for a person on staff to confirm or dismiss, stores
the snapshot encrypted like all evidence (G-SEC-2), and writes an audit
record that holds ids, numbers and the snapshot's hash, never the picture.

Stores (issue 15, item 1): an alert is the store's of the box that sent it;
store staff and managers see and judge their own store's alerts only, the
chain office every store's (`registry.accounts.stores`, G-SEC-1). Another
store's alert answers as one that does not exist (404, never 403).

Receiving is idempotent: the box keeps an outbox and may deliver the same
alert again after a crash or a lost response, so a known `alert_id` from the
same box is answered as a duplicate and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kernel.errors import ConflictError, NotFoundError, RegistryError, RuleViolationError
from kernel.evidence import EncodedPng
from kernel.png import MAX_PNG_PIXELS, PngError, PngTooLargeError, clean_png
from registry.accounts.stores import sees_store, store_in_view
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.clock import Timestamp, not_in_future, to_text
from registry.context import RegistryContext
from registry.domain import Alert, AlertStatus, Device, EntryState, Role, User
from registry.text import REASON

MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # decoded PNG
MAX_SNAPSHOT_B64_CHARS = 4 * ((MAX_SNAPSHOT_BYTES + 2) // 3)
# Refused before decoding: a small PNG can inflate to gigabytes (8K UHD is 33 Mpx).
MAX_SNAPSHOT_PIXELS = MAX_PNG_PIXELS
_HEX32 = r"^[0-9a-f]{32}$"
_ROUNDING = 1e-6


class SnapshotError(RuleViolationError):
    """The snapshot is not a usable PNG image."""


class SnapshotTooLargeError(SnapshotError):
    """The snapshot is larger than the registry accepts."""


class UnknownEntryError(RuleViolationError):
    """The alert names an entry that is not active on the watchlist."""


class AlertConflictError(RegistryError):
    """The alert id is already used by another device."""


class AlertIn(BaseModel):
    """What an edge box sends for one match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(pattern=_HEX32, description="uuid4 hex from the box; retries reuse it")
    camera: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    detected_at: Timestamp
    score: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    threshold: float = Field(ge=-1.0, le=1.0, allow_inf_nan=False)
    entry_id: str = Field(pattern=_HEX32)
    index_version: int = Field(ge=0, le=2**63 - 1)
    snapshot_png_b64: str = Field(
        min_length=1, max_length=MAX_SNAPSHOT_B64_CHARS,
        description="the masked snapshot, PNG, standard base64",
    )

    @model_validator(mode="after")
    def _a_match_reaches_its_threshold(self) -> AlertIn:
        # The box rounds the score to 6 decimals; allow for that, nothing more.
        if self.score < self.threshold - _ROUNDING:
            raise ValueError("score is below threshold: that is not a match, send no alert")
        return self


def read_snapshot(snapshot_b64: str) -> bytes:
    """The snapshot as the PNG evidence keeps: its picture chunks only (`kernel.png`).

    Refuses anything but a sane 8-bit PNG; nothing else the box put in the file
    (text, Exif, times, bytes after the end) is kept, and the pixels are not
    encoded again (their deflate was most of an alert's CPU, issue 15).
    """
    try:
        png = base64.b64decode(snapshot_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SnapshotError("snapshot_png_b64 is not valid base64") from None
    try:
        return clean_png(png, max_bytes=MAX_SNAPSHOT_BYTES, max_pixels=MAX_SNAPSHOT_PIXELS)
    except PngTooLargeError as exc:
        raise SnapshotTooLargeError(f"the snapshot is {exc.problem}") from None
    except PngError as exc:
        raise SnapshotError(f"the snapshot is {exc.problem}") from None


@dataclass(frozen=True)
class ReceivedSnapshot:
    """An alert's snapshot checked and cleaned as evidence (`read_snapshot`), or why it
    cannot be.

    Made before the registry is taken (the API does it in a worker thread,
    registry/api/routes/edge.py): the image check (a decode, ~4.5 ms for a
    640x360 frame) needs no connection, so a burst of alerts does not hold the
    registry's turn for it. A snapshot that does not decode
    keeps its error, raised where `receive_alert` checks it (after the
    re-delivery and entry checks), so the answers stay as they were.
    """

    png: EncodedPng | None
    error: RegistryError | None

    @classmethod
    def of(cls, snapshot_b64: str) -> ReceivedSnapshot:
        try:
            return cls(EncodedPng(read_snapshot(snapshot_b64)), None)
        except RegistryError as exc:  # SnapshotError, or an image evidence cannot hold
            return cls(None, exc)

    def encoded(self) -> EncodedPng:
        if self.png is None:
            raise self.error or SnapshotError("the snapshot was not received")
        return self.png


def receive_alert(ctx: RegistryContext, *, device: Device, payload: AlertIn,
                  now: datetime, snapshot: ReceivedSnapshot | None = None) -> tuple[str, bool]:
    """Store one alert; `(alert_id, True)` if new, `(alert_id, False)` for a re-delivery.

    `snapshot`: `payload`'s snapshot already prepared (`ReceivedSnapshot.of`);
    by default it is prepared here.
    """
    with ctx.writing():
        existing = ctx.repo.alert(payload.alert_id)
        if existing is not None:
            if existing.device != device.name:
                raise AlertConflictError(f"alert id {payload.alert_id} is already used")
            return payload.alert_id, False
        # A box whose clock runs ahead would put its alerts above every real one.
        not_in_future(payload.detected_at, now, "detected_at")
        entry = ctx.repo.entry(payload.entry_id)
        if entry is None or entry.state is not EntryState.ACTIVE:
            raise UnknownEntryError(
                f"entry {payload.entry_id} is not an active watchlist entry (erased, expired "
                "or never approved): drop the alert and its snapshot, and refresh the index"
            )
        if snapshot is None:
            snapshot = ReceivedSnapshot.of(payload.snapshot_png_b64)
        stored = ctx.evidence.put(snapshot.encoded())
        alert = Alert(
            alert_id=payload.alert_id, device=device.name, camera=payload.camera,
            detected_at=payload.detected_at, received_at=now, score=payload.score,
            threshold=payload.threshold, entry_id=payload.entry_id,
            index_version=payload.index_version, snapshot_image_id=stored.image_id,
            status=AlertStatus.OPEN, decided_by=None, decided_at=None, decision_reason="",
            store_id=device.store_id,
        )
        try:
            with ctx.repo.unit_of_work():
                ctx.repo.add_alert(alert)
                ctx.audit.record(
                    actor=f"device:{device.name}", action=Action.ALERT_RECEIVED, at=now,
                    entry_id=payload.entry_id,
                    details={"alert_id": payload.alert_id, "device": device.name,
                             "store_id": device.store_id, "camera": payload.camera,
                             "score": round(payload.score, 6),
                             "threshold": round(payload.threshold, 6),
                             "index_version": payload.index_version,
                             "detected_at": to_text(payload.detected_at),
                             "snapshot_sha256": stored.sha256},
                )
        except BaseException:
            ctx.evidence.delete(stored.image_id)
            raise
    return payload.alert_id, True


def list_alerts(ctx: RegistryContext, status: AlertStatus | None = None,
                store_id: str | None = None) -> list[Alert]:
    return ctx.repo.alerts(status, store_id)


# --- staff decide: a match is a lead, not a verdict -------------------------------

@dataclass(frozen=True)
class AlertView:
    """What staff see of one alert: the match, and who decided what (never a template)."""

    alert: Alert
    decided_by: str | None
    entry_state: str
    entry_evidence_images: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        a = self.alert
        return {
            "alert_id": a.alert_id,
            "store_id": a.store_id,
            "device": a.device,
            "camera": a.camera,
            "detected_at": to_text(a.detected_at),
            "received_at": to_text(a.received_at),
            "score": a.score,
            "threshold": a.threshold,
            "entry_id": a.entry_id,
            "entry_state": self.entry_state,
            "entry_evidence_images": list(self.entry_evidence_images),
            "index_version": a.index_version,
            "has_snapshot": a.snapshot_image_id is not None,
            "status": a.status.value,
            "decided_by": self.decided_by,
            "decided_at": to_text(a.decided_at) if a.decided_at else None,
            "decision_reason": a.decision_reason,
        }


def alert_views(ctx: RegistryContext, *, actor: User, status: AlertStatus | None = None,
                store: str | None = None) -> list[AlertView]:
    """Alerts for the live page, newest first; staff and managers only (they show faces).

    Of the actor's own store; the chain office sees `store`'s, or every store's (None).
    """
    require_role(actor, Role.STAFF, Role.MANAGER)
    in_view = store_in_view(ctx.repo, actor, store)
    return [_view(ctx, alert) for alert in reversed(ctx.repo.alerts(status, in_view))]


def alert_view(ctx: RegistryContext, *, actor: User, alert_id: str) -> AlertView:
    require_role(actor, Role.STAFF, Role.MANAGER)
    return _view(ctx, _existing_alert(ctx, alert_id, actor))


def _view(ctx: RegistryContext, alert: Alert) -> AlertView:
    entry = ctx.repo.entry(alert.entry_id)
    return AlertView(
        alert=alert,
        decided_by=ctx.repo.username_of(alert.decided_by) if alert.decided_by else None,
        entry_state=entry.state.value if entry else "unknown",
        entry_evidence_images=tuple(r.image_id for r in ctx.repo.evidence(alert.entry_id)),
    )


def _existing_alert(ctx: RegistryContext, alert_id: str, actor: User) -> Alert:
    """The alert, if `actor` may see its store; another store's is as absent as none."""
    alert = ctx.repo.alert(alert_id)
    if alert is None or not sees_store(actor, alert.store_id):
        raise NotFoundError(f"no alert {alert_id}")
    return alert


def alert_snapshot_png(ctx: RegistryContext, *, actor: User, alert_id: str) -> bytes:
    """The alert's masked snapshot as PNG bytes; never for an auditor (G-SEC-1)."""
    require_role(actor, Role.STAFF, Role.MANAGER)
    alert = _existing_alert(ctx, alert_id, actor)
    if alert.snapshot_image_id is None:
        raise NotFoundError(
            f"alert {alert_id} has no snapshot any more (dismissed, or the entry was erased)"
        )
    return ctx.evidence.get_bytes(alert.snapshot_image_id)


def confirm_alert(ctx: RegistryContext, *, actor: User, alert_id: str, reason: str = "",
                  now: datetime) -> Alert:
    """A trained person checked the match: it is the registered person."""
    return _decide(ctx, actor=actor, alert_id=alert_id, status=AlertStatus.CONFIRMED,
                   reason=reason, now=now)


def dismiss_alert(ctx: RegistryContext, *, actor: User, alert_id: str, reason: str,
                  now: datetime) -> Alert:
    """The match was wrong: someone else. Their snapshot is erased at once ("what follows" 1):
    a visitor who is not on the watchlist leaves no picture behind."""
    if not reason.strip():
        raise RuleViolationError("say why the alert is dismissed (e.g. a different person)")
    return _decide(ctx, actor=actor, alert_id=alert_id, status=AlertStatus.DISMISSED,
                   reason=reason, now=now)


def _decide(ctx: RegistryContext, *, actor: User, alert_id: str, status: AlertStatus,
            reason: str, now: datetime) -> Alert:
    require_role(actor, Role.STAFF, Role.MANAGER, trained=True)
    reason = REASON.clean(reason, field="reason")
    with ctx.writing():
        alert = _existing_alert(ctx, alert_id, actor)
        if alert.status is not AlertStatus.OPEN:
            raise ConflictError(f"alert {alert_id} was already {alert.status.value}")
        erase = status is AlertStatus.DISMISSED and alert.snapshot_image_id is not None
        decided = replace(alert, status=status, decided_by=actor.user_id, decided_at=now,
                          decision_reason=reason,
                          snapshot_image_id=None if erase else alert.snapshot_image_id)
        action = (Action.ALERT_CONFIRMED if status is AlertStatus.CONFIRMED
                  else Action.ALERT_DISMISSED)
        with ctx.repo.unit_of_work():
            ctx.repo.decide_alert(decided)
            ctx.audit.record(actor=actor.username, action=action, at=now,
                             entry_id=alert.entry_id,
                             details={"alert_id": alert_id, "device": alert.device,
                                      "store_id": alert.store_id, "reason": reason,
                                      "snapshot_erased": erase})
        if erase and alert.snapshot_image_id is not None:
            ctx.evidence.delete(alert.snapshot_image_id)
    return decided


# --- lifetimes (G-RET-1): nothing about an alert is kept "until someone deletes it" ---


def lapse_stale_alerts(ctx: RegistryContext, *, now: datetime) -> list[str]:
    """Lapse every alert left open longer than `open_alert_days`; their ids. Under the lock.

    Nobody judged the match, so it is no lead any more, only a stored face:
    the snapshot is erased, the row stays with its ids, score and times.
    """
    cutoff = now - timedelta(days=ctx.policy.open_alert_days)
    lapsed: list[str] = []
    for alert in stale_open_alerts(ctx, now=now):
        snapshot = alert.snapshot_image_id
        with ctx.repo.unit_of_work():
            ctx.repo.decide_alert(replace(alert, status=AlertStatus.LAPSED, decided_at=now,
                                          snapshot_image_id=None))
            ctx.audit.record(actor="expiry-job", action=Action.ALERT_LAPSED, at=now,
                             entry_id=alert.entry_id,
                             details={"alert_id": alert.alert_id, "device": alert.device,
                                      "store_id": alert.store_id,
                                      "open_alert_days": ctx.policy.open_alert_days,
                                      "received_before": to_text(cutoff),
                                      "snapshot_erased": snapshot is not None})
        if snapshot is not None:
            ctx.evidence.delete(snapshot)
        lapsed.append(alert.alert_id)
    return lapsed


def stale_open_alerts(ctx: RegistryContext, *, now: datetime) -> list[Alert]:
    cutoff = now - timedelta(days=ctx.policy.open_alert_days)
    return [a for a in ctx.repo.alerts(AlertStatus.OPEN) if a.received_at < cutoff]


def sweep_stray_alert_snapshots(ctx: RegistryContext, *, now: datetime) -> int:
    """Safety net: erase every alert snapshot whose entry is no longer active. Under the lock.

    Erasure, expiry, withdrawal and rejection already erase them with the
    entry (`purge_face_data`); this catches whatever a crash or an older
    version left, so a snapshot never outlives its entry.
    """
    stray = ctx.repo.stray_alert_snapshots()
    if not stray:
        return 0
    with ctx.repo.unit_of_work():
        for alert_id, _ in stray:
            ctx.repo.clear_alert_snapshot(alert_id)
        ctx.audit.record(actor="expiry-job", action=Action.ALERT_SNAPSHOTS_SWEPT, at=now,
                         details={"alerts": [alert_id for alert_id, _ in stray]})
    for _, image_id in stray:
        ctx.evidence.delete(image_id)
    return len(stray)


@dataclass(frozen=True)
class PrecisionFigure:
    """How many decided alerts were the registered person: confirmed / (confirmed + dismissed)."""

    scope: str  # the store id, or a device name within it
    confirmed: int
    dismissed: int
    open: int

    @property
    def precision(self) -> float | None:
        decided = self.confirmed + self.dismissed
        return self.confirmed / decided if decided else None

    def to_dict(self) -> dict[str, Any]:
        return {"confirmed": self.confirmed, "dismissed": self.dismissed, "open": self.open,
                "precision": self.precision}


@dataclass(frozen=True)
class StorePrecision:
    store: PrecisionFigure
    by_device: tuple[PrecisionFigure, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"store_id": self.store.scope, **self.store.to_dict(),
                "by_device": [{"device": d.scope, **d.to_dict()} for d in self.by_device]}


def precision(ctx: RegistryContext, *, actor: User | None = None,
              store: str | None = None) -> StorePrecision:
    """A store's precision figure (its boxes' alerts), and each box's.

    Numbers only, no faces: any logged-in role may see it, for the stores they see:
    `actor`'s own store; for the chain office (or no actor: the system) `store`'s, or
    every store together (None) under the installation's store id (`registry.store_id`).
    """
    in_view = store_in_view(ctx.repo, actor, store) if actor is not None else store
    counts: dict[str, dict[AlertStatus, int]] = {}
    for device, status, n in ctx.repo.alert_counts(in_view):
        counts.setdefault(device, {})[status] = n

    def figure(scope: str, by_status: dict[AlertStatus, int]) -> PrecisionFigure:
        return PrecisionFigure(scope, by_status.get(AlertStatus.CONFIRMED, 0),
                               by_status.get(AlertStatus.DISMISSED, 0),
                               by_status.get(AlertStatus.OPEN, 0))

    total: dict[AlertStatus, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            total[status] = total.get(status, 0) + n
    return StorePrecision(figure(in_view or ctx.policy.store_id, total),
                          tuple(figure(d, s) for d, s in sorted(counts.items())))

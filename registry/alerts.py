"""Alerts from the edge boxes: a match is a lead, not a verdict ("what follows" 2).

An edge box that matches a visitor against the watchlist sends one alert: the
entry it matched, the score and threshold, the index version it searched, and
a snapshot in which every face but the matched one is already masked. The
registry keeps the alert for a person on staff to confirm or dismiss, stores
the snapshot encrypted like all evidence (G-SEC-2), and writes an audit
record that holds ids, numbers and the snapshot's hash, never the picture.

Receiving is idempotent: the box keeps an outbox and may deliver the same
alert again after a crash or a lost response, so a known `alert_id` from the
same box is answered as a duplicate and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import struct
from datetime import datetime
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from registry.audit import Action
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import Alert, AlertStatus, Device, EntryState
from registry.errors import RegistryError, RuleViolationError

MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # decoded PNG
MAX_SNAPSHOT_B64_CHARS = 4 * ((MAX_SNAPSHOT_BYTES + 2) // 3)
# Refused before decoding: a small PNG can inflate to gigabytes (8K UHD is 33 Mpx).
MAX_SNAPSHOT_PIXELS = 40_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
    detected_at: AwareDatetime
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


def decode_snapshot(snapshot_b64: str) -> npt.NDArray[np.uint8]:
    """The snapshot's pixels; refuses anything but a sane 8-bit PNG."""
    try:
        png = base64.b64decode(snapshot_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SnapshotError("snapshot_png_b64 is not valid base64") from None
    if len(png) > MAX_SNAPSHOT_BYTES:
        raise SnapshotTooLargeError(
            f"the snapshot is {len(png)} bytes; at most {MAX_SNAPSHOT_BYTES} are accepted"
        )
    if not png.startswith(PNG_SIGNATURE):
        raise SnapshotError("the snapshot is not a PNG image (send lossless PNG, not JPEG)")
    # IHDR is always the first chunk: length, b"IHDR", width, height (big-endian).
    if len(png) < 24 or png[12:16] != b"IHDR":
        raise SnapshotError("the snapshot is a damaged PNG (no IHDR header)")
    width, height = struct.unpack(">II", png[16:24])
    if width == 0 or height == 0 or width * height > MAX_SNAPSHOT_PIXELS:
        raise SnapshotTooLargeError(
            f"the snapshot is {width}x{height} pixels; at most {MAX_SNAPSHOT_PIXELS} pixels"
        )
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SnapshotError("the snapshot is a damaged PNG (it does not decode)")
    if image.dtype != np.uint8:
        raise SnapshotError("the snapshot must be an 8-bit PNG")
    return cast(npt.NDArray[np.uint8], image)


def receive_alert(ctx: RegistryContext, *, device: Device, payload: AlertIn,
                  now: datetime) -> tuple[str, bool]:
    """Store one alert; `(alert_id, True)` if new, `(alert_id, False)` for a re-delivery."""
    with ctx.writing():
        existing = ctx.repo.alert(payload.alert_id)
        if existing is not None:
            if existing.device != device.name:
                raise AlertConflictError(f"alert id {payload.alert_id} is already used")
            return payload.alert_id, False
        entry = ctx.repo.entry(payload.entry_id)
        if entry is None or entry.state is not EntryState.ACTIVE:
            raise UnknownEntryError(
                f"entry {payload.entry_id} is not an active watchlist entry (erased, expired "
                "or never approved): drop the alert and its snapshot, and refresh the index"
            )
        stored = ctx.evidence.put(decode_snapshot(payload.snapshot_png_b64))
        alert = Alert(
            alert_id=payload.alert_id, device=device.name, camera=payload.camera,
            detected_at=payload.detected_at, received_at=now, score=payload.score,
            threshold=payload.threshold, entry_id=payload.entry_id,
            index_version=payload.index_version, snapshot_image_id=stored.image_id,
            status=AlertStatus.OPEN, decided_by=None, decided_at=None, decision_reason="",
        )
        try:
            with ctx.repo.unit_of_work():
                ctx.repo.add_alert(alert)
                ctx.audit.record(
                    actor=f"device:{device.name}", action=Action.ALERT_RECEIVED, at=now,
                    entry_id=payload.entry_id,
                    details={"alert_id": payload.alert_id, "device": device.name,
                             "camera": payload.camera, "score": round(payload.score, 6),
                             "threshold": round(payload.threshold, 6),
                             "index_version": payload.index_version,
                             "detected_at": to_text(payload.detected_at),
                             "snapshot_sha256": stored.sha256},
                )
        except BaseException:
            ctx.evidence.delete(stored.image_id)
            raise
    return payload.alert_id, True


def list_alerts(ctx: RegistryContext, status: AlertStatus | None = None) -> list[Alert]:
    return ctx.repo.alerts(status)

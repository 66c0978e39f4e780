"""One-off emergency provision outside the scheme (APPI 27(1)(ii), G-SHR-6).

Case by case only: a manager opens a request for one entry to one named
recipient; several people (at least `MIN_CHECKERS`, one of them a manager,
the store's responsible person) each record their own check of the three
requirements with a reason: present danger (the same offender is likely to
strike other stores soon), necessity (no other way), proportionality
(minimum information). Only then can it be provided, and what is provided is
the minimum: offence date, category, damage and the person's features, and
the evidence images with every face masked, the offender's included (faces
found again by the detector; an image in which no face is found is left out
rather than sent unmasked). No name, no face template, no reference number.
Each provision is recorded with every check (G-SHR-7) and listed, flagged,
in the audit report, so an auditor sees that it did not become routine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from kernel.errors import ConflictError, NotFoundError, RuleViolationError
from kernel.masking import mask_all_faces
from models.engine import FaceEngine
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.domain import EmergencyCheck, EmergencyShare, EntryState, Role, User
from registry.text import REASON
from registry.watchlist.entries import ImportedEntryError

MIN_CHECKERS = 2
BASIS = "one-off emergency provision (APPI 27(1)(ii)), outside joint use"


@dataclass(frozen=True)
class EmergencyPackage:
    """What leaves the store: minimum fields and fully masked images (PNG bytes)."""

    share_id: str
    recipient: str
    fields: dict[str, Any]
    images: tuple[bytes, ...]
    images_left_out: int  # no face found to mask: not sent


def request_share(ctx: RegistryContext, *, actor: User, entry_id: str, recipient: str,
                  now: datetime) -> EmergencyShare:
    """Open a request for one entry to one named recipient (a manager)."""
    require_role(actor, Role.MANAGER, trained=True)
    if not recipient.strip():
        raise RuleViolationError("name the recipient (e.g. the police station or the business)")
    with ctx.writing():
        entry = ctx.repo.entry(entry_id)
        if entry is None:
            raise NotFoundError(f"no entry {entry_id}")
        if ctx.repo.imported_entry(entry_id) is not None:
            raise ImportedEntryError(f"entry {entry_id} was shared by a joint-use member; an "
                                     "emergency provision is made by the store that holds it")
        if entry.state is not EntryState.ACTIVE:
            raise ConflictError(f"entry {entry_id} is {entry.state.value}, not active")
        share = EmergencyShare(uuid.uuid4().hex, entry_id, recipient.strip(), actor.user_id, now,
                               "open", None)
        with ctx.repo.unit_of_work():
            ctx.repo.add_emergency_share(share)
            ctx.audit.record(actor=actor.username, action=Action.EMERGENCY_SHARE_REQUESTED,
                             at=now, entry_id=entry_id,
                             details={"share_id": share.share_id, "recipient": share.recipient})
    return share


def record_check(ctx: RegistryContext, *, actor: User, share_id: str, present_danger: str,
                 necessity: str, proportionality: str, now: datetime) -> EmergencyCheck:
    """One person's check of the three requirements, each with a reason."""
    require_role(actor, Role.STAFF, Role.MANAGER, Role.ADMIN, trained=True)
    reasons = {name: REASON.clean(text, field=name) for name, text in
               (("present danger", present_danger), ("necessity", necessity),
                ("proportionality", proportionality))}
    missing = [name for name, text in reasons.items() if not text]
    if missing:
        raise RuleViolationError(f"give a reason for each requirement; missing: "
                                 f"{', '.join(missing)} (G-SHR-6)")
    with ctx.writing():
        share = _open_share(ctx, share_id)
        if any(c.user_id == actor.user_id for c in ctx.repo.emergency_checks(share_id)):
            raise ConflictError(f"{actor.username} already recorded a check of this request")
        check = EmergencyCheck(share_id, actor.user_id, actor.role, reasons["present danger"],
                               reasons["necessity"], reasons["proportionality"], now)
        with ctx.repo.unit_of_work():
            ctx.repo.add_emergency_check(check)
            ctx.audit.record(actor=actor.username, action=Action.EMERGENCY_SHARE_CHECKED, at=now,
                             entry_id=share.entry_id,
                             details={"share_id": share_id, "role": actor.role.value})
    return check


def _open_share(ctx: RegistryContext, share_id: str) -> EmergencyShare:
    share = ctx.repo.emergency_share(share_id)
    if share is None:
        raise NotFoundError(f"no emergency share request {share_id}")
    if share.state != "open":
        raise ConflictError(f"emergency share {share_id} is {share.state}; open a new request")
    return share


def provide_share(ctx: RegistryContext, engine: FaceEngine, *, actor: User, share_id: str,
                  now: datetime) -> EmergencyPackage:
    """Build the minimum package once enough people, a manager among them, have checked."""
    require_role(actor, Role.MANAGER, trained=True)
    with ctx.writing():
        share = _open_share(ctx, share_id)
        checks = ctx.repo.emergency_checks(share_id)
        if len(checks) < MIN_CHECKERS or not any(c.role is Role.MANAGER for c in checks):
            raise RuleViolationError(
                f"an emergency provision needs the checks of at least {MIN_CHECKERS} people, "
                f"the store manager among them (G-SHR-6); {len(checks)} recorded"
            )
        entry = ctx.repo.entry(share.entry_id)
        if entry is None or entry.state is not EntryState.ACTIVE:
            raise ConflictError(f"entry {share.entry_id} is no longer active")
        images, left_out = [], 0
        for record in ctx.repo.evidence(entry.entry_id):
            image = ctx.evidence.get(record.image_id)
            bgr = image if image.ndim == 3 and image.shape[2] == 3 else np.asarray(cv2.cvtColor(
                image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR), np.uint8)
            faces = engine.detect(np.ascontiguousarray(bgr))
            if not faces:
                left_out += 1  # fail closed: never send a face we could not find to mask
                continue
            ok, png = cv2.imencode(".png", mask_all_faces(bgr, faces))
            if not ok:
                left_out += 1
                continue
            images.append(png.tobytes())
        fields = {
            "share_id": share_id,
            "basis": BASIS,
            "offences": [{"occurred_at": i.occurred_at.isoformat(), "category": i.category.value,
                          "damage": i.damage} for i in ctx.repo.incidents(entry.entry_id)],
            "features": entry.features,
            "images": len(images),
        }
        with ctx.repo.unit_of_work():
            ctx.repo.set_emergency_share_state(share_id, "provided", now)
            ctx.audit.record(
                actor=actor.username, action=Action.EMERGENCY_SHARE_PROVIDED, at=now,
                entry_id=entry.entry_id,
                details={"share_id": share_id, "recipient": share.recipient, "basis": BASIS,
                         "fields": sorted(k for k in fields if k not in ("share_id", "basis")),
                         "images": len(images), "images_left_out": left_out,
                         "checked_by_roles": sorted(c.role.value for c in checks),
                         "checks": [{"role": c.role.value, "present_danger": c.present_danger,
                                     "necessity": c.necessity,
                                     "proportionality": c.proportionality} for c in checks]},
            )
    return EmergencyPackage(share_id, share.recipient, fields, tuple(images), left_out)

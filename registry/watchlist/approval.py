"""Registration: propose with evidence, then a second person approves or rejects (G-REG-1, G-REG-2).

Nobody becomes active on the watchlist through one person's decision. A
proposal needs an objective confirmation of the offence (e.g. a police damage
report) and at least one photo whose face passes the registration quality
gate; bystanders in the photos are masked before anything is stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from kernel.errors import (
    ConflictError,
    NotFoundError,
    QualityRejectedError,
    RuleViolationError,
    SelfApprovalError,
)
from kernel.masking import mask_faces
from models.engine import FaceEngine
from models.face import DetectedFace
from models.quality import QualityPolicy, QualityVerdict
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.domain import Entry, EntryState, EvidenceRecord, IncidentInput, Role, User
from registry.text import DISPLAY_NAME, FEATURES
from registry.watchlist.criteria import criteria_version
from registry.watchlist.entries import EntryView, close_entry, list_entries
from registry.watchlist.incidents import validate_incident
from registry.watchlist.period import expiry_for
from registry.watchlist.reasons import required_reason

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Photo:
    """A registration photo and the name it was given (for messages, never stored).

    The subject is the largest face, or, with a `reference` embedding (the
    entry an alert matched), the face most like it.
    """

    label: str
    image: Image
    reference: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class _Prepared:
    masked: Image
    masked_faces: int
    embedding: npt.NDArray[np.float32]
    quality: str


@dataclass(frozen=True)
class ProposalResult:
    entry_id: str
    templates: int
    refused_photos: tuple[str, ...]  # "label: reason; reason"


def _prepare(engine: FaceEngine, photo: Photo, policy: QualityPolicy) -> _Prepared | str:
    """Mask bystanders and embed the subject, or say why the photo cannot be used."""
    faces = engine.detect(photo.image)
    if not faces:
        return f"{photo.label}: no face found"
    subject, embedding = _subject(engine, photo, faces)
    verdict = engine.assess(photo.image, subject, policy)
    if not verdict.passed:
        return f"{photo.label}: " + "; ".join(verdict.reasons)
    return _Prepared(
        masked=mask_faces(photo.image, faces, keep=subject),
        masked_faces=len(faces) - 1,
        embedding=embedding if embedding is not None else engine.embed_faces(photo.image,
                                                                              [subject])[0],
        quality=json.dumps(verdict.to_dict(), sort_keys=True),
    )


def _subject(engine: FaceEngine, photo: Photo, faces: Sequence[DetectedFace]
             ) -> tuple[DetectedFace, npt.NDArray[np.float32] | None]:
    """The face the photo is about, and its embedding if it was computed to choose it."""
    if photo.reference is None or len(faces) == 1:
        return max(faces, key=lambda f: f.size_px), None
    embeddings = engine.embed_faces(photo.image, faces)
    best = int(np.argmax(embeddings @ photo.reference))
    return faces[best], embeddings[best]


@dataclass(frozen=True)
class PhotoAssessment:
    """The registration gate's verdict on one photo, before anything is stored (G-REG-1)."""

    faces: int
    verdict: QualityVerdict | None  # of the subject (the largest face); None without a face

    @property
    def passed(self) -> bool:
        return self.verdict is not None and self.verdict.passed

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.verdict.reasons if self.verdict is not None else ("no face found",)

    def to_dict(self) -> dict[str, Any]:
        metrics = self.verdict.to_dict() if self.verdict is not None else {}
        metrics.pop("passed", None)
        metrics.pop("reasons", None)
        return {"passed": self.passed, "reasons": list(self.reasons), "faces": self.faces,
                "bystanders_masked": max(self.faces - 1, 0), "metrics": metrics}


def assess_photo(engine: FaceEngine, policy: QualityPolicy, image: Image) -> PhotoAssessment:
    """Would this photo pass the registration gate? Nothing is stored or embedded."""
    faces = engine.detect(image)
    if not faces:
        return PhotoAssessment(0, None)
    subject = max(faces, key=lambda f: f.size_px)
    return PhotoAssessment(len(faces), engine.assess(image, subject, policy))


def propose(ctx: RegistryContext, engine: FaceEngine, policy: QualityPolicy, *, actor: User,
            photos: Sequence[Photo], incident: IncidentInput, features: str,
            display_name: str = "", now: datetime) -> ProposalResult:
    """Create a proposed entry; it matches nobody until a different manager approves it."""
    require_role(actor, Role.STAFF, Role.MANAGER, trained=True)
    incident = validate_incident(incident, now)
    features = FEATURES.clean(features, field="features")
    display_name = DISPLAY_NAME.clean(display_name, field="display_name")
    if not photos:
        raise RuleViolationError("registration needs at least one photo as evidence")
    if engine.info.pack != ctx.index_spec.pack:
        raise RuleViolationError(
            f"the engine runs pack {engine.info.pack} "
            f"but the registry indexes {ctx.index_spec.pack}"
        )
    outcomes = [_prepare(engine, photo, policy) for photo in photos]
    usable = [o for o in outcomes if isinstance(o, _Prepared)]
    refused = tuple(o for o in outcomes if isinstance(o, str))
    if not usable:
        raise QualityRejectedError(
            "no photo passed the registration quality gate (G-REG-1): " + " | ".join(refused)
        )
    entry_id = uuid.uuid4().hex
    with ctx.writing():
        stored = [ctx.evidence.put(p.masked) for p in usable]
        try:
            _insert_proposal(ctx, actor, entry_id, usable, stored, incident, features,
                             display_name, now)
        except BaseException:
            for image in stored:
                ctx.evidence.delete(image.image_id)
            raise
    return ProposalResult(entry_id, len(usable), refused)


def _insert_proposal(ctx: RegistryContext, actor: User, entry_id: str,
                     usable: Sequence[_Prepared], stored: Sequence, incident: IncidentInput,  # type: ignore[type-arg]
                     features: str, display_name: str, now: datetime) -> None:
    entry = Entry(
        entry_id=entry_id, state=EntryState.PROPOSED, store_id=ctx.policy.store_id,
        features=features.strip(), display_name=display_name.strip(), proposed_by=actor.user_id,
        proposed_at=now, decided_by=None, decided_at=None, decision_reason="", expires_at=None,
        revision=1, closed_at=None, closed_reason="",
    )
    criteria = criteria_version(ctx.policy.criteria, incident.category)  # G-REG-2
    with ctx.repo.unit_of_work():
        ctx.repo.add_entry(entry)
        ctx.repo.set_criteria_version(entry_id, criteria.sha256, incident.category.value,
                                      criteria.text, now)
        ctx.repo.add_incident(entry_id, ctx.policy.store_id, incident, actor.user_id, now)
        for prepared, image in zip(usable, stored, strict=True):
            ctx.repo.add_evidence(EvidenceRecord(image.image_id, entry_id, image.sha256,
                                                 prepared.masked_faces, now))
            ctx.repo.add_template(entry_id, ctx.index_spec.pack,
                                  prepared.embedding.astype(np.float32).tobytes(),
                                  ctx.index_spec.dim, image.image_id, prepared.quality)
        ctx.audit.record(
            actor=actor.username, action=Action.PROPOSE, at=now, entry_id=entry_id,
            details={
                "category": incident.category.value,
                "confirmation": incident.confirmation_kind.value,
                "criteria_sha256": criteria.sha256,
                "templates": len(usable),
                "masked_bystanders": sum(p.masked_faces for p in usable),
                "evidence_sha256": [i.sha256 for i in stored],
            },
        )


def _pending(ctx: RegistryContext, entry_id: str, decided_by: User) -> Entry:
    """The proposal awaiting a decision, which `decided_by` may take (G-REG-2).

    Approving and rejecting alike are the second person's decision: a proposer
    who could reject their own proposal would decide it alone.
    """
    entry = ctx.repo.entry(entry_id)
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    if entry.state is not EntryState.PROPOSED:
        raise ConflictError(f"entry {entry_id} is {entry.state.value}, not awaiting a decision")
    if entry.proposed_by == decided_by.user_id:
        raise SelfApprovalError(
            "a proposal must be decided by a responsible person other than its proposer "
            "(G-REG-2: two-person approval)"
        )
    return entry


def approve(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str,
            now: datetime) -> Entry:
    """Activate a proposal: a trained manager who is not the proposer (G-REG-2)."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason)
    with ctx.writing():
        entry = _pending(ctx, entry_id, actor)
        expires_at = expiry_for(ctx.repo.incidents(entry_id), ctx.policy.retention_years)
        if expires_at <= now:
            raise RuleViolationError(
                f"the latest incident is older than the {ctx.policy.retention_years}-year "
                "retention period; it cannot be registered (G-REG-4)"
            )
        approved = replace(entry, state=EntryState.ACTIVE, decided_by=actor.user_id,
                           decided_at=now, decision_reason=reason, expires_at=expires_at)
        with ctx.repo.unit_of_work():
            ctx.repo.update_entry(approved)
            version = ctx.repo.bump_watchlist_version()
            ctx.audit.record(actor=actor.username, action=Action.APPROVE, at=now,
                             entry_id=entry_id,
                             details={"reason": reason, "watchlist_version": version,
                                      "expires_at": expires_at.date().isoformat()})
        ctx.publish_index_if_stale()
    return approved


def reject(ctx: RegistryContext, *, actor: User, entry_id: str, reason: str,
           now: datetime) -> None:
    """Turn a proposal down; its photos and templates are erased at once."""
    require_role(actor, Role.MANAGER, trained=True)
    reason = required_reason(reason)
    with ctx.writing():
        entry = _pending(ctx, entry_id, actor)
        close_entry(ctx, replace(entry, decided_by=actor.user_id, decided_at=now,
                                 decision_reason=reason),
                    state=EntryState.REJECTED, action=Action.REJECT, actor=actor.username,
                    reason=reason, now=now)


def propose_from_alert(ctx: RegistryContext, engine: FaceEngine, policy: QualityPolicy, *,
                       actor: User, alert_id: str, incident: IncidentInput, features: str,
                       display_name: str = "", now: datetime) -> ProposalResult:
    """Propose from an alert's snapshot: the subject is the face that matched the alert's entry.

    The snapshot's other faces were masked by the box already; the new entry
    is a separate proposal that a different manager must approve like any other.
    """
    require_role(actor, Role.STAFF, Role.MANAGER, trained=True)
    alert = ctx.repo.alert(alert_id)
    if alert is None:
        raise NotFoundError(f"no alert {alert_id}")
    if alert.snapshot_image_id is None:
        raise ConflictError(
            f"alert {alert_id} has no snapshot any more (dismissed, or the entry was erased)"
        )
    image = _bgr(ctx.evidence.get(alert.snapshot_image_id))
    vectors = [np.frombuffer(t.vector, dtype=np.float32)
               for t in ctx.repo.templates(alert.entry_id)]
    reference = None
    if vectors:
        mean = np.mean(vectors, axis=0)
        reference = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    photo = Photo(f"snapshot of alert {alert_id[:8]}", image, reference)
    return propose(ctx, engine, policy, actor=actor, photos=[photo], incident=incident,
                   features=features, display_name=display_name, now=now)


def _bgr(image: Image) -> Image:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # type: ignore[return-value]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)  # type: ignore[return-value]
    return image


@dataclass(frozen=True)
class PendingProposal:
    """A proposal awaiting a decision, and whether the person looking may decide it."""

    view: EntryView
    approvable_by_me: bool
    not_approvable_because: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.view.to_dict(), "approvable_by_me": self.approvable_by_me,
                "not_approvable_because": self.not_approvable_because}


def pending_proposals(ctx: RegistryContext, *, actor: User) -> list[PendingProposal]:
    """Proposals awaiting approval, oldest first; a proposer's own are not approvable by them."""
    require_role(actor, Role.STAFF, Role.MANAGER)
    pending = []
    for view in list_entries(ctx, actor=actor, states=[EntryState.PROPOSED]):
        if actor.role is not Role.MANAGER:
            why = "only a manager approves registrations"
        elif not actor.trained:
            why = "approving needs recorded privacy training (G-SEC-1)"
        elif view.entry.proposed_by == actor.user_id:
            why = "you proposed it: a different manager must approve it (G-REG-2)"
        else:
            why = ""
        pending.append(PendingProposal(view, approvable_by_me=not why,
                                       not_approvable_because=why))
    return pending

"""Registration: evidence, quality gate, two-person approval, erasure (G-REG-1..3, G-SEC-1).

Everything runs on a real SQLCipher registry with real photos through the real
detector and recognizer; matching goes through the encrypted published index,
as the edge box would read it.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import sqlcipher3

from kernel.errors import PermissionDeniedError, QualityRejectedError, RuleViolationError
from kernel.masking import iou
from registry.accounts import users
from registry.domain import EntryState, OffenceCategory, Role
from registry.watchlist import approval
from registry.watchlist import entries as watchlist
from tests.registries import (
    BIDEN,
    GROUP,
    NO_FACE,
    OBAMA,
    OBAMA2,
    PASSWORD,
    T0,
    Registry,
    incident,
)


def _nothing_stored(reg: Registry) -> None:
    assert reg.ctx.repo.entries() == []
    assert reg.evidence_files() == set()
    assert reg.ctx.repo.all_evidence_ids() == set()


# --- two-person approval, roles, training (G-REG-2, G-SEC-1) -----------------------------


def test_self_approval_is_refused(registry: Registry) -> None:
    """G-REG-2: the responsible person who confirms must not be the proposer."""
    proposal = registry.propose(OBAMA, proposer="mgr1")
    with pytest.raises(RuleViolationError, match="G-REG-2"):
        approval.approve(registry.ctx, actor=registry.user("mgr1"), entry_id=proposal.entry_id,
                         reason="looks right", now=T0)
    entry = registry.ctx.repo.entry(proposal.entry_id)
    assert entry is not None and entry.state is EntryState.PROPOSED
    assert not registry.ctx.paths.index.exists() or registry.matches(OBAMA2) == {}
    # A different manager may approve it.
    approval.approve(registry.ctx, actor=registry.user("mgr2"), entry_id=proposal.entry_id,
                     reason="police report checked", now=T0)
    assert proposal.entry_id in registry.matches(OBAMA2)


def test_staff_cannot_approve(registry: Registry) -> None:
    """G-SEC-1/G-REG-2: only a manager (the responsible person) approves."""
    proposal = registry.propose(OBAMA, proposer="mgr1")
    for name in ("staff", "admin", "auditor"):
        with pytest.raises(PermissionDeniedError, match="manager"):
            approval.approve(registry.ctx, actor=registry.user(name),
                             entry_id=proposal.entry_id, reason="ok", now=T0)
    entry = registry.ctx.repo.entry(proposal.entry_id)
    assert entry is not None and entry.state is EntryState.PROPOSED


def test_untrained_user_can_neither_propose_nor_approve(registry: Registry) -> None:
    """G-SEC-1: the system records who was trained; untrained users are refused."""
    with pytest.raises(PermissionDeniedError, match="training"):
        registry.propose(OBAMA, proposer="untrained")
    _nothing_stored(registry)

    users.add_user(registry.ctx.repo, registry.ctx.audit, actor="admin",
                   username="mgr-untrained", role=Role.MANAGER, password=PASSWORD, now=T0)
    proposal = registry.propose(OBAMA)
    with pytest.raises(PermissionDeniedError, match="training"):
        approval.approve(registry.ctx, actor=registry.user("mgr-untrained"),
                         entry_id=proposal.entry_id, reason="ok", now=T0)
    with pytest.raises(PermissionDeniedError):
        approval.approve(registry.ctx, actor=registry.user("untrained"),
                         entry_id=proposal.entry_id, reason="ok", now=T0)
    entry = registry.ctx.repo.entry(proposal.entry_id)
    assert entry is not None and entry.state is EntryState.PROPOSED


def test_proposal_without_confirmation_reference_is_refused(registry: Registry) -> None:
    """G-REG-2: only objectively confirmed offences (e.g. a police damage report) are registered."""
    with pytest.raises(RuleViolationError, match=r"objective confirmation.*G-REG-2.*被害届"):
        approval.propose(
            registry.ctx, registry.engine, registry.settings.quality.registration,
            actor=registry.user("staff"),
            photos=[approval.Photo("obama", registry.image(OBAMA))],
            incident=incident(ref="   "), features="", now=T0,
        )
    _nothing_stored(registry)


# --- the quality gate (G-REG-1) --------------------------------------------------------


def test_offence_category_is_recorded_on_every_entry(registry: Registry) -> None:
    """G-REG-5: only the listed categories; the category is on the entry and in the trail."""
    result = approval.propose(
        registry.ctx, registry.engine, registry.settings.quality.registration,
        actor=registry.user("staff"), photos=[approval.Photo("obama", registry.image(OBAMA))],
        incident=incident(category=OffenceCategory.VOYEURISM), features="", now=T0,
    )
    shown = watchlist.view(registry.ctx, actor=registry.user("staff"), entry_id=result.entry_id)
    assert [i["category"] for i in shown.to_dict()["incidents"]] == ["voyeurism"]
    propose_record = [r for r in registry.ctx.repo.audit_rows() if r.action == "propose"][-1]
    assert json.loads(propose_record.details)["category"] == "voyeurism"
    assert {c.value for c in OffenceCategory} == {
        "theft", "voyeurism", "property_damage", "assault", "public_indecency", "nuisance"}
    with pytest.raises(ValueError):
        OffenceCategory("robbery")
    with pytest.raises(sqlcipher3.IntegrityError):  # the database refuses it too
        registry.ctx.repo.connection.execute(
            "INSERT INTO incidents (entry_id, store_id, category, occurred_at, "
            "confirmation_kind, confirmation_ref, recorded_by, recorded_at) "
            "VALUES (?, 's', 'robbery', 't', 'police_report', 'R-1', 1, 't')",
            (result.entry_id,))


def _tiny(img: np.ndarray, face_px: float, target: float = 30.0) -> np.ndarray:
    scale = target / face_px
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def test_only_a_small_face_is_refused_with_the_reason(registry: Registry) -> None:
    """G-REG-1: a ~30 px face is detected but too small to be a safe template."""
    original = registry.image(OBAMA)
    face = max(registry.engine.detect(original), key=lambda f: f.size_px)
    small = _tiny(original, face.size_px)
    detected = registry.engine.detect(small)
    assert detected and max(f.size_px for f in detected) < 40  # the face is really there
    with pytest.raises(QualityRejectedError, match=r"G-REG-1.*small-obama: face too small"):
        approval.propose(registry.ctx, registry.engine, registry.settings.quality.registration,
                         actor=registry.user("staff"),
                         photos=[approval.Photo("small-obama", small)],
                         incident=incident(), features="", now=T0)
    _nothing_stored(registry)


def test_only_a_blurred_face_is_refused_with_the_reason(registry: Registry) -> None:
    """G-REG-1: a blurred template misidentifies others."""
    blurred = cv2.GaussianBlur(registry.image(OBAMA), (41, 41), 0)
    assert registry.engine.detect(blurred)  # found, but not sharp enough
    with pytest.raises(QualityRejectedError, match=r"blurred-obama: too blurred"):
        approval.propose(registry.ctx, registry.engine, registry.settings.quality.registration,
                         actor=registry.user("staff"),
                         photos=[approval.Photo("blurred-obama", blurred)],
                         incident=incident(), features="", now=T0)
    _nothing_stored(registry)


def test_a_bad_photo_beside_a_good_one_is_reported_not_used(registry: Registry) -> None:
    """G-REG-1: only the photos that pass become templates; the others are named."""
    blurred = cv2.GaussianBlur(registry.image(OBAMA), (41, 41), 0)
    result = approval.propose(
        registry.ctx, registry.engine, registry.settings.quality.registration,
        actor=registry.user("staff"),
        photos=[approval.Photo("good", registry.image(OBAMA)),
                approval.Photo("blurred", blurred)],
        incident=incident(), features="", now=T0,
    )
    assert result.templates == 1
    [refused] = result.refused_photos
    assert refused.startswith("blurred: too blurred")
    assert len(registry.ctx.repo.templates(result.entry_id)) == 1
    assert len(registry.evidence_files()) == 1


def test_a_picture_without_a_face_is_refused(registry: Registry) -> None:
    """G-REG-1: no face, no registration; nothing is stored."""
    with pytest.raises(QualityRejectedError, match="free-mountain-vector-01: no face found"):
        registry.propose(NO_FACE)
    _nothing_stored(registry)


# --- matching through the encrypted index, and real erasure (G-REG-3, G-REG-4) ----------


def test_approved_subject_is_found_and_erasure_removes_it(registry: Registry) -> None:
    """G-REG-2 activation, then G-REG-3/G-REG-4 erasure reaches the published index."""
    proposal = registry.propose(OBAMA)
    assert not registry.ctx.paths.index.exists() or registry.matches(OBAMA2) == {}  # inactive
    approval.approve(registry.ctx, actor=registry.user("mgr1"), entry_id=proposal.entry_id,
                     reason="police damage report checked", now=T0)
    entry_id = proposal.entry_id

    before = registry.index()
    found = registry.matches(OBAMA2)
    assert list(found) == [entry_id]
    assert found[entry_id] > registry.engine.threshold
    assert registry.matches(BIDEN) == {}
    biden_hits = registry.hits(BIDEN)
    assert biden_hits and max(h.score for h in biden_hits) < registry.engine.threshold

    watchlist.erase(registry.ctx, actor=registry.user("mgr2"), entry_id=entry_id,
                    reason="stop-use request upheld", now=T0)
    after = registry.index()
    assert after.version > before.version
    assert all(h.entry_id != entry_id for h in registry.hits(OBAMA2))
    assert registry.matches(OBAMA2) == {}
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ERASED
    assert registry.ctx.repo.templates(entry_id) == []
    assert registry.ctx.repo.evidence(entry_id) == []
    assert registry.ctx.repo.incidents(entry_id) == []
    assert registry.evidence_files() == set()


def test_withdrawn_wrong_entry_leaves_the_index(registry: Registry) -> None:
    """G-REG-3: a wrong entry is withdrawn; the other subject stays matchable."""
    wrong = registry.register(OBAMA)
    other = registry.register(BIDEN)
    watchlist.withdraw(registry.ctx, actor=registry.user("mgr2"), entry_id=wrong,
                       reason="misidentified: not the offender", now=T0)
    assert registry.matches(OBAMA2) == {}
    assert other in registry.matches(BIDEN)
    entry = registry.ctx.repo.entry(wrong)
    assert entry is not None and entry.state is EntryState.WITHDRAWN


def test_reject_erases_templates_and_evidence(registry: Registry) -> None:
    """G-REG-2: a turned-down proposal keeps no face data, only a tombstone."""
    proposal = registry.propose(OBAMA, display_name="someone", features="grey coat")
    images = [r.image_id for r in registry.ctx.repo.evidence(proposal.entry_id)]
    assert registry.ctx.repo.templates(proposal.entry_id)
    assert images and registry.evidence_files() == {f"{i}.bin" for i in images}

    with pytest.raises(PermissionDeniedError):
        approval.reject(registry.ctx, actor=registry.user("staff"), entry_id=proposal.entry_id,
                        reason="no", now=T0)
    approval.reject(registry.ctx, actor=registry.user("mgr1"), entry_id=proposal.entry_id,
                    reason="the report does not show this person", now=T0)

    entry = registry.ctx.repo.entry(proposal.entry_id)
    assert entry is not None and entry.state is EntryState.REJECTED
    assert entry.display_name == "" and entry.features == ""
    assert registry.ctx.repo.templates(proposal.entry_id) == []
    assert registry.ctx.repo.evidence(proposal.entry_id) == []
    assert registry.evidence_files() == set()
    assert registry.ctx.repo.all_evidence_ids() == set()
    with pytest.raises(RuleViolationError, match="rejected"):
        approval.approve(registry.ctx, actor=registry.user("mgr2"), entry_id=proposal.entry_id,
                         reason="changed my mind", now=T0)
    actions = [r.action for r in registry.ctx.repo.audit_rows()]
    assert actions[-2:] == ["propose", "reject"]


def test_bystanders_in_the_registration_photo_are_masked(registry: Registry) -> None:
    """Only the subject's face survives in stored evidence (REQUIREMENTS "what follows" 1)."""
    group = registry.image(GROUP)
    faces = registry.engine.detect(group)
    assert len(faces) == 6
    subject = max(faces, key=lambda f: f.size_px)

    entry_id = registry.register(GROUP)
    [record] = registry.ctx.repo.evidence(entry_id)
    assert record.masked_faces == 5
    stored = registry.ctx.evidence.get(record.image_id)
    assert stored.shape == group.shape
    remaining = registry.engine.detect(stored)
    assert len(remaining) == 1
    assert iou(remaining[0].box, subject.box) > 0.8

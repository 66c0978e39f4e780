"""Joint use between three real stores (G-SHR-1..7): only permitted fields, erasure everywhere.

Three registries, each initialised on its own (separate SQLCipher files,
separate master keys, separate joint-use keys): A and B in region "kanto",
C in "kansai", all members of one adopted scheme. Obama is registered at A
from a real photo by two people (proposer and a different approving
manager); bundles travel as files; B's published index is searched with the
real engine's embedding of a different photo of him (the edge loop that
reads that index is tested in tests/edge).

The stores (tests/registry/world.py) are built once per session and copied byte
for byte into each test's own folder, so every test starts from the same fresh state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kernel.errors import ConflictError, RuleViolationError
from kernel.watchlist_index import _decrypt_file
from models.engine import FaceEngine
from registry.audit.trail import Action
from registry.backup import key_rotation
from registry.clock import to_text
from registry.context import RegistryContext
from registry.domain import EntryState
from registry.joint_use import bundle as wire
from registry.joint_use.emergency import provide_share, record_check, request_share
from registry.joint_use.errors import (
    ForbiddenFieldError,
    NotAMemberError,
    NotForUsError,
    ProvisionRefusedError,
    ReceiptError,
    RegionRuleError,
    ReplayError,
    SchemeNotAdoptedError,
    SignatureError,
)
from registry.joint_use.export_schema import SharedEntry, shared_entry, to_wire
from registry.joint_use.keys import load_store_keys, public_b64
from registry.joint_use.scheme import adopt_scheme, scheme_in_force
from registry.joint_use.sync import (
    apply_receipt,
    erasure_confirmations,
    export_bundle,
    import_bundle,
    last_receipt,
    receiver,
    status,
)
from registry.watchlist import entries as watchlist
from registry.watchlist.entries import ImportedEntryError
from registry.watchlist.objections import decide_objection, record_objection
from tests import REPO
from tests.registries import T0
from tests.registry.world import (
    A_USERS,
    ADMINS,
    DAY,
    FEATURES,
    NAME,
    NOTE,
    PASSWORD,
    REF,
    Store,
    World,
    member_of,
    open_store,
    write_scheme,
)


def _best(store: Store, probe: np.ndarray) -> float:
    index = store.index()
    if len(index) == 0:
        return -1.0
    return max(h.score for h in index.search(probe, k=len(index))[0])


def _send(world: World, sender: str, recipient: str, now, out: Path | None = None):  # type: ignore[no-untyped-def]
    """Export at `sender`, carry the bundle as a file, import it at `recipient`."""
    blob = export_bundle(world[sender].ctx, world[sender].scheme(), recipient, now)
    path = out or world.root / f"{sender}-to-{recipient}.bundle"
    path.write_bytes(blob)
    result = import_bundle(world[recipient].ctx, world[recipient].scheme(), path.read_bytes(), now)
    return blob, result


def _sync(world: World, sender: str, recipient: str, now):  # type: ignore[no-untyped-def]
    blob, result = _send(world, sender, recipient, now)
    apply_receipt(world[sender].ctx, world[sender].scheme(), result.receipt_blob, now)
    return blob, result


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _imported_local_id(store: Store) -> str:
    (local_id,) = store.ctx.repo.imported_entry_ids()
    return local_id


# --- the happy path ---------------------------------------------------------------------


def test_entry_reaches_same_region_member_and_matches_a_probe_there(
        world: World, probe: np.ndarray, engines: dict[str, FaceEngine]) -> None:
    """An entry approved by two people at A is active at B within one sync; B finds him."""
    a, b = world["store-a"], world["store-b"]
    threshold = engines["yunet-sface"].threshold
    assert _best(b, probe) < threshold  # B knows nobody yet
    assert _best(a, probe) >= threshold

    _, result = _sync(world, "store-a", "store-b", T0 + DAY)

    assert result.sequence == 1 and result.receipt.entries_applied == (world.obama_at_a,)
    local_id = _imported_local_id(b)
    assert local_id != world.obama_at_a  # a member never chooses ids at the receiver
    entry = b.ctx.repo.entry(local_id)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert entry.store_id == "store-a" and entry.display_name == "" and entry.features == FEATURES
    imported = b.ctx.repo.imported_entry(local_id)
    assert imported is not None and imported.origin_entry_id == world.obama_at_a
    origin = a.ctx.repo.entry(world.obama_at_a)
    assert origin is not None and entry.expires_at == origin.expires_at  # never later than A
    hits = b.index().search(probe, k=1)[0]
    assert hits[0].entry_id == local_id and hits[0].score >= threshold
    # B's evidence is A's masked image, byte for byte (same SHA-256), encrypted under B's key
    assert ([r.sha256 for r in b.ctx.repo.evidence(local_id)]
            == [r.sha256 for r in a.ctx.repo.evidence(world.obama_at_a)])
    # not editable at B: the origin decides
    with pytest.raises(ImportedEntryError, match="forward"):
        watchlist.erase(b.ctx, actor=b.user(ADMINS["store-b"]), entry_id=local_id,
                        reason="request", now=T0 + DAY)
    # provision records at both ends (G-SHR-7), and A's status shows the acknowledgement
    provided = [json.loads(r.details) for r in a.ctx.repo.audit_rows()
                if r.action == Action.JOINT_USE_PROVIDED.value]
    assert provided[-1]["to"] == "store-b" and provided[-1]["entries"] == [world.obama_at_a]
    assert "joint use" in provided[-1]["basis"]
    report = a.ctx.audit.report(T0, T0 + 2 * DAY)
    assert report["joint_use_provisions"]["store-b"]["entries_provided"] == 1
    row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
    assert (row.last_sent, row.last_acked, row.pending_erasures) == (1, 1, ())
    assert b.ctx.audit.verify().ok and a.ctx.audit.verify().ok
    # only the origin shares its entries: B's bundle to A carries none of A's
    back = export_bundle(b.ctx, b.scheme(), "store-a", T0 + 2 * DAY)
    keys_a = load_store_keys(a.ctx.paths.joint_use_keys, a.ctx.master_key)
    payload = json.loads(wire.open_envelope(back, kind="bundle", our_id="store-a",
                                            our_key=keys_a.encryption,
                                            signer=receiver(a.ctx, a.scheme()).signer).payload)
    assert payload["entries"] == [] and payload["corrections"] == []


def test_other_region_never_receives_the_entry(world: World) -> None:
    """G-SHR-3: C (kansai) gets nothing from A (kanto), whichever side is asked."""
    a, c = world["store-a"], world["store-c"]
    with pytest.raises(RegionRuleError, match="same_region"):
        export_bundle(a.ctx, a.scheme(), "store-c", T0 + DAY)
    assert not [r for r in a.ctx.repo.audit_rows() if r.action == Action.JOINT_USE_PROVIDED.value]
    # A store that skipped its own check (or a forged bundle) is still refused at C
    before = _digests(c.data_dir)
    blob = _forge(world, sender="store-a", recipient="store-c", sequence=1)
    with pytest.raises(RegionRuleError):
        import_bundle(c.ctx, c.scheme(), blob, T0 + DAY)
    assert _digests(c.data_dir) == before
    assert not c.ctx.repo.imported_entry_ids()


def _forge(world: World, *, sender: str, recipient: str, sequence: int,
           signing_key: Ed25519PrivateKey | None = None, with_entry: bool = True) -> bytes:
    """A bundle sealed directly, bypassing the sender's export checks."""
    a = world["store-a"]
    entry = a.ctx.repo.entry(world.obama_at_a)
    assert entry is not None
    shared = shared_entry(
        origin_member=sender, entry=entry, incidents=a.ctx.repo.incidents(entry.entry_id),
        templates=a.ctx.repo.templates(entry.entry_id),
        images={r.image_id: a.ctx.evidence.get_bytes(r.image_id)
                for r in a.ctx.repo.evidence(entry.entry_id)})
    payload = wire.Bundle(sender=sender, recipient=recipient, sequence=sequence,
                          created_at=T0 + DAY, scheme_sha256="0" * 64,
                          entries=(shared,) if with_entry else ())
    if signing_key is None:
        signing_key = load_store_keys(a.ctx.paths.joint_use_keys, a.ctx.master_key).signing
    recipient_key = world[recipient].scheme().member(recipient).encryption_public()
    return wire.seal("bundle", payload, sender=sender, recipient=recipient, sequence=sequence,
                     signing_key=signing_key, recipient_key=recipient_key)


# --- nothing but the allow-list leaves A ----------------------------------------------------


def test_no_name_staff_identity_or_reference_reaches_b(world: World, tmp_path: Path) -> None:
    """G-SHR-2: name, staff names, police reference, staff notes never leave A, in any byte."""
    a, b = world["store-a"], world["store-b"]
    entry = a.ctx.repo.entry(world.obama_at_a)
    assert entry is not None and entry.display_name == NAME  # A really holds the name
    blob, result = _send(world, "store-a", "store-b", T0 + DAY, out=tmp_path / "out.bundle")
    keys_b = load_store_keys(b.ctx.paths.joint_use_keys, b.ctx.master_key)
    plaintext = wire.open_envelope(blob, kind="bundle", our_id="store-b",
                                   our_key=keys_b.encryption,
                                   signer=receiver(b.ctx, b.scheme()).signer).payload
    assert b'"features"' in plaintext and FEATURES.encode() in plaintext  # scanning real content

    index_key = b.ctx.index_key()
    _, index_plain = _decrypt_file(b.ctx.paths.index, index_key)
    dump = _dump(b.ctx)
    audit = "\n".join(f"{r.actor} {r.details}" for r in b.ctx.repo.audit_rows()).encode("utf-8")
    evidence = b"".join(b.ctx.evidence.get_bytes(i) for i in b.ctx.evidence.ids())
    raw_files = b"".join(p.read_bytes() for p in b.data_dir.rglob("*") if p.is_file())
    forbidden = [NAME, REF, NOTE, "police damage report checked", *A_USERS]
    for label, haystack in (("bundle file", blob), ("bundle plaintext", plaintext),
                            ("B's database (decrypted dump)", dump), ("B's audit trail", audit),
                            ("B's index (decrypted)", index_plain), ("B's evidence", evidence),
                            ("B's files", raw_files),
                            ("receipt", result.receipt_blob)):
        for needle in forbidden:
            for encoding in ("utf-8", "utf-16-le"):
                assert needle.encode(encoding) not in haystack, f"{needle!r} found in {label}"
    assert NAME.encode() in _dump(a.ctx) and REF.encode() in _dump(a.ctx)  # the scan works


def _dump(ctx: RegistryContext) -> bytes:
    """Every row of every table of both databases, decrypted, as text and raw bytes."""
    out = []
    db = ctx.repo.connection
    for schema in ("main", "audit"):
        tables = [r[0] for r in db.execute(
            f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {schema}.{table}"):
                for value in row:
                    out.append(value if isinstance(value, bytes) else str(value).encode("utf-8"))
    return b"\n".join(out)


def test_allow_list_refuses_anything_else() -> None:
    """Unknown fields make the schema refuse to build or serialise (G-SHR-2)."""
    vector = np.zeros(128, dtype=np.float32)
    vector[0] = 1.0
    fields = dict(origin_member="store-a", origin_entry_id="a" * 32, revision=1,
                  offences=[{"occurred_at": to_text(T0), "category": "theft", "damage": ""}],
                  features="", templates=[{"pack": "yunet-sface", "dim": 128,
                                           "vector": vector.tobytes()}],
                  expires_at=to_text(T0 + 1000 * DAY))
    assert SharedEntry.build(**fields).origin_entry_id == "a" * 32
    with pytest.raises(ForbiddenFieldError, match="display_name"):
        SharedEntry.build(**fields, display_name=NAME)
    with pytest.raises(ForbiddenFieldError, match="confirmation_ref"):
        SharedEntry.build(**{**fields, "offences": [{"occurred_at": to_text(T0),
                                                     "category": "theft",
                                                     "confirmation_ref": REF}]})
    smuggled = SharedEntry.build(**fields)
    object.__setattr__(smuggled, "display_name", NAME)  # past every validator
    with pytest.raises(ForbiddenFieldError, match="display_name"):
        to_wire(smuggled)
    with pytest.raises(ForbiddenFieldError):
        wire.canonical_json(wire.Bundle(sender="store-a", recipient="store-b", sequence=1,
                                        created_at=T0, scheme_sha256="0" * 64,
                                        entries=(smuggled,)))


def test_a_name_typed_into_a_shared_field_is_refused(world: World) -> None:
    a = world["store-a"]
    watchlist.correct(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                      reason="added detail", now=T0 + DAY, features=f"{FEATURES} 名前は{NAME}")
    with pytest.raises(ForbiddenFieldError, match="name appears"):
        export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY)


# --- erasure and corrections reach every member, verifiably ---------------------------


def test_erasure_at_origin_leaves_b_within_one_sync_and_b_confirms(
        world: World, probe: np.ndarray, engines: dict[str, FaceEngine]) -> None:
    a, b = world["store-a"], world["store-b"]
    threshold = engines["yunet-sface"].threshold
    _sync(world, "store-a", "store-b", T0 + DAY)
    local_id = _imported_local_id(b)
    images_at_b = {r.image_id for r in b.ctx.repo.evidence(local_id)}
    assert images_at_b and images_at_b <= b.ctx.evidence.ids()

    watchlist.erase(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                    reason="erasure request (G-DSR-2)", now=T0 + 2 * DAY)
    row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
    assert row.pending_erasures == (world.obama_at_a,)
    assert erasure_confirmations(a.ctx, world.obama_at_a) == []

    _, result = _send(world, "store-a", "store-b", T0 + 3 * DAY)
    assert result.sequence == 2 and result.receipt.tombstones_applied == (world.obama_at_a,)
    entry = b.ctx.repo.entry(local_id)
    assert entry is not None and entry.state is EntryState.ERASED and entry.features == ""
    assert not b.ctx.repo.templates(local_id) and not b.ctx.repo.evidence(local_id)
    assert not images_at_b & b.ctx.evidence.ids()  # the files are gone
    assert _best(b, probe) < threshold  # and B's index no longer finds him

    applied = apply_receipt(a.ctx, a.scheme(), result.receipt_blob, T0 + 4 * DAY)
    assert applied.tombstones_confirmed == (world.obama_at_a,)
    (confirmation,) = erasure_confirmations(a.ctx, world.obama_at_a)
    assert (confirmation.member_id, confirmation.sequence) == ("store-b", 2)
    row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
    assert row.pending_erasures == () and row.last_acked == 2
    # the erasure at B is an ordinary erase record, so a restore at B re-applies it (G-REG-4)
    assert (local_id, Action.ERASE.value) in {(r.entry_id, r.action)
                                              for r in b.ctx.repo.audit_rows()}


def test_an_erasure_exported_before_the_receipt_is_back_still_reaches_b(
        world: World, probe: np.ndarray, engines: dict[str, FaceEngine]) -> None:
    """Every export takes a new sequence number, so nothing B applied can shadow a later one.

    A sends #1, B applies it; A erases the entry and exports again before B's
    receipt is back. That bundle is #2 (not a second "#1" that B would refuse
    as a replay), B applies it and confirms the erasure (G-SHR-4).
    """
    a, b = world["store-a"], world["store-b"]
    first = export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY)
    first_receipt = import_bundle(b.ctx, b.scheme(), first, T0 + DAY).receipt_blob
    local_id = _imported_local_id(b)
    watchlist.erase(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                    reason="erasure request (G-DSR-2)", now=T0 + 2 * DAY)
    second = export_bundle(a.ctx, a.scheme(), "store-b", T0 + 2 * DAY)  # no receipt yet
    result = import_bundle(b.ctx, b.scheme(), second, T0 + 2 * DAY)
    assert result.sequence == 2 and result.receipt.tombstones_applied == (world.obama_at_a,)
    entry = b.ctx.repo.entry(local_id)
    assert entry is not None and entry.state is EntryState.ERASED
    assert _best(b, probe) < engines["yunet-sface"].threshold
    applied = apply_receipt(a.ctx, a.scheme(), result.receipt_blob, T0 + 3 * DAY)
    assert applied.tombstones_confirmed == (world.obama_at_a,)
    # #1's receipt arriving late changes nothing; so does #1 itself arriving again at B,
    # and that refusal says what to do if A still waits for a receipt.
    with pytest.raises(ReceiptError, match="already applied"):
        apply_receipt(a.ctx, a.scheme(), first_receipt, T0 + 3 * DAY)
    with pytest.raises(ReplayError, match="resend-receipt --from store-a") as caught:
        import_bundle(b.ctx, b.scheme(), first, T0 + 3 * DAY)
    assert "\n" not in str(caught.value)
    row = next(s for s in status(a.ctx, a.scheme()) if s.member_id == "store-b")
    assert row.pending_erasures == () and (row.last_sent, row.last_acked) == (2, 2)


def test_a_lost_bundle_is_covered_by_the_next_one(world: World) -> None:
    """Each bundle carries everything B has not acknowledged: if #1 never arrives, #2 does all."""
    a, b = world["store-a"], world["store-b"]
    export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY)  # lost on the way
    second = export_bundle(a.ctx, a.scheme(), "store-b", T0 + 2 * DAY)
    result = import_bundle(b.ctx, b.scheme(), second, T0 + 2 * DAY)
    assert result.sequence == 2 and result.receipt.entries_applied == (world.obama_at_a,)
    apply_receipt(a.ctx, a.scheme(), result.receipt_blob, T0 + 2 * DAY)
    third = export_bundle(a.ctx, a.scheme(), "store-b", T0 + 3 * DAY)
    again = import_bundle(b.ctx, b.scheme(), third, T0 + 3 * DAY)
    assert again.sequence == 3 and again.local_entries == ()  # nothing new: B holds it all


def test_correction_replaces_the_copy_and_objection_suspends_it_everywhere(
        world: World, probe: np.ndarray, engines: dict[str, FaceEngine]) -> None:
    a, b = world["store-a"], world["store-b"]
    threshold = engines["yunet-sface"].threshold
    _sync(world, "store-a", "store-b", T0 + DAY)
    local_id = _imported_local_id(b)

    watchlist.correct(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                      reason="wrong jacket colour", now=T0 + 2 * DAY, features="黒のジャンパー")
    _, result = _sync(world, "store-a", "store-b", T0 + 2 * DAY)
    assert result.receipt.corrections_applied == (world.obama_at_a,)
    entry = b.ctx.repo.entry(local_id)
    assert entry is not None and entry.features == "黒のジャンパー"

    record_objection(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                     reason="the person disputes the registration (反論)", now=T0 + 3 * DAY)
    assert _best(a, probe) < threshold  # suspended at the origin at once
    _, result = _sync(world, "store-a", "store-b", T0 + 3 * DAY)
    assert result.receipt.objections_applied == (world.obama_at_a,)
    entry = b.ctx.repo.entry(local_id)
    assert entry is not None and entry.state is EntryState.ACTIVE  # kept, but not matched
    assert _best(b, probe) < threshold

    decide_objection(a.ctx, actor=a.user("sato.mgr"), entry_id=world.obama_at_a, upheld=False,
                     reason="damage report confirmed again", now=T0 + 4 * DAY)
    _sync(world, "store-a", "store-b", T0 + 4 * DAY)
    assert _best(a, probe) >= threshold and _best(b, probe) >= threshold


# --- refusals: whole bundle, one line, nothing changed ------------------------------------


def _flip(blob: bytes, at: int, mask: int = 0x01) -> bytes:
    return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1:]


def test_tampered_forged_replayed_and_out_of_order_bundles_change_nothing(world: World) -> None:
    a, b = world["store-a"], world["store-b"]
    blob = export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY)
    stranger = Ed25519PrivateKey.generate()
    cases = {
        "ciphertext byte flipped": (_flip(blob, len(blob) // 2), SignatureError, "altered"),
        "sequence in the clear header changed to 3": (
            _flip(blob, blob.index(b'"sequence":1') + 11, 0x02), SignatureError, "altered"),
        "header signature byte flipped": (
            _flip(blob, blob.index(b'"sequence":1') + 20, 0x01), SignatureError, "altered"),
        "addressed to another member": (
            _forge(world, sender="store-a", recipient="store-c", sequence=1), NotForUsError,
            "addressed to store-c"),
        "signed by an unknown member": (
            _forge(world, sender="store-x", recipient="store-b", sequence=1,
                   signing_key=stranger), NotAMemberError, "not a member"),
        "store-a's name, another key": (
            _forge(world, sender="store-a", recipient="store-b", sequence=1,
                   signing_key=stranger), SignatureError, "signature"),
    }
    before = _digests(b.data_dir)
    for label, (bad, error, message) in cases.items():
        with pytest.raises(error, match=message) as caught:
            import_bundle(b.ctx, b.scheme(), bad, T0 + DAY)
        assert "\n" not in str(caught.value), label
        assert "nothing was imported" in str(caught.value), label
        assert _digests(b.data_dir) == before, f"{label} changed B's files"

    import_bundle(b.ctx, b.scheme(), blob, T0 + DAY)
    after_first = _digests(b.data_dir)
    with pytest.raises(ReplayError, match="already applied"):
        import_bundle(b.ctx, b.scheme(), blob, T0 + DAY)
    assert _digests(b.data_dir) == after_first
    # the receipt can be handed over again; each export after it has a new number
    apply_receipt(a.ctx, a.scheme(), last_receipt(b.ctx, "store-a"), T0 + DAY)
    assert import_bundle(b.ctx, b.scheme(), export_bundle(a.ctx, a.scheme(), "store-b",
                                                          T0 + DAY), T0 + DAY).sequence == 2


def test_removed_member_receives_nothing_and_its_bundles_are_refused(world: World) -> None:
    a, b = world["store-a"], world["store-b"]
    _sync(world, "store-a", "store-b", T0 + DAY)
    members = [member_of(s) for s in world.stores.values()]
    without_a = world.root / "scheme-v2.json"
    write_scheme(without_a, [m for m in members if m["member_id"] != "store-a"])
    adoption = adopt_scheme(b.ctx, actor=b.user(ADMINS["store-b"]), path=without_a,
                            now=T0 + 2 * DAY)
    assert adoption.removed == ("store-a",)
    records = [(r.action, json.loads(r.details)) for r in b.ctx.repo.audit_rows()]
    removed = [d for action, d in records if action == Action.JOINT_USE_MEMBER_REMOVED.value]
    assert removed == [{"member": "store-a", "scheme_sha256": adoption.sha256}]

    watchlist.erase(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                    reason="erasure request", now=T0 + 3 * DAY)
    later = export_bundle(a.ctx, a.scheme(), "store-b", T0 + 3 * DAY)  # A still lists B
    scheme_b = scheme_in_force(b.ctx, without_a)
    before = _digests(b.data_dir)
    with pytest.raises(NotAMemberError, match="was removed"):
        import_bundle(b.ctx, scheme_b, later, T0 + 3 * DAY)
    assert _digests(b.data_dir) == before
    # and B sends nothing more to A: it is not a member of the scheme in force at B
    with pytest.raises(ProvisionRefusedError, match="removed from the scheme; it receives nothing"):
        export_bundle(b.ctx, scheme_b, "store-a", T0 + 3 * DAY)


def test_scheme_file_edited_without_adoption_is_refused(world: World) -> None:
    """Membership changes only through the audited admin action."""
    a = world["store-a"]
    scheme_file = world.root / "scheme.json"
    data = json.loads(scheme_file.read_text(encoding="utf-8"))
    data["members"].append({"member_id": "store-x", "store_name": "X", "region": "kanto",
                            "signing_key": public_b64(Ed25519PrivateKey.generate()),
                            "encryption_key": public_b64(X25519PrivateKey.generate())})
    scheme_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(SchemeNotAdoptedError, match="changed since it was adopted"):
        export_bundle(a.ctx, scheme_in_force(a.ctx), "store-b", T0 + DAY)
    adoption = adopt_scheme(a.ctx, actor=a.user("kimura.admin"), path=scheme_file, now=T0 + DAY)
    assert adoption.added == ("store-x",)
    added = [json.loads(r.details) for r in a.ctx.repo.audit_rows()
             if r.action == Action.JOINT_USE_MEMBER_ADDED.value]
    assert added[-1]["member"] == "store-x"
    assert added[-1]["scheme_sha256"] == hashlib.sha256(scheme_file.read_bytes()).hexdigest()
    assert scheme_in_force(a.ctx).sha256 == adoption.sha256


def test_master_key_rotation_keeps_the_store_in_the_scheme(world: World) -> None:
    """The joint-use keys are re-encrypted with everything else; the public keys stay."""
    b = world["store-b"]
    before = load_store_keys(b.ctx.paths.joint_use_keys, b.ctx.master_key)
    key_rotation.rotate_key(b.ctx, actor=b.user(ADMINS["store-b"]), now=T0 + DAY)
    b.ctx.close()
    b = world.stores["store-b"] = open_store(world.root, "store-b")
    after = load_store_keys(b.ctx.paths.joint_use_keys, b.ctx.master_key)
    assert after.signing_public == before.signing_public
    _sync(world, "store-a", "store-b", T0 + 2 * DAY)
    assert len(b.ctx.repo.imported_entry_ids()) == 1


# --- SIGKILL during an import ------------------------------------------------------------

KILL_POINTS = 15  # a third spread over the checks, the rest over writing files and the commit


def _driver(root: Path, bundle: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.registry.joint_use_crash_driver", str(root / "store-b"),
         "store-b", str(root / "scheme.json"), str(bundle), str(kill_at), to_text(T0 + DAY)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def _state_of_b(root: Path, probe: np.ndarray, threshold: float) -> str:
    """Reopen B as the next command would; 'old' or 'new', after checking for half states."""
    b = open_store(root, "store-b")
    try:
        ctx = b.ctx
        assert ctx.audit.verify().ok
        assert ctx.evidence.ids() == ctx.repo.all_evidence_ids(), "evidence files and rows differ"
        index = b.index()
        assert index.version == ctx.repo.watchlist_version()
        found = bool(len(index)) and index.search(probe, k=1)[0][0].score >= threshold
        inbound = ctx.repo.inbound_state("store-a")
        imported = ctx.repo.imported_entry_ids()
        received = [r for r in ctx.repo.audit_rows() if r.action == Action.JOINT_USE_RECEIVED.value]
        if inbound is None:
            assert not imported and not found and not received and not ctx.evidence.ids()
            return "old"
        (local_id,) = imported
        assert inbound.last_sequence == 1 and len(received) == 1 and found
        assert ctx.repo.templates(local_id) and ctx.repo.incidents(local_id)
        for record in ctx.repo.evidence(local_id):
            ctx.evidence.get(record.image_id)  # decrypts: whole
        return "new"
    finally:
        b.ctx.close()


@pytest.mark.crash
def test_import_killed_at_many_points_leaves_old_or_new_state(
        world: World, tmp_path: Path, probe: np.ndarray, engines: dict[str, FaceEngine]) -> None:
    threshold = engines["yunet-sface"].threshold
    a = world["store-a"]
    bundle = tmp_path / "first.bundle"
    bundle.write_bytes(export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY))
    for store in world.stores.values():
        store.ctx.close()

    reference = tmp_path / "reference"
    shutil.copytree(world.root, reference)
    finished = _driver(reference, bundle, 0)
    assert finished.returncode == 0, finished.stderr[-2000:]
    total = int(finished.stdout.strip().splitlines()[-1])
    assert _state_of_b(reference, probe, threshold) == "new"

    seen, shown = set(), []
    points = {int(p) for p in np.linspace(1, total, KILL_POINTS // 3)}
    points |= {int(p) for p in np.linspace(0.4 * total, total, KILL_POINTS - len(points))}
    for point in sorted(points):
        crashed = tmp_path / f"kill-{point}"
        shutil.copytree(world.root, crashed)
        result = _driver(crashed, bundle, point)
        assert result.returncode == -9, f"kill point {point} not reached: {result.stderr[-500:]}"
        state = _state_of_b(crashed, probe, threshold)
        seen.add(state)
        b = open_store(crashed, "store-b")
        try:
            if state == "old":
                import_bundle(b.ctx, b.scheme(), bundle.read_bytes(), T0 + DAY)
            else:
                with pytest.raises(ReplayError):
                    import_bundle(b.ctx, b.scheme(), bundle.read_bytes(), T0 + DAY)
        finally:
            b.ctx.close()
        assert _state_of_b(crashed, probe, threshold) == "new", f"after a kill at {point}/{total}"
        shown.append(f"{point}:{state}")
    print(f"kill points of {total} calls: {' '.join(shown)}")  # noqa: T201 (shown with -s)
    assert seen == {"old", "new"}, "the kill points should cover both sides of the commit"


# --- the command line ------------------------------------------------------------------------


def _mamoru(root: Path, member: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(root / member),
           "MAMORU_REGISTRY__STORE_ID": member,
           "MAMORU_REGISTRY__JOINT_USE_SCHEME": str(root / "scheme.json"),
           "MAMORU_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "mamoru", "joint-use", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.cli
def test_cli_moves_a_bundle_and_its_receipt_by_file(world: World, tmp_path: Path) -> None:
    for store in world.stores.values():
        store.ctx.close()
    root, bundle = world.root, tmp_path / "carry" / "a-to-b.bundle"
    exported = _mamoru(root, "store-a", "export", "--to", "store-b", "--out", str(bundle),
                       "--as", "suzuki.mgr")
    assert exported.returncode == 0, exported.stderr
    assert "bundle #1 for store-b" in exported.stdout
    imported = _mamoru(root, "store-b", "import", str(bundle), "--as", ADMINS["store-b"])
    assert imported.returncode == 0, imported.stderr
    assert "1 new" in imported.stdout
    receipt = Path(imported.stdout.strip().splitlines()[-1].removeprefix("receipt: "))
    assert receipt.is_file() and oct(receipt.stat().st_mode & 0o777) == "0o600"
    again = _mamoru(root, "store-b", "import", str(bundle), "--as", ADMINS["store-b"])
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "already applied" in again.stderr and "Traceback" not in again.stderr
    confirmed = _mamoru(root, "store-a", "receipt", str(receipt), "--as", "suzuki.mgr")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "store-b acknowledged bundle #1" in confirmed.stdout
    shown = _mamoru(root, "store-a", "status", "--as", "suzuki.mgr", "--json")
    rows = {r["member"]: r for r in json.loads(shown.stdout)}
    assert (rows["store-b"]["last_sent"], rows["store-b"]["last_acked"]) == (1, 1)
    assert rows["store-c"]["may_receive"] is False


# --- emergency one-off provision (G-SHR-6) ----------------------------------------------------


def test_emergency_share_needs_checks_by_several_people_and_masks_every_face(
        world: World, engines: dict[str, FaceEngine]) -> None:
    a = world["store-a"]
    engine = engines["yunet-sface"]
    share = request_share(a.ctx, actor=a.user("suzuki.mgr"), entry_id=world.obama_at_a,
                          recipient="○○警察署 生活安全課", now=T0 + DAY)
    reasons = dict(present_danger="同一人物が近隣店舗で連日犯行、本日も付近で目撃",
                   necessity="警察への届出のほか手段がない",
                   proportionality="顔は全てマスク、最小限")
    record_check(a.ctx, actor=a.user("tanaka.staff"), share_id=share.share_id,
                 now=T0 + DAY, **reasons)
    with pytest.raises(RuleViolationError, match="at least 2 people, the store manager"):
        provide_share(a.ctx, engine, actor=a.user("suzuki.mgr"), share_id=share.share_id,
                      now=T0 + DAY)
    with pytest.raises(RuleViolationError, match="necessity"):
        record_check(a.ctx, actor=a.user("sato.mgr"), share_id=share.share_id, now=T0 + DAY,
                     **{**reasons, "necessity": " "})
    record_check(a.ctx, actor=a.user("sato.mgr"), share_id=share.share_id, now=T0 + DAY,
                 **reasons)
    package = provide_share(a.ctx, engine, actor=a.user("suzuki.mgr"), share_id=share.share_id,
                            now=T0 + DAY)

    assert set(package.fields) == {"share_id", "basis", "offences", "features", "images"}
    text = json.dumps(package.fields, ensure_ascii=False)
    assert NAME not in text and REF not in text and NOTE not in text
    assert package.images and package.images_left_out == 0
    for png in package.images:
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert engine.detect(image) == [], "a face is still recognisable in the shared image"
    report = a.ctx.audit.report(T0, T0 + 2 * DAY)
    (flagged,) = report["emergency_shares"]
    assert flagged["flag"].startswith("EMERGENCY") and flagged["share_id"] == share.share_id
    assert flagged["checked_by_roles"] == ["manager", "staff"]
    with pytest.raises(ConflictError, match="provided"):
        provide_share(a.ctx, engine, actor=a.user("suzuki.mgr"), share_id=share.share_id,
                      now=T0 + DAY)

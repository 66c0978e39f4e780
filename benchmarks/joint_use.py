"""How long joint use takes for a large first sync and for a wave of erasures, and how big.

Two real registries (own SQLCipher files, own master keys, own joint-use
keys, one adopted scheme) in a temporary folder. To keep set-up fast, the
``--entries`` entries at A are synthetic and inserted directly through the
repository in one transaction: one incident, one random unit template of
the configured pack (128-D for yunet-sface) and one small synthetic PNG
evidence image (``--image-px`` square, a smooth gradient with a little
noise, a few kB; a real masked registration photo is tens to hundreds of kB
and then dominates the bundle size, roughly linearly). Everything after the
set-up is the production code path, timed end to end:

1. ``export``: `export_bundle` A->B of all entries (allow-list, canonical JSON,
   Ed25519 signature, X25519+AES-256-GCM, provision record);
2. ``import``: `import_bundle` at B (decrypt, verify, one transaction,
   evidence files encrypted and fsynced, index republished);
3. ``receipt``: `apply_receipt` at A;
4. ``erase``: ``--erasures`` entries closed at A (the expiry job's batch path,
   one transaction each, index published once), not part of the sync;
5. the tombstone bundle A->B: export, import (rows, templates and evidence
   files erased at B, index republished), receipt (confirmations recorded).

Run: ``python -m benchmarks.joint_use [--entries 10000] [--erasures 1000]
[--image-px 64]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np

from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths
from registry.accounts import users
from registry.audit.trail import Action
from registry.config import RegistrySettings
from registry.context import RegistryContext, init_registry
from registry.domain import (
    ConfirmationKind,
    Entry,
    EntryState,
    EvidenceRecord,
    IncidentInput,
    OffenceCategory,
    Role,
)
from registry.joint_use.keys import load_store_keys
from registry.joint_use.scheme import adopt_scheme, scheme_in_force
from registry.joint_use.sync import (
    apply_receipt,
    erasure_confirmations,
    export_bundle,
    import_bundle,
    init_keys,
)
from registry.keys.custody import KeyCustodySettings
from registry.notice.publication import publish_notice
from registry.scheme import SHARED_ITEMS
from registry.watchlist.entries import close_entry

T = TypeVar("T")
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "benchmark password 1"


def _timed(rows: list[tuple[str, int, float, int | None]], label: str, count: int,
           action: Callable[[], T], size: Callable[[T], int | None] = lambda _: None) -> T:
    start = time.perf_counter()
    result = action()
    rows.append((label, count, time.perf_counter() - start, size(result)))
    return result


def _store(root: Path, member: str) -> RegistryContext:
    settings = get_settings(data_dir=root / member, registry=RegistrySettings(
        store_id=member, joint_use_scheme=root / "scheme.json"),
        key=KeyCustodySettings(insecure_plain_key_file_on_data_disk=True))  # throw-away stores
    ctx = init_registry(registry_paths(settings), settings.registry, index_spec(settings))
    admin = users.add_user(ctx.repo, ctx.audit, actor="benchmark", username="admin",
                           role=Role.ADMIN, password=PASSWORD, now=NOW)
    users.record_training(ctx.repo, ctx.audit, admin=admin, username="admin", now=NOW)
    init_keys(ctx, actor=ctx.repo.user_by_name("admin"), now=NOW)  # type: ignore[arg-type]
    return ctx


def _scheme(root: Path, stores: dict[str, RegistryContext]) -> None:
    members = []
    for member, ctx in stores.items():
        keys = load_store_keys(ctx.paths.joint_use_keys, ctx.master_key)
        members.append({"member_id": member, "store_name": member, "region": "kanto",
                        "signing_key": keys.signing_public,
                        "encryption_key": keys.encryption_public})
    (root / "scheme.json").write_text(json.dumps({
        "format": 1, "name": "benchmark", "joint_use": "joint use", "purpose": "benchmark",
        "data_items": list(SHARED_ITEMS),
        "managing_party": {"name": "m", "address": "a", "representative": "r", "contact": "c"},
        "region_rule": "same_region", "members": members,
    }), encoding="utf-8")
    for ctx in stores.values():
        admin = ctx.repo.user_by_name("admin")
        assert admin is not None
        adopt_scheme(ctx, actor=admin, path=root / "scheme.json", now=NOW)
        publish_notice(ctx, now=NOW, actor="benchmark")  # exports refuse a stale notice


def _image(rng: np.random.Generator, px: int) -> np.ndarray:
    ramp = np.linspace(0, 200, px, dtype=np.float32)
    base = ramp[None, :, None] + ramp[:, None, None] * 0.2 + rng.normal(0, 3, (px, px, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _insert_entries(ctx: RegistryContext, count: int, image_px: int, seed: int) -> list[str]:
    """Synthetic active entries straight through the repository (set-up, not timed as sync)."""
    rng = np.random.default_rng(seed)
    staff = ctx.repo.user_by_name("admin")
    assert staff is not None
    dim, pack = ctx.index_spec.dim, ctx.index_spec.pack
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    images = [ctx.evidence.put(_image(rng, image_px)) if image_px else None
              for _ in range(count)]
    ids = []
    with ctx.writing(), ctx.repo.unit_of_work():
        for i in range(count):
            entry_id = uuid.uuid4().hex
            occurred = NOW - timedelta(days=int(rng.integers(1, 300)))
            ctx.repo.add_entry(Entry(
                entry_id=entry_id, state=EntryState.ACTIVE, store_id=ctx.policy.store_id,
                features="synthetic", display_name=f"name {i}", proposed_by=staff.user_id,
                proposed_at=occurred, decided_by=staff.user_id, decided_at=occurred,
                decision_reason="benchmark", expires_at=occurred.replace(year=occurred.year + 3),
                revision=1, closed_at=None, closed_reason=""))
            ctx.repo.add_incident(entry_id, ctx.policy.store_id, IncidentInput(
                OffenceCategory.THEFT, occurred, ConfirmationKind.POLICE_REPORT, f"R-{i}",
                "1 item"), staff.user_id, occurred)
            image = images[i]
            if image is not None:
                ctx.repo.add_evidence(EvidenceRecord(image.image_id, entry_id, image.sha256, 0,
                                                     occurred))
            ctx.repo.add_template(entry_id, pack, vectors[i].tobytes(), dim,
                                  image.image_id if image else "", "{}")
            ids.append(entry_id)
        ctx.repo.bump_watchlist_version()
    ctx.publish_index_if_stale()
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--erasures", type=int, default=1_000)
    parser.add_argument("--image-px", type=int, default=64,
                        help="side of the synthetic evidence PNG per entry; 0 = no image")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("MAMORU_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache"))

    rows: list[tuple[str, int, float, int | None]] = []
    with tempfile.TemporaryDirectory(prefix="mamoru-joint-use-bench-") as tmp:
        root = Path(tmp)
        stores = {m: _store(root, m) for m in ("store-a", "store-b")}
        _scheme(root, stores)
        a, b = stores["store-a"], stores["store-b"]
        scheme_a, scheme_b = scheme_in_force(a), scheme_in_force(b)
        ids = _timed(rows, "set-up: insert synthetic entries at A (not sync)", args.entries,
                     lambda: _insert_entries(a, args.entries, args.image_px, args.seed))

        first = _timed(rows, "export A->B (first sync)", args.entries,
                       lambda: export_bundle(a, scheme_a, "store-b", NOW), len)
        result = _timed(rows, "import at B (one transaction + index)", args.entries,
                        lambda: import_bundle(b, scheme_b, first, NOW))
        _timed(rows, "apply receipt at A", args.entries,
               lambda: apply_receipt(a, scheme_a, result.receipt_blob, NOW),
               lambda _: len(result.receipt_blob))
        assert len(result.receipt.entries_applied) == args.entries
        assert len(b.repo.active_templates(b.index_spec.pack)) == args.entries

        doomed = ids[: args.erasures]
        later = NOW + timedelta(days=1)

        def erase() -> None:
            with a.writing():
                for entry_id in doomed:
                    entry = a.repo.entry(entry_id)
                    assert entry is not None
                    close_entry(a, entry, state=EntryState.ERASED, action=Action.ERASE,
                                actor="benchmark", reason="benchmark erasure", now=later,
                                publish=False)
                a.publish_index_if_stale()

        _timed(rows, "erase at A (batch, not sync)", args.erasures, erase)
        tombstones = _timed(rows, "export A->B (tombstones)", args.erasures,
                            lambda: export_bundle(a, scheme_a, "store-b", later), len)
        erased = _timed(rows, "import at B (erase rows, files, index)", args.erasures,
                        lambda: import_bundle(b, scheme_b, tombstones, later))
        _timed(rows, "apply receipt at A (confirmations)", args.erasures,
               lambda: apply_receipt(a, scheme_a, erased.receipt_blob, later),
               lambda _: len(erased.receipt_blob))
        assert len(erased.receipt.tombstones_applied) == args.erasures
        assert len(b.repo.active_templates(b.index_spec.pack)) == args.entries - args.erasures
        assert all(erasure_confirmations(a, e) for e in doomed[:50])
        for ctx in stores.values():
            ctx.close()

    sys.stdout.write(f"joint use A->B, {args.entries} entries (pack {a.index_spec.pack}, "
                     f"{a.index_spec.dim}-D, one {args.image_px}px PNG each), "
                     f"{args.erasures} erasures\n\n")
    sys.stdout.write(f"{'step':<48} {'items':>7} {'seconds':>8} {'per item':>9} {'bytes':>12}\n")
    for label, count, seconds, size in rows:
        per = f"{seconds / count * 1000:.2f} ms" if count else "-"
        shown = f"{size:,}" if size is not None else "-"
        sys.stdout.write(f"{label:<48} {count:>7} {seconds:>8.2f} {per:>9} {shown:>12}\n")
    total_sync = sum(s for label, _, s, _ in rows[1:4])
    total_erase = sum(s for label, _, s, _ in rows[5:8])
    first_size = rows[1][3] or 0
    sys.stdout.write(f"\nfirst sync end to end: {total_sync:.1f} s, bundle "
                     f"{first_size:,} bytes ({first_size / args.entries:,.0f} per entry)"
                     f"\nerasure propagation end to end: {total_erase:.1f} s, bundle "
                     f"{rows[5][3] or 0:,} bytes\n")


if __name__ == "__main__":
    main()

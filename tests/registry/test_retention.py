"""Retention (G-REG-4): erased a fixed 3-5 years after the latest offence; a re-offence resets it.

Expiry must be real erasure: database rows, templates, encrypted evidence
files and the published index entry all go, leaving only a tombstone.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from mamoru.settings import ConfigError, get_settings
from registry.clock import add_years
from registry.config import RegistrySettings
from registry.domain import EntryState
from registry.retention.expiry import run_expiry
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, OBAMA, OBAMA2, T0, Registry, incident

DAY = timedelta(days=1)


def _years(n: int) -> timedelta:
    return add_years(T0, n) - T0


def _assert_expired(reg: Registry, entry_id: str, image_ids: list[str]) -> None:
    entry = reg.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.EXPIRED
    assert entry.display_name == "" and entry.features == ""
    assert reg.ctx.repo.templates(entry_id) == []
    assert reg.ctx.repo.evidence(entry_id) == []
    assert reg.ctx.repo.incidents(entry_id) == []
    for image_id in image_ids:
        assert not (reg.ctx.paths.evidence / f"{image_id}.bin").exists()
    assert all(h.entry_id != entry_id for h in reg.hits(OBAMA2))
    assert entry_id not in reg.matches(OBAMA2)


def test_entry_expires_after_three_years_not_before(registry: Registry) -> None:
    """G-REG-4: retention_years=3 counts from the incident; erasure covers every copy."""
    assert registry.settings.registry.retention_years == 3
    entry_id = registry.register(OBAMA, display_name="someone", features="grey coat")
    images = [r.image_id for r in registry.ctx.repo.evidence(entry_id)]
    assert images and entry_id in registry.matches(OBAMA2)
    version = registry.index().version

    early = run_expiry(registry.ctx, now=T0 + _years(3) - DAY)
    assert early.due == () and early.expired == ()
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert entry_id in registry.matches(OBAMA2)

    late = run_expiry(registry.ctx, now=T0 + _years(3) + DAY)
    assert late.expired == (entry_id,)
    _assert_expired(registry, entry_id, images)
    assert registry.index().version > version
    assert registry.evidence_files() == set()
    last = list(registry.ctx.repo.audit_rows())[-1]
    assert (last.action, last.entry_id, last.actor) == ("expire", entry_id, "expiry-job")
    assert registry.ctx.audit.verify().ok


def test_reoffence_resets_the_retention_period(registry: Registry) -> None:
    """G-REG-4: a new, confirmed offence at +2y restarts the 3 years: expiry moves to +5y."""
    entry_id = registry.register(OBAMA)
    images = [r.image_id for r in registry.ctx.repo.evidence(entry_id)]
    later = T0 + _years(2)
    updated = watchlist.add_reoffence(registry.ctx, actor=registry.user("mgr1"),
                                      entry_id=entry_id, incident=incident(later), now=later)
    assert updated.expires_at == add_years(later, 3)

    assert run_expiry(registry.ctx, now=T0 + _years(3) + DAY).expired == ()
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert entry_id in registry.matches(OBAMA2)

    assert run_expiry(registry.ctx, now=later + _years(3) - DAY).expired == ()
    assert run_expiry(registry.ctx, now=T0 + _years(5) + DAY).expired == (entry_id,)
    _assert_expired(registry, entry_id, images)


@pytest.mark.parametrize("years", [2, 6])
def test_config_refuses_retention_outside_three_to_five_years(years: int) -> None:
    """G-REG-4: "about 3 to 5 years"; other values are refused, never silently clamped."""
    with pytest.raises(ValidationError):
        RegistrySettings(retention_years=years)
    with pytest.raises(ConfigError, match="registry.retention_years"):
        get_settings(registry={"retention_years": years})


def test_config_accepts_three_to_five_years() -> None:
    """G-REG-4: the allowed range."""
    for years in (3, 4, 5):
        assert get_settings(registry={"retention_years": years}).registry.retention_years == years


def test_dry_run_changes_nothing(registry: Registry) -> None:
    """G-REG-4: `mamoru expire --dry-run` lists what would go and touches nothing."""
    entry_id = registry.register(OBAMA)
    files = {p: p.read_bytes() for p in sorted(registry.data_dir.rglob("*")) if p.is_file()}
    audit_before = len(list(registry.ctx.repo.audit_rows()))

    result = run_expiry(registry.ctx, now=T0 + _years(3) + DAY, dry_run=True)

    assert result.dry_run and result.due == (entry_id,) and result.expired == ()
    after = {p: p.read_bytes() for p in sorted(registry.data_dir.rglob("*")) if p.is_file()}
    assert after == files
    entry = registry.ctx.repo.entry(entry_id)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert len(list(registry.ctx.repo.audit_rows())) == audit_before
    assert entry_id in registry.matches(OBAMA2)


def test_running_expiry_twice_is_idempotent(registry: Registry) -> None:
    """G-REG-4: the nightly job may run again (or after a kill); the second run changes nothing."""
    old = registry.register(OBAMA)
    young = registry.register(BIDEN, occurred_at=T0 + _years(1), now=T0 + _years(1))
    moment = T0 + _years(3) + DAY

    first = run_expiry(registry.ctx, now=moment)
    assert first.expired == (old,)
    state = {p: p.read_bytes() for p in sorted(registry.ctx.paths.evidence.glob("*.bin"))}
    index_bytes = registry.ctx.paths.index.read_bytes()
    audit_count = len(list(registry.ctx.repo.audit_rows()))

    second = run_expiry(registry.ctx, now=moment)
    assert second.due == () and second.expired == () and second.orphans_swept == 0
    assert {p: p.read_bytes() for p in sorted(registry.ctx.paths.evidence.glob("*.bin"))} == state
    assert registry.ctx.paths.index.read_bytes() == index_bytes
    assert len(list(registry.ctx.repo.audit_rows())) == audit_count
    entry = registry.ctx.repo.entry(young)
    assert entry is not None and entry.state is EntryState.ACTIVE
    assert young in registry.matches(BIDEN)
    assert registry.ctx.audit.verify().ok

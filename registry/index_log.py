"""The index change log and the deltas built from it (issue 15, item 4: distribution that scales).

Every published index version is logged with what it changed against the
previous published one: template ids added (with their entry) and removed.
The change is computed where the index is built (`RegistryContext.publish_index_if_stale`)
as the difference between the active templates and the members of the last
logged version, so every path that changes what boxes may match (approval,
erasure, withdrawal, expiry, suspension, a joint-use import, a pack change...)
is covered by the one place that decides what the index holds, not by each
caller of `bump_watchlist_version` remembering to say what it changed.

A box holding version `since` then fetches `build_delta(since)`: the netted
changes up to the newest version, the added templates' vectors read from the
templates table at that moment, sealed under the index key the box holds. The
log holds ids only, never a vector: erasing a person's templates (G-REG-4)
leaves nothing in the log a delta could resurrect, and an added template
erased meanwhile is netted out by its own removal.

Bounded: versions older than the newest `KEEP_VERSIONS` or logged more than
`KEEP_DAYS` ago are forgotten at each publish; a box that held one of them
(offline longer than that) is told to fetch the whole index (410).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from kernel.watchlist_index import IndexedTemplate, seal_delta
from registry.repository import FaceDataRepository, IndexRepository, UnitOfWork

# A box polls every few seconds: 1,000 versions is days of changes at a busy chain, and a
# month offline is a box someone will re-install anyway. Either bound ends a version's log.
KEEP_VERSIONS = 1000
KEEP_DAYS = 30


class IndexLogStore(IndexRepository, UnitOfWork, Protocol):
    """What logging a published version writes: the log, inside one unit of work."""


class DeltaSource(IndexRepository, FaceDataRepository, Protocol):
    """What a delta reads: the log and the added templates' vectors."""


def log_published(repo: IndexLogStore, version: int, templates: Sequence[IndexedTemplate],
                  now: datetime) -> bool:
    """Log `version` as holding exactly `templates`; False if it was logged already.

    Called before the file is written: a crash in between leaves the log one
    version ahead of the file, which the next `publish_index_if_stale` writes
    (the same version from the same database), and logging it again is a no-op.
    """
    with repo.unit_of_work():
        members = repo.index_members()
        active = {t.template_id: t.entry_id for t in templates}
        added = {t: e for t, e in active.items() if members.get(t) != e}
        removed = {t: e for t, e in members.items() if active.get(t) != e}
        logged = repo.log_index_version(version, added, removed, now)
        if logged:
            repo.prune_index_log(keep_versions=KEEP_VERSIONS,
                                 logged_before=now - timedelta(days=KEEP_DAYS))
    return logged


def build_delta(repo: DeltaSource, *, since: int, key: bytes, pack: str,
                dim: int) -> bytes | None:
    """The sealed delta from `since` to the newest logged version, or None when the box
    needs the whole index (`since` unknown or pruned, or an added template is gone)."""
    changes = repo.index_changes(since)
    if changes is None:
        return None
    added: list[IndexedTemplate] = []
    wanted_by_entry: dict[str, set[int]] = {}
    for template_id, entry_id in changes.added.items():
        wanted_by_entry.setdefault(entry_id, set()).add(template_id)
    for entry_id, wanted in wanted_by_entry.items():
        found = [t for t in repo.templates(entry_id) if t.template_id in wanted and t.pack == pack]
        if len(found) != len(wanted):
            return None  # the log and the templates disagree: the whole index is the truth
        added.extend(IndexedTemplate(t.template_id, t.entry_id,
                                     np.frombuffer(t.vector, dtype=np.float32)) for t in found)
    return seal_delta(key=key, since=changes.since, version=changes.version, pack=pack,
                      dim=dim, added=added, removed=changes.removed)

"""The index change log, the same on SQLCipher and PostgreSQL (issue 15, items 4 and 5).

What a box's delta is built from: each published version's added and removed
templates, netted from the version the box holds to the newest; unknown or
pruned versions answer None (the box fetches the whole index); the log stays
bounded; a failed unit of work logs nothing. Through `IndexRepository` only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registry.domain import IndexChanges
from registry.storage.postgres.entries import PostgresIndex
from tests.registry.backends import Backend

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def open_repo(backend: Backend) -> Any:
    return backend.open(PostgresIndex)


def log(repo: Any, version: int, added: dict[int, str] | None = None,
        removed: dict[int, str] | None = None, at: datetime = T0) -> bool:
    with repo.unit_of_work():
        return bool(repo.log_index_version(version, added or {}, removed or {}, at))


def test_the_first_logged_version_is_the_base_and_sets_the_members(backend: Backend) -> None:
    repo = open_repo(backend)
    assert repo.index_members() == {}
    assert repo.index_changes(0) is None  # nothing logged: every box needs the whole index
    assert log(repo, 3, {1: "e-a", 2: "e-b"})
    assert repo.index_members() == {1: "e-a", 2: "e-b"}
    assert repo.index_changes(3) == IndexChanges(3, 3, {}, {})
    assert repo.index_changes(2) is None  # older than anything logged


def test_a_delta_nets_every_version_since_the_one_the_box_holds(backend: Backend) -> None:
    """G-REG-4: an erased entry leaves; a template added and erased in between never arrives;
    one suspended and lifted in between (the same template id back) is no change at all."""
    repo = open_repo(backend)
    log(repo, 1, {1: "e-a", 2: "e-b", 3: "e-c"})
    log(repo, 2, added={4: "e-d"}, removed={2: "e-b"})  # e-d approved, e-b erased
    log(repo, 3, added={5: "e-e"}, removed={4: "e-d", 3: "e-c"})  # e-d erased, e-c suspended
    log(repo, 4, added={3: "e-c"})  # e-c's suspension lifted
    assert repo.index_members() == {1: "e-a", 3: "e-c", 5: "e-e"}
    assert repo.index_changes(1) == IndexChanges(1, 4, {5: "e-e"}, {2: "e-b"})
    assert repo.index_changes(2) == IndexChanges(2, 4, {5: "e-e"}, {4: "e-d"})
    assert repo.index_changes(3) == IndexChanges(3, 4, {3: "e-c"}, {})
    assert repo.index_changes(4) == IndexChanges(4, 4, {}, {})
    assert repo.index_changes(5) is None  # never published: the box is not ours to patch


def test_a_version_is_logged_once_and_never_behind_the_newest(backend: Backend) -> None:
    """A crash between logging and writing the file publishes the same version again."""
    repo = open_repo(backend)
    log(repo, 1, {1: "e-a"})
    log(repo, 3, removed={1: "e-a"})
    assert not log(repo, 3, added={9: "e-x"})
    assert not log(repo, 2, added={9: "e-x"})
    assert repo.index_members() == {}
    assert repo.index_changes(1) == IndexChanges(1, 3, {}, {1: "e-a"})
    assert repo.index_changes(2) is None  # a version bumped but never published


def test_the_log_forgets_old_versions_by_count_and_by_age_but_never_the_newest(
        backend: Backend) -> None:
    repo = open_repo(backend)
    for version in range(1, 11):
        log(repo, version, {version: f"e-{version}"}, at=T0 + timedelta(days=version))
    with repo.unit_of_work():
        assert repo.prune_index_log(keep_versions=5, logged_before=T0) == 5  # 1..5 go
    assert repo.index_changes(5) is None
    assert repo.index_changes(6) == IndexChanges(6, 10, {7: "e-7", 8: "e-8", 9: "e-9",
                                                         10: "e-10"}, {})
    with repo.unit_of_work():  # by age: everything logged before day 9 goes
        assert repo.prune_index_log(keep_versions=100, logged_before=T0 + timedelta(days=9)) == 3
    assert repo.index_changes(8) is None
    assert repo.index_changes(9) == IndexChanges(9, 10, {10: "e-10"}, {})
    with repo.unit_of_work():  # the newest stays whatever the bounds say
        assert repo.prune_index_log(keep_versions=0, logged_before=T0 + timedelta(days=99)) == 1
    assert repo.index_changes(10) == IndexChanges(10, 10, {}, {})
    assert len(repo.index_members()) == 10  # pruning the log leaves the members as they are


def test_a_failed_unit_of_work_logs_nothing(backend: Backend) -> None:
    repo = open_repo(backend)
    log(repo, 1, {1: "e-a"})
    with pytest.raises(RuntimeError), repo.unit_of_work():
        repo.log_index_version(2, {2: "e-b"}, {1: "e-a"}, T0)
        raise RuntimeError("the index file could not be written")
    assert repo.index_members() == {1: "e-a"}
    assert repo.index_changes(2) is None
    assert repo.index_changes(1) == IndexChanges(1, 1, {}, {})

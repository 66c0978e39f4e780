"""Scratch folders of backups and restores: one name pattern, alive only while their maker is.

A backup snapshots the database into a scratch folder under `backups/` (the
SQLCipher pages, or on PostgreSQL a `pg_dump` whose non-personal columns are
in the clear beside the sealed ones) before sealing it into the backup; a
restore unpacks a backup there. A process killed in the middle (SIGKILL,
power loss) runs no cleanup and leaves the folder behind, and nothing of it
may outlive its use (G-REG-4, G-RET-1).

Every such folder is made by `scratch_folder`, named `.scratch-<kind>-*`, and
holds an exclusive `flock` on itself for as long as its maker uses it. The
kernel drops that lock when the process ends, however it ends, so a folder
whose lock can be taken is a leftover and one whose lock is held is in use by
a running backup or restore in some process. That is exact where the
registry's writer lock is not enough: a restore of a damaged database
(`put_back_damaged_database`) has no registry open to lock, and on PostgreSQL
the advisory lock is per database while `backups/` is per host. The callers
still sweep under the writer lock (`ctx.writing()`) so a sweep never races a
backup of the same registry.

`sweep_scratch` wipes leftovers (every file overwritten, then removed);
`leftover_scratch` only names them (`mamoru registry check`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from kernel.durable import make_private_dir, wipe_file

ScratchKind = Literal["backup", "restore"]

PATTERNS = (".scratch-backup-*", ".scratch-restore-*")
# Left by releases before the pattern above: `TemporaryDirectory`'s default name (backups)
# and the restore's old prefix. They hold no lock; only ever swept under the writer lock.
LEGACY_PATTERNS = ("tmp*", ".restore-*")


@contextlib.contextmanager
def scratch_folder(backups: Path, kind: ScratchKind) -> Iterator[Path]:
    """A private (0700) folder under `backups`, locked while in use, wiped and removed after."""
    make_private_dir(backups)
    path, handle = _made_and_locked(backups, kind)
    try:
        yield path
    finally:
        try:
            wipe_tree(path)
        finally:
            os.close(handle)  # the lock goes last: the folder is gone before a sweep could see it


def _made_and_locked(backups: Path, kind: ScratchKind) -> tuple[Path, int]:
    """A new folder and a descriptor holding its lock.

    A sweep in another process may take a folder in the instant between its
    making and its locking (it looks like a leftover, empty); the folder then
    is no longer at its path once the lock is ours, and another is made.
    """
    while True:
        path = Path(tempfile.mkdtemp(dir=backups, prefix=f".scratch-{kind}-"))
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(handle).st_ino:
                return path, handle
        except FileNotFoundError:
            pass
        os.close(handle)


def _candidates(backups: Path) -> list[Path]:
    if not backups.is_dir():
        return []
    found = {path for pattern in PATTERNS + LEGACY_PATTERNS for path in backups.glob(pattern)
             if path.is_dir() and not path.is_symlink()}
    return sorted(found)


def _lock_if_left_over(path: Path) -> int | None:
    """A descriptor holding the folder's lock if no running process holds it; else None."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


def leftover_scratch(backups: Path) -> list[Path]:
    """Scratch folders no running process uses; reads only (its lock is taken and given back)."""
    left = []
    for path in _candidates(backups):
        handle = _lock_if_left_over(path)
        if handle is not None:
            os.close(handle)
            left.append(path)
    return left


def sweep_scratch(backups: Path) -> list[str]:
    """Wipe every scratch folder a killed backup or restore left; the names swept."""
    swept = []
    for path in _candidates(backups):
        handle = _lock_if_left_over(path)
        if handle is None:
            continue
        try:
            wipe_tree(path)
        finally:
            os.close(handle)
        swept.append(path.name)
    return swept


def wipe_tree(path: Path) -> None:
    """Overwrite and remove every file under `path`, then the folders, then `path` itself."""
    for root, folders, files in os.walk(path, topdown=False):
        for name in files:
            entry = Path(root, name)
            if entry.is_symlink():
                entry.unlink()
            else:
                wipe_file(entry)
        for name in folders:
            entry = Path(root, name)
            if entry.is_symlink():
                entry.unlink()
            else:
                entry.rmdir()
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()

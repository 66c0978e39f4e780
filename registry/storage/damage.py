"""What to do about each damaged file of the registry: one sentence per kind of file.

A flipped bit or a torn write in any file under the data folder must end a
command in one line that names the file and the way back, never in a
traceback and never in more writes (which could spread the damage). The
readers raise `StoreDamagedError` built here, so every path says the same.
"""

from __future__ import annotations

from pathlib import Path

from kernel.errors import StoreDamagedError

NOTHING_CHANGED = "nothing was changed"


def database_damaged(path: Path, problem: str) -> StoreDamagedError:
    """registry.db: the backups hold it (and a restore re-applies later erasures, G-REG-4)."""
    backups = path.parent / "backups"
    return StoreDamagedError(
        path, problem,
        f"put it back from a backup with `mamoru restore {backups}/<file> --as <admin>`; "
        f"{NOTHING_CHANGED}",
    )


def audit_damaged(path: Path, problem: str) -> StoreDamagedError:
    """audit.db is deliberately not in mamoru backups (a restore must not roll it back)."""
    return StoreDamagedError(
        path, problem,
        "the audit trail is not in mamoru backups: put this file back from the file-system "
        f"backup of the data folder, then run `mamoru audit verify`; {NOTHING_CHANGED}",
    )


def evidence_damaged(path: Path, problem: str) -> StoreDamagedError:
    return StoreDamagedError(
        path, problem,
        f"put the evidence back from a backup with `mamoru restore {path.parent.parent}/backups/"
        "<file> --as <admin>`",
    )


def index_damaged(path: Path, problem: str) -> StoreDamagedError:
    """The index is derived from the database: it can always be published again."""
    return StoreDamagedError(
        path, problem,
        "it is rebuilt from the database: delete it and run any mamoru command (e.g. "
        "`mamoru watchlist list`), which publishes it again",
    )

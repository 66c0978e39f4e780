"""Runs one registry operation and SIGKILLs itself at the N-th call into registry code.

Used by test_crash_safety.py: counting calls into the registry's own functions
gives kill points at every step of the operation (between SQL statements,
between commit and file deletion, between publishing and renaming...), and
they are the same points on every run, so a failure can be replayed.

    python -m tests.registry.crash_driver DATA_DIR OP KILL_AT NOW
    OP: expire | approve | backup | restore (the newest backup, as "admin")
    KILL_AT: 0 = run to the end and print the call count; @NAME = at the first call of
    the registry function NAME (a named step, e.g. a backup's sealing while its scratch
    copy of the database exists)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

REGISTRY_DIR = str(Path(__file__).resolve().parents[2] / "registry")


def _arm(kill_at: str) -> list[int]:
    calls = [0]
    at_name = kill_at.removeprefix("@") if kill_at.startswith("@") else None
    at_count = 0 if at_name else int(kill_at)

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(REGISTRY_DIR):
            calls[0] += 1
            if calls[0] == at_count or frame.f_code.co_name == at_name:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(profile)
    return calls


def main() -> None:
    data_dir, op, kill_at, now_text = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    from mamoru.settings import get_settings
    from mamoru.wiring import index_spec, registry_paths
    from registry.backup.archive import SUFFIX, create_backup, restore_backup
    from registry.clock import parse_timestamp
    from registry.context import open_registry
    from registry.domain import EntryState
    from registry.retention.expiry import run_expiry
    from registry.watchlist import approval

    settings = get_settings(data_dir=Path(data_dir))
    now = parse_timestamp(now_text)
    ctx = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    calls = _arm(kill_at)
    if op == "expire":
        run_expiry(ctx, now=now)
    elif op == "approve":
        manager = ctx.repo.user_by_name("mgr2")
        assert manager is not None
        for entry in ctx.repo.entries([EntryState.PROPOSED]):
            approval.approve(ctx, actor=manager, entry_id=entry.entry_id, reason="checked", now=now)
    elif op in {"backup", "restore"}:
        admin = ctx.repo.user_by_name("admin")
        assert admin is not None
        if op == "backup":
            create_backup(ctx, actor=admin, now=now)
        else:
            newest = sorted(ctx.paths.backups.glob(f"mamoru-*{SUFFIX}"))[-1]
            restore_backup(ctx, actor=admin, path=newest, now=now)
    sys.setprofile(None)
    ctx.close()
    sys.stdout.write(f"{calls[0]}\n")


if __name__ == "__main__":
    main()

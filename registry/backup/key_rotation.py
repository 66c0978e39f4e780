"""`mamoru key rotate`: a new master key for every encrypted file (G-SEC-2, G-BRE-3).

The new key is first written next to the old one, in the same custody (`<key file>.next`); then
both databases are re-keyed, the evidence re-encrypted, the index republished,
and only then does the new key replace the old file (`finish_rotation`). If
the process dies in between, the next open finds `.next` and finishes.

Backups made under the old key are wiped and a fresh one is taken: a rotation
usually follows a suspected key leak, and backups readable with the leaked key
would keep the leak alive. The fresh one is sealed under the new key as a
chunked stream like every backup (`create_backup`): nothing is re-sealed in
memory, whatever the registry's size.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from kernel.durable import wipe_file
from registry.accounts.users import require_role
from registry.backup.archive import SUFFIX, create_backup, require_owner
from registry.context import OwnerLogin, RegistryContext, finish_rotation, pending_custody
from registry.domain import Role, User
from registry.keys.master import new_master_key


def rotate_key(ctx: RegistryContext, *, actor: User, now: datetime,
               owner: OwnerLogin | None = None) -> Path:
    """Re-encrypt everything under a new master key; returns the fresh backup's path.

    On PostgreSQL every sealed value is re-sealed in one transaction
    (`registry.storage.postgres.rekey`); `owner` takes the fresh backup.
    """
    require_role(actor, Role.ADMIN)
    require_owner(ctx, owner, "key rotation")  # before a pending key is written anywhere
    new_key = new_master_key()
    pending_custody(ctx.paths).store(new_key, replace=True)
    finish_rotation(ctx, new_key, resumed=False, actor=actor.username)
    for old in sorted(ctx.paths.backups.glob(f"mamoru-*{SUFFIX}")):
        wipe_file(old)
    return create_backup(ctx, actor=actor, now=now, owner=owner)

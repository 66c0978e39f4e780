"""`mamoru registry init`, `mamoru key rotate`, `mamoru backup`, `mamoru restore`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mamoru.commands.session import AsOption, login, read_new_password, registry
from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths
from registry.backup import create_backup, restore_backup
from registry.clock import utc_now
from registry.context import init_registry
from registry.domain import Role
from registry.key_rotation import rotate_key
from registry.users import add_user, validate_new_password

app = typer.Typer(help="Create the encrypted registry.")
key_app = typer.Typer(help="The master key.")


@app.command("init")
def init(
    admin: Annotated[str, typer.Option(help="name of the first admin user")] = "admin",
) -> None:
    """Create the key file (0600), the encrypted databases and the first admin user.

    The admin's password: MAMORU_NEW_PASSWORD, or typed twice at the prompt.
    """
    settings = get_settings()
    password = read_new_password(admin)
    validate_new_password(password)
    paths = registry_paths(settings)
    with init_registry(paths, settings.registry, index_spec(settings)) as ctx, ctx.writing():
        add_user(ctx.repo, ctx.audit, actor="registry-init", username=admin, role=Role.ADMIN,
                 password=password, now=utc_now())
    typer.echo(f"registry created in {paths.data_dir}")
    typer.echo(f"key file: {paths.key_file} (mode 0600; keep a copy offline, it cannot be recovered)")
    typer.echo(f"admin user: {admin}")


@key_app.command("rotate")
def rotate(as_user: AsOption) -> None:
    """Re-encrypt databases, evidence and index under a new key; old backups are wiped."""
    with registry() as ctx:
        backup = rotate_key(ctx, actor=login(ctx, as_user), now=utc_now())
    typer.echo(f"key rotated; old backups wiped; fresh backup: {backup}")


def backup(as_user: AsOption) -> None:
    """Write an encrypted, consistent snapshot; prune backups past their retention."""
    with registry() as ctx:
        path = create_backup(ctx, actor=login(ctx, as_user), now=utc_now())
    typer.echo(f"backup written: {path}")


def restore(
    backup_file: Annotated[Path, typer.Argument(help="a file written by `mamoru backup`")],
    as_user: AsOption,
) -> None:
    """Restore a snapshot, then re-apply every erasure recorded since (G-REG-4)."""
    with registry() as ctx:
        result = restore_backup(ctx, actor=login(ctx, as_user), path=backup_file, now=utc_now())
    typer.echo(
        f"restored snapshot of {result.taken_at:%Y-%m-%d %H:%M} UTC: {result.entries} entries, "
        f"{result.erasures_reapplied} erasure(s) re-applied"
    )

"""`mamoru registry init|check`, `mamoru key rotate`, `mamoru backup`, `mamoru restore`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kernel.errors import StoreDamagedError
from mamoru.commands.session import AsOption, login, read_new_password, registry
from mamoru.settings import ConfigError, get_settings
from mamoru.wiring import (
    index_spec,
    open_registry_from,
    registry_paths,
    rekey_edge_copies,
    seal_plain_key,
)
from registry.accounts.users import add_user, require_role, validate_new_password
from registry.backup.archive import create_backup, put_back_damaged_database, restore_backup
from registry.backup.check import check_registry
from registry.backup.key_rotation import rotate_key
from registry.clock import utc_now
from registry.context import OwnerLogin, init_registry, open_registry
from registry.domain import Role
from registry.joint_use.check import check_store_keys
from registry.keys.master import load_key_file

app = typer.Typer(help="Create and check the encrypted registry.")
key_app = typer.Typer(help="The master key.")

PgOwnerOption = Annotated[str | None, typer.Option(
    help="PostgreSQL storage: the role that owns the chain database")]
PgOwnerPasswordOption = Annotated[Path | None, typer.Option(
    help="PostgreSQL storage: a 0600 file holding the owner role's password")]


def owner_login(pg_owner: str | None, pg_owner_password_file: Path | None) -> OwnerLogin | None:
    """The owner role given on the command line: both options, or neither."""
    if (pg_owner is None) != (pg_owner_password_file is None):
        raise ConfigError("give both --pg-owner and --pg-owner-password-file, or neither")
    if pg_owner is not None and pg_owner_password_file is not None:
        return OwnerLogin(pg_owner, pg_owner_password_file)
    return None


@app.command("init")
def init(
    admin: Annotated[str, typer.Option(help="name of the first admin user")] = "admin",
    pg_owner: PgOwnerOption = None,
    pg_owner_password_file: PgOwnerPasswordOption = None,
) -> None:
    """Create the key file (0600), the encrypted databases and the first admin user.

    The admin's password: MAMORU_NEW_PASSWORD, or typed twice at the prompt. With
    `registry.storage = "postgres"` the chain database is migrated as its owner
    (`--pg-owner`, `--pg-owner-password-file`) and the key canary recorded.
    """
    settings = get_settings()
    password = read_new_password(admin)
    validate_new_password(password)
    paths = registry_paths(settings)
    owner = owner_login(pg_owner, pg_owner_password_file)
    with init_registry(paths, settings.registry, index_spec(settings), owner=owner) as ctx, \
            ctx.writing():
        add_user(ctx.repo, ctx.audit, actor="registry-init", username=admin, role=Role.ADMIN,
                 password=password, now=utc_now())
    pg = settings.registry.postgres if settings.registry.storage == "postgres" else None
    where = f"PostgreSQL {pg.host}:{pg.port}/{pg.dbname}" if pg else str(paths.data_dir)
    typer.echo(f"registry created in {where}")
    typer.echo(f"master key: {paths.custody} "
               "(keep a sealed copy offline; it cannot be recovered)")
    typer.echo(f"admin user: {admin}")


@app.command("check")
def check(as_user: AsOption) -> None:
    """Read every page and file (databases, evidence, index, backups); exit 1 naming damage
    and any scratch folder a killed backup or restore left.

    Read-only: the registry is opened without the start-up recovery, so a
    damaged file is reported, never rewritten.
    """
    settings = get_settings()
    with open_registry(registry_paths(settings), settings.registry, index_spec(settings)) as ctx:
        require_role(login(ctx, as_user), Role.AUDITOR, Role.ADMIN, Role.MANAGER)
        report = check_registry(ctx, also=(check_store_keys,))
    if report.ok:
        typer.echo(f"registry intact: {', '.join(report.checked)}")
        return
    for error in report.damaged:
        typer.echo(f"DAMAGED: {error}")
    for folder in report.leftover:
        typer.echo(f"LEFTOVER: {folder} (a copy of the database a killed backup or restore "
                   "left; the nightly `mamoru expire` or the next `mamoru backup` wipes it)")
    typer.echo(f"{len(report.damaged)} damaged file(s), {len(report.leftover)} leftover "
               f"scratch folder(s); checked {', '.join(report.checked)}")
    raise typer.Exit(1)


@key_app.command("rotate")
def rotate(as_user: AsOption, pg_owner: PgOwnerOption = None,
           pg_owner_password_file: PgOwnerPasswordOption = None) -> None:
    """Re-encrypt databases, evidence and index under a new key; old backups are wiped.

    On PostgreSQL storage the fresh backup runs as the database's owner (`--pg-owner`).
    """
    owner = owner_login(pg_owner, pg_owner_password_file)
    settings = get_settings()
    with registry() as ctx:
        old_key = ctx.master_key
        backup = rotate_key(ctx, actor=login(ctx, as_user), now=utc_now(), owner=owner)
        has_edge = rekey_edge_copies(settings, old_key, ctx.master_key)
    typer.echo(f"key rotated; old backups wiped; fresh backup: {backup}")
    if has_edge:
        typer.echo("edge alert copies re-encrypted; restart the edge service "
                   "(`systemctl restart mamoru-edge`) so it reads the new key")


@key_app.command("seal")
def seal(
    systemd_credential: Annotated[Path | None, typer.Option(
        help="write the key as a systemd-creds credential here (e.g. /etc/mamoru/master-key.cred)",
    )] = None,
    with_key: Annotated[str, typer.Option(
        help="systemd-creds --with-key: auto (TPM2 where present), host, tpm2, host+tpm2",
    )] = "auto",
    wrapped: Annotated[Path | None, typer.Option(
        help="write the key as a passphrase-wrapped file here (passphrase: MAMORU_KEY_PASSPHRASE "
             "or a prompt)",
    )] = None,
) -> None:
    """Move a plain master key file into a systemd credential or a passphrase-wrapped file.

    The plain file is wiped only after the sealed copy has been read back and
    found equal; then set key.credential_file (or key.wrapped_key_file) in mamoru.toml.
    """
    settings = get_settings()
    sealed = seal_plain_key(settings, credential=systemd_credential, with_key=with_key,
                            wrapped=wrapped)
    typer.echo(f"master key sealed in {sealed}; the plain key file {settings.resolved_key_file} "
               "was wiped")
    setting = "credential_file" if systemd_credential else "wrapped_key_file"
    typer.echo(f"now set [key] {setting} = \"{sealed.path}\" in the configuration")


def backup(as_user: AsOption, pg_owner: PgOwnerOption = None,
           pg_owner_password_file: PgOwnerPasswordOption = None) -> None:
    """Write an encrypted, consistent snapshot; prune backups past their retention.

    On PostgreSQL storage, `pg_dump` runs as the database's owner (`--pg-owner`).
    """
    owner = owner_login(pg_owner, pg_owner_password_file)
    with registry() as ctx:
        path = create_backup(ctx, actor=login(ctx, as_user), now=utc_now(), owner=owner)
    typer.echo(f"backup written: {path}")


def restore(
    backup_file: Annotated[Path, typer.Argument(help="a file written by `mamoru backup`")],
    as_user: AsOption,
    pg_owner: PgOwnerOption = None,
    pg_owner_password_file: PgOwnerPasswordOption = None,
) -> None:
    """Restore a snapshot, then re-apply every erasure recorded since (G-REG-4).

    On PostgreSQL storage, `pg_restore` runs as the database's owner (`--pg-owner`).
    """
    owner = owner_login(pg_owner, pg_owner_password_file)
    settings = get_settings()
    paths = registry_paths(settings)
    try:
        ctx = open_registry_from(settings)
    except StoreDamagedError as damaged:
        if Path(str(damaged.path)) != paths.database:
            raise
        # Nobody can log in to a database that does not open: put the snapshot's in place
        # first (the audit trail, intact, still drives the re-applied erasures below).
        put_back_damaged_database(paths, load_key_file(paths.key_file), backup_file)
        typer.echo(f"{paths.database} could not be opened; replaced by the snapshot in "
                   f"{backup_file.name} before logging in", err=True)
        # Not `recover()`: the restore below raises the watchlist version past the published
        # index before republishing it.
        ctx = open_registry(paths, settings.registry, index_spec(settings))
    with ctx:
        result = restore_backup(ctx, actor=login(ctx, as_user), path=backup_file, now=utc_now(),
                                owner=owner)
    typer.echo(
        f"restored snapshot of {result.taken_at:%Y-%m-%d %H:%M} UTC: {result.entries} entries, "
        f"{result.erasures_reapplied} erasure(s) re-applied"
    )

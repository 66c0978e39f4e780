"""`mamoru user ...`: named staff, roles and recorded training (G-SEC-1)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mamoru.commands.session import AsOption, JsonOption, login, read_new_password, registry
from registry.accounts.stores import existing_store
from registry.accounts.users import (
    add_user,
    change_role,
    disable_user,
    record_training,
    require_role,
)
from registry.clock import to_text, utc_now
from registry.domain import Role

app = typer.Typer(help="Staff accounts, roles and training records.")


@app.command("add")
def add(
    username: Annotated[str, typer.Argument()],
    role: Annotated[Role, typer.Option(help="staff, manager, admin or auditor")],
    as_user: AsOption,
    store: Annotated[str | None, typer.Option(
        help="the store they work in (they see its alerts only); omit for the chain office, "
             "whose role reaches every store")] = None,
) -> None:
    """Add a user; their password is read from MAMORU_NEW_PASSWORD or a prompt."""
    with registry() as ctx:
        admin = login(ctx, as_user)
        require_role(admin, Role.ADMIN)
        if store is not None:
            existing_store(ctx.repo, store)  # before asking for a password
        password = read_new_password(username)
        with ctx.writing():
            add_user(ctx.repo, ctx.audit, actor=admin.username, username=username, role=role,
                     password=password, now=utc_now(), store_id=store)
    where = f"in store {store}" if store else "in the chain office"
    typer.echo(f"user {username} added as {role.value} {where}; "
               "record training with `mamoru user train`")


@app.command("train")
def train(username: Annotated[str, typer.Argument()], as_user: AsOption) -> None:
    """Record that a user completed the privacy training; untrained users cannot act."""
    with registry() as ctx, ctx.writing():
        record_training(ctx.repo, ctx.audit, admin=login(ctx, as_user), username=username,
                        now=utc_now())
    typer.echo(f"training recorded for {username}")


@app.command("role")
def role(username: Annotated[str, typer.Argument()],
         new_role: Annotated[Role, typer.Option("--role")], as_user: AsOption) -> None:
    """Change a user's role."""
    with registry() as ctx, ctx.writing():
        change_role(ctx.repo, ctx.audit, admin=login(ctx, as_user), username=username,
                    role=new_role, now=utc_now())
    typer.echo(f"{username} is now {new_role.value}")


@app.command("disable")
def disable(username: Annotated[str, typer.Argument()], as_user: AsOption) -> None:
    """Disable a user (leavers); their past decisions stay attributed to them."""
    with registry() as ctx, ctx.writing():
        disable_user(ctx.repo, ctx.audit, admin=login(ctx, as_user), username=username,
                     now=utc_now())
    typer.echo(f"{username} disabled")


@app.command("list")
def list_users(as_user: AsOption, as_json: JsonOption = False) -> None:
    """Users with role, training and status (admins and auditors)."""
    with registry() as ctx:
        require_role(login(ctx, as_user), Role.ADMIN, Role.AUDITOR)
        rows = [{"username": u.username, "role": u.role.value, "store_id": u.store_id,
                 "active": u.active,
                 "trained_at": to_text(u.trained_at) if u.trained_at else None}
                for u in ctx.repo.users()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        trained = row["trained_at"] or "NOT TRAINED"
        status = "active" if row["active"] else "disabled"
        store = row["store_id"] or "(chain)"
        typer.echo(f"{row['username']:<16} {row['role']:<8} {store:<16} {status:<9} {trained}")

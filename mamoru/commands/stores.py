"""`mamoru store ...`: the operator's stores; boxes, staff and alerts belong to one (issue 15)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mamoru.commands.session import AsOption, JsonOption, login, registry
from registry.accounts.stores import add_store
from registry.accounts.users import require_role
from registry.clock import utc_now
from registry.domain import Role

app = typer.Typer(help="Stores: where boxes stand, staff work and alerts happen.")


@app.command("add")
def add(store_id: Annotated[str, typer.Argument(help="the store's id, e.g. store-042")],
        name: Annotated[str, typer.Option(help="the store's name, shown on the tablet")],
        as_user: AsOption) -> None:
    """Register a store (admins); then `mamoru device add --store` and `user add --store`."""
    with registry() as ctx, ctx.writing():
        add_store(ctx.repo, ctx.audit, admin=login(ctx, as_user), store_id=store_id,
                  name=name, now=utc_now())
    typer.echo(f"store {store_id} added")


@app.command("list")
def list_all(as_user: AsOption, as_json: JsonOption = False) -> None:
    """Every store, by id (admins and auditors)."""
    with registry() as ctx:
        require_role(login(ctx, as_user), Role.ADMIN, Role.AUDITOR)
        rows = [{"store_id": s.store_id, "name": s.name} for s in ctx.repo.stores()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        typer.echo(f"{row['store_id']:<24} {row['name']}")

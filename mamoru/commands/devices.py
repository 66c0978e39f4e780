"""`mamoru device ...`: the in-store edge boxes allowed to call the registry (G-SEC-2)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mamoru.commands.session import AsOption, JsonOption, login, registry
from registry.accounts.devices import add_device, disable_device, list_devices
from registry.accounts.users import require_role
from registry.clock import to_text, utc_now
from registry.domain import Role

app = typer.Typer(help="Edge boxes and their access tokens.")

NameArgument = Annotated[str, typer.Argument(help="the box's name, e.g. store-001-entrance")]


@app.command("add")
def add(name: NameArgument, as_user: AsOption,
        store: Annotated[str | None, typer.Option(
            help="the store it stands in (its alerts are that store's); omit for this "
                 "installation's own store (registry.store_id)")] = None) -> None:
    """Register a box and print its token, once: only a hash of it is kept."""
    with registry() as ctx:
        token = add_device(ctx, admin=login(ctx, as_user), name=name, now=utc_now(),
                           store_id=store)
    typer.echo(f"device {name} added. Its token, shown only this once:")
    typer.echo(token)
    typer.echo(
        "Store it on the box in a file only the box's service user can read "
        "(chmod 0600, e.g. /etc/mamoru/device.token) and set edge.device_token_file "
        "to that path in the box's configuration; never put it on a command line. "
        f"If it is lost or leaks: `mamoru device disable {name}` and add a new device."
    )


@app.command("list")
def list_all(as_user: AsOption, as_json: JsonOption = False) -> None:
    """Boxes with their status (admins and auditors); tokens are never shown again."""
    with registry() as ctx:
        require_role(login(ctx, as_user), Role.ADMIN, Role.AUDITOR)
        rows = [{"name": d.name, "store_id": d.store_id, "active": d.active,
                 "created_at": to_text(d.created_at)} for d in list_devices(ctx)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        status = "active" if row["active"] else "disabled"
        typer.echo(f"{row['name']:<32} {row['store_id']:<16} {status:<9} "
                   f"added {row['created_at']}")


@app.command("disable")
def disable(name: NameArgument, as_user: AsOption) -> None:
    """Revoke a box's token for good (lost, stolen or retired box)."""
    with registry() as ctx:
        disable_device(ctx, admin=login(ctx, as_user), name=name, now=utc_now())
    typer.echo(f"device {name} disabled; its token is refused from now on")

"""`mamoru emergency-share request|check|provide`: one-off provision outside joint use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kernel.durable import make_private_dir, write_private_file
from mamoru.commands.session import AsOption, login, registry, resolve_entry
from mamoru.settings import get_settings
from mamoru.wiring import open_engine
from registry.clock import utc_now
from registry.joint_use import emergency

app = typer.Typer(help="One-off emergency provision of one entry outside joint use (G-SHR-6): "
                       "checked by several people including the store manager; every face masked.",
                  no_args_is_help=True)


@app.command("request")
def request(
    entry: Annotated[str, typer.Argument(help="entry id (a unique prefix of 6+ characters)")],
    to: Annotated[str, typer.Option("--to", help="the named recipient")],
    as_user: AsOption,
) -> None:
    """Open a request (a manager); then each checker runs `check`."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        share = emergency.request_share(ctx, actor=actor, entry_id=resolve_entry(ctx, entry),
                                        recipient=to, now=utc_now())
    typer.echo(f"emergency share request {share.share_id} opened for {share.recipient}")
    typer.echo(f"it needs the checks of {emergency.MIN_CHECKERS}+ people incl. the store manager")


@app.command("check")
def check(
    share_id: Annotated[str, typer.Argument(help="the request id")],
    as_user: AsOption,
    danger: Annotated[str, typer.Option("--danger", help="why the danger is present")],
    necessity: Annotated[str, typer.Option("--necessity", help="why there is no other way")],
    proportionality: Annotated[str, typer.Option(
        "--proportionality", help="why this is the minimum information")],
) -> None:
    """Record your own check of the three requirements, each with a reason."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        emergency.record_check(ctx, actor=actor, share_id=share_id, present_danger=danger,
                               necessity=necessity, proportionality=proportionality,
                               now=utc_now())
    typer.echo(f"check by {as_user} recorded")


@app.command("provide")
def provide(
    share_id: Annotated[str, typer.Argument(help="the request id")],
    out: Annotated[Path, typer.Option("--out", help="folder for share.json and masked images")],
    as_user: AsOption,
) -> None:
    """Write the minimum package (every face masked); flagged in the audit report."""
    settings = get_settings()
    with registry() as ctx:
        actor = login(ctx, as_user)
        package = emergency.provide_share(ctx, open_engine(settings), actor=actor,
                                          share_id=share_id, now=utc_now())
    make_private_dir(out)
    write_private_file(out / "share.json", json.dumps(
        {**package.fields, "recipient": package.recipient}, ensure_ascii=False,
        indent=2).encode("utf-8"))
    for number, png in enumerate(package.images, start=1):
        write_private_file(out / f"image-{number}.png", png)
    typer.echo(f"emergency provision to {package.recipient} written to {out}: "
               f"{len(package.images)} image(s), every face masked"
               + (f"; {package.images_left_out} left out (no face found to mask)"
                  if package.images_left_out else ""))

"""Watchlist commands: propose, approve, reject, correct, withdraw, reoffend, erase, list, show."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mamoru.commands.session import AsOption, JsonOption, login, registry, resolve_entry
from mamoru.images import read_image
from mamoru.settings import get_settings
from mamoru.wiring import open_engine
from registry.clock import parse_timestamp, utc_now
from registry.domain import ConfirmationKind, EntryState, IncidentInput, OffenceCategory
from registry.watchlist import approval
from registry.watchlist import entries as watchlist

app = typer.Typer(help="Look at the watchlist.")

ReasonOption = Annotated[str, typer.Option("--reason", help="why; recorded with the decision")]
EntryArgument = Annotated[str, typer.Argument(help="entry id (a unique prefix of 6+ characters)")]
CategoryOption = Annotated[OffenceCategory, typer.Option(help="G-REG-5 offence category")]
OccurredOption = Annotated[str, typer.Option(
    "--occurred-at", help="when, with its zone: 2026-11-20T14:05+09:00 (a date alone: 00:00 UTC)")]
ConfirmationOption = Annotated[ConfirmationKind, typer.Option(help="how the offence was confirmed")]
RefOption = Annotated[
    str, typer.Option("--ref", help="the police report (被害届) number or other reference")]


def _incident(category: OffenceCategory, occurred_at: str, confirmation: ConfirmationKind,
              ref: str, damage: str, description: str) -> IncidentInput:
    when = parse_timestamp(occurred_at, "--occurred-at")
    return IncidentInput(category, when, confirmation, ref, damage, description)


def propose(
    photos: Annotated[list[Path], typer.Argument(help="photos of the person (evidence)")],
    as_user: AsOption,
    category: CategoryOption,
    occurred_at: OccurredOption,
    ref: RefOption,
    confirmation: ConfirmationOption = ConfirmationKind.POLICE_REPORT,
    damage: Annotated[str, typer.Option(help="what was damaged or stolen")] = "",
    description: Annotated[str, typer.Option(help="what happened")] = "",
    features: Annotated[str, typer.Option(help="the person's features (clothes, build)")] = "",
    name: Annotated[str, typer.Option(help="name if known; never leaves this store")] = "",
) -> None:
    """Propose a registration from photos; a different manager must approve it."""
    incident = _incident(category, occurred_at, confirmation, ref, damage, description)
    settings = get_settings()
    loaded = [approval.Photo(p.name, read_image(p)) for p in photos]
    with registry() as ctx:
        actor = login(ctx, as_user)
        engine = open_engine(settings)
        result = approval.propose(ctx, engine, settings.quality.registration, actor=actor,
                                  photos=loaded, incident=incident, features=features,
                                  display_name=name, now=utc_now())
    typer.echo(f"proposed entry {result.entry_id} with {result.templates} face template(s)")
    for refused in result.refused_photos:
        typer.echo(f"  not used: {refused}")
    typer.echo("it becomes active only when a different manager runs `mamoru approve`")


def approve(entry: EntryArgument, as_user: AsOption, reason: ReasonOption) -> None:
    """Approve a proposal (a trained manager other than the proposer, G-REG-2)."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        approved = approval.approve(ctx, actor=actor, entry_id=resolve_entry(ctx, entry),
                                    reason=reason, now=utc_now())
    expires = approved.expires_at.date().isoformat() if approved.expires_at else "?"
    typer.echo(f"entry {approved.entry_id} is active until {expires}")


def _close(entry: str, as_user: str, reason: str, close: Callable[..., None], outcome: str) -> None:
    """Log in, find the entry, close it (reject/withdraw/erase) and say what happened."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        entry_id = resolve_entry(ctx, entry)
        close(ctx, actor=actor, entry_id=entry_id, reason=reason, now=utc_now())
    typer.echo(f"entry {entry_id} {outcome}")


def reject(entry: EntryArgument, as_user: AsOption, reason: ReasonOption) -> None:
    """Reject a proposal; its photos and templates are erased."""
    _close(entry, as_user, reason, approval.reject, "rejected; its face data is erased")


def correct(
    entry: EntryArgument, as_user: AsOption, reason: ReasonOption,
    features: Annotated[str | None, typer.Option(help="corrected features")] = None,
    name: Annotated[str | None, typer.Option(help="corrected name")] = None,
) -> None:
    """Correct what is recorded about a person (G-REG-3, G-DSR-2)."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        corrected = watchlist.correct(ctx, actor=actor, entry_id=resolve_entry(ctx, entry),
                                      reason=reason, now=utc_now(), features=features,
                                      display_name=name)
    typer.echo(f"entry {corrected.entry_id} corrected (revision {corrected.revision})")


def withdraw(entry: EntryArgument, as_user: AsOption, reason: ReasonOption) -> None:
    """Withdraw a wrong entry (G-REG-3); its face data is erased."""
    _close(entry, as_user, reason, watchlist.withdraw, "withdrawn; its face data is erased")


def erase(entry: EntryArgument, as_user: AsOption, reason: ReasonOption) -> None:
    """Erase an entry now (e.g. an erasure request, G-DSR-2)."""
    _close(entry, as_user, reason, watchlist.erase,
           "erased: templates, images, incidents and personal fields are gone")


def reoffend(
    entry: EntryArgument, as_user: AsOption, category: CategoryOption,
    occurred_at: OccurredOption, ref: RefOption,
    confirmation: ConfirmationOption = ConfirmationKind.POLICE_REPORT,
    damage: Annotated[str, typer.Option()] = "", description: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a confirmed new offence to an active entry; retention restarts from it (G-REG-4)."""
    incident = _incident(category, occurred_at, confirmation, ref, damage, description)
    with registry() as ctx:
        actor = login(ctx, as_user)
        updated = watchlist.add_reoffence(ctx, actor=actor, entry_id=resolve_entry(ctx, entry),
                                          incident=incident, now=utc_now())
    expires = updated.expires_at.date().isoformat() if updated.expires_at else "?"
    typer.echo(f"re-offence recorded; entry {updated.entry_id} now kept until {expires}")


@app.command("list")
def list_entries(
    as_user: AsOption,
    state: Annotated[list[EntryState] | None, typer.Option(help="only these states")] = None,
    as_json: JsonOption = False,
) -> None:
    """Entries with state, expiry date and incidents."""
    with registry() as ctx:
        views = watchlist.list_entries(ctx, actor=login(ctx, as_user), states=state or None)
        rows = [v.to_dict() for v in views]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        categories = ",".join(sorted({i["category"] for i in row["incidents"]})) or "-"
        expires = (row["expires_at"] or "-")[:10]
        typer.echo(f"{row['entry_id'][:12]}  {row['state']:<9} expires {expires:<10} "
                   f"{categories:<16} templates {row['templates']}  "
                   f"proposed by {row['proposed_by']}")


@app.command("show")
def show(entry: EntryArgument, as_user: AsOption, as_json: JsonOption = False) -> None:
    """One entry in full (no face data is printed)."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        row: dict[str, Any] = watchlist.view(
            ctx, actor=actor, entry_id=resolve_entry(ctx, entry)).to_dict()
    if as_json:
        typer.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    for key, value in row.items():
        if key != "incidents":
            typer.echo(f"{key:<16} {value}")
    for incident in row["incidents"]:
        typer.echo(f"incident         {incident['occurred_at'][:16]} {incident['category']} "
                   f"({incident['confirmation_kind']} {incident['confirmation_ref']}) "
                   f"{incident['damage']}")

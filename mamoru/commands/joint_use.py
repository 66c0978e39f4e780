"""`mamoru joint-use ...`: keys, scheme, export/import of bundles, receipts, status, objections.

Bundles and receipts are files here (USB stick, e-mail, a relay), or go over
HTTPS to the member's registry (`push`): either way they are signed and
encrypted for one member, so whoever carries them can read none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Never

import typer

from kernel.durable import make_private_dir, write_private_file
from mamoru.commands.session import (
    AsOption,
    JsonOption,
    already_running,
    login,
    registry,
    resolve_entry,
    scheduled_job,
)
from mamoru.inputs import read_input_file
from registry.clock import utc_now
from registry.jobs import JOB_JOINT_USE_SYNC
from registry.joint_use import scheme, sync, transport
from registry.joint_use.errors import JointUseError, RegionRuleError
from registry.joint_use.keys import load_store_keys
from registry.scheme import Member, SchemeError
from registry.watchlist.objections import decide_objection, record_objection

app = typer.Typer(help="Joint use (共同利用) with partner stores: signed, encrypted bundles.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="This store's signing and encryption keys.", no_args_is_help=True)
scheme_app = typer.Typer(help="The published joint-use scheme.", no_args_is_help=True)
member_app = typer.Typer(help="Change the members of a JSON scheme file (audited).",
                         no_args_is_help=True)
objection_app = typer.Typer(help="Objections (反論の機会): suspend everywhere until decided.",
                            no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(scheme_app, name="scheme")
app.add_typer(member_app, name="member")
app.add_typer(objection_app, name="objection")

MemberOption = Annotated[str, typer.Option("--to", help="the member id to send to")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why; recorded")]


def _write(path: Path, blob: bytes) -> None:
    make_private_dir(path.parent)
    write_private_file(path, blob)


@keys_app.command("init")
def keys_init(as_user: AsOption) -> None:
    """Generate this store's keys (admin); print the public halves for the scheme file."""
    with registry() as ctx:
        keys = sync.init_keys(ctx, actor=login(ctx, as_user), now=utc_now())
    typer.echo(f"joint-use keys created for member {keys.member_id} (private keys encrypted "
               "in the data folder)")
    typer.echo("give these to the scheme's managing party for the members list:")
    typer.echo(f'signing_key = "{keys.signing_public}"')
    typer.echo(f'encryption_key = "{keys.encryption_public}"')


@keys_app.command("show")
def keys_show() -> None:
    """Print this store's public keys."""
    with registry() as ctx:
        keys = load_store_keys(ctx.paths.joint_use_keys, ctx.master_key)
    typer.echo(f"member_id = \"{keys.member_id}\"")
    typer.echo(f'signing_key = "{keys.signing_public}"')
    typer.echo(f'encryption_key = "{keys.encryption_public}"')


@scheme_app.command("adopt")
def scheme_adopt(
    scheme_file: Annotated[Path, typer.Argument(help="the scheme file as published")],
    as_user: AsOption,
) -> None:
    """Make a scheme file the one in force; every membership change is audited (admin)."""
    with registry() as ctx:
        adoption = scheme.adopt_scheme(ctx, actor=login(ctx, as_user), path=scheme_file,
                                       now=utc_now())
    typer.echo(f"scheme {adoption.sha256} adopted")
    for label, members in (("added", adoption.added), ("removed", adoption.removed),
                           ("keys or region changed", adoption.keys_changed)):
        if members:
            typer.echo(f"  {label}: {', '.join(members)}")
    typer.echo("point registry.joint_use_scheme at this file if it is not already")


@scheme_app.command("show")
def scheme_show(as_json: JsonOption = False) -> None:
    """The five published items (G-SHR-1), as the notice page shows them."""
    with registry() as ctx:
        loaded = scheme.scheme_in_force(ctx)
    items = loaded.scheme.published_items()
    if as_json:
        typer.echo(json.dumps({**items, "sha256": loaded.sha256}, ensure_ascii=False, indent=2))
        return
    typer.echo(f"scheme {loaded.scheme.name} (sha256 {loaded.sha256})")
    typer.echo(f"joint use:       {items['joint_use']}")
    typer.echo("data items:      " + "; ".join(i["ja"] for i in items["data_items"]))
    typer.echo("members:         " + "; ".join(f"{m['store_name']} ({m['region']})"
                                               for m in items["members"]))
    typer.echo(f"purpose:         {items['purpose']}")
    typer.echo(f"managed by:      {items['managing_party']['name']}")
    typer.echo(f"region rule:     {items['region_rule']}")


@member_app.command("add")
def member_add(
    as_user: AsOption,
    member_id: Annotated[str, typer.Option("--id", help="the new member's id")],
    store_name: Annotated[str, typer.Option("--name", help="its store name")],
    region: Annotated[str, typer.Option(help="its region, e.g. kanto")],
    signing_key: Annotated[str, typer.Option(help="its Ed25519 public key (base64)")],
    encryption_key: Annotated[str, typer.Option(help="its X25519 public key (base64)")],
) -> None:
    """Add a member to the configured JSON scheme file and adopt it (admin, audited)."""
    member = Member(member_id=member_id, store_name=store_name, region=region,
                           signing_key=signing_key, encryption_key=encryption_key)
    with registry() as ctx:
        adoption = scheme.add_member(ctx, actor=login(ctx, as_user),
                                     path=scheme.configured_scheme_path(ctx), member=member,
                                     now=utc_now())
    typer.echo(f"member {member_id} added; scheme {adoption.sha256} in force")


@member_app.command("remove")
def member_remove(
    member_id: Annotated[str, typer.Argument(help="the member to remove")],
    as_user: AsOption,
) -> None:
    """Remove a member: it receives nothing more and its later bundles are refused."""
    with registry() as ctx:
        adoption = scheme.remove_member(ctx, actor=login(ctx, as_user),
                                        path=scheme.configured_scheme_path(ctx),
                                        member_id=member_id, now=utc_now())
    typer.echo(f"member {member_id} removed; scheme {adoption.sha256} in force")


@app.command("export")
def export(
    to: MemberOption,
    out: Annotated[Path, typer.Option("--out", help="where to write the bundle file")],
    as_user: AsOption,
) -> None:
    """Write the next bundle for a member: all it has not acknowledged yet."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        parts = sync.export_parts(ctx, scheme.scheme_in_force(ctx), to, utc_now(), actor=actor)
    for number, part in enumerate(parts, start=1):
        # a sync larger than one bundle: OUT, then OUT-2, OUT-3 ... (import them in this order)
        path = out if number == 1 else out.with_name(f"{out.stem}-{number}{out.suffix}")
        _write(path, part.blob)
        typer.echo(f"bundle #{part.sequence} for {to} written to {path} ({len(part.blob)} "
                   "bytes, signed and encrypted for that member only)")


@app.command("import")
def import_(
    bundle_file: Annotated[Path, typer.Argument(help="a bundle file from a member")],
    as_user: AsOption,
    receipt_out: Annotated[Path | None, typer.Option(
        "--receipt-out", help="where to write the receipt; default BUNDLE_FILE.receipt")] = None,
) -> None:
    """Verify and apply a bundle whole (or refuse it whole); write the signed receipt."""
    blob = read_input_file(bundle_file)
    with registry() as ctx:
        actor = login(ctx, as_user)
        result = sync.import_bundle(ctx, scheme.scheme_in_force(ctx), blob, utc_now(),
                                    actor=actor)
    path = receipt_out or bundle_file.with_name(bundle_file.name + ".receipt")
    _write(path, result.receipt_blob)
    r = result.receipt
    typer.echo(f"bundle #{result.sequence} from {result.sender} applied: "
               f"{len(r.entries_applied)} new, {len(r.corrections_applied)} corrected, "
               f"{len(r.tombstones_applied)} erased, {len(r.objections_applied)} objection(s)"
               + (f", {len(result.skipped_expired)} already expired" if result.skipped_expired
                  else ""))
    typer.echo(f"receipt: {path}")


# A bundle with at least this many items shows a progress bar for its upload.
PROGRESS_MIN_ITEMS = 50


@app.command("push")
def push(
    to: MemberOption,
    as_user: AsOption,
    url: Annotated[str | None, typer.Option(
        "--url", help="the member's registry, https://host:port; default: its url in the "
                      "scheme")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="the member's certificate (PEM) to trust; default: the system's "
                          "CAs")] = None,
    retries: Annotated[int, typer.Option(min=0, max=20, help="retries on network errors "
                                                             "and 5xx answers")] = 3,
) -> None:
    """Send the next bundle to a member's registry over HTTPS and apply its receipt."""
    from tqdm import tqdm

    bar: list[tqdm[Never]] = []  # a bar over no iterable

    def progress(done: int, total: int, entries: int) -> None:
        if entries < PROGRESS_MIN_ITEMS:
            return
        if not bar or bar[0].n > done:  # first chunk, or a retry starting over
            if bar:
                bar[0].close()
                bar.clear()
            bar.append(tqdm(total=total, unit="B", unit_scale=True, leave=False,
                            desc=f"bundle for {to} ({entries} items)"))
        bar[0].update(done - bar[0].n)

    try:
        with registry() as ctx:
            actor = login(ctx, as_user)
            pushed = transport.push_bundle(ctx, scheme.scheme_in_force(ctx), to, url,
                                           now=utc_now(), ca_file=ca_file, retries=retries,
                                           actor=actor, progress=progress)
    finally:
        if bar:
            bar[0].close()
    r = pushed.receipt
    typer.echo(f"bundle #{pushed.sequence} delivered to {to} ({pushed.bundle_bytes} bytes, "
               f"{pushed.entries} item(s), {pushed.attempts} attempt(s)); it applied "
               f"{len(r.entries_applied)} new, {len(r.corrections_applied)} corrected, "
               f"{len(r.tombstones_applied)} erased; "
               f"{len(pushed.applied.tombstones_confirmed)} erasure(s) confirmed")


@app.command("sync")
def sync_all(
    as_user: AsOption,
    ca_dir: Annotated[Path | None, typer.Option(
        "--ca-dir", help="folder with each member's certificate as <member_id>.pem")] = None,
    retries: Annotated[int, typer.Option(min=0, max=20)] = 3,
) -> None:
    """Push the next bundle to every member that has a registry URL (the scheduled sync).

    Members the region rule excludes are skipped; one member being down does not
    stop the others, and the command exits 1 if any push failed (systemd retries).
    Once at a time per registry: a second start while one runs (another host's
    timer) says so and exits 0.
    """
    with scheduled_job(JOB_JOINT_USE_SYNC) as held:
        if not held:
            already_running("mamoru joint-use sync")
            return
        _sync_all(as_user, ca_dir, retries)


def _sync_all(as_user: str, ca_dir: Path | None, retries: int) -> None:
    failed: list[str] = []
    with registry() as ctx:
        actor = login(ctx, as_user)
        in_force = scheme.scheme_in_force(ctx)
        for member in in_force.scheme.members:
            if member.member_id == ctx.policy.store_id or member.url is None:
                continue
            pem = ca_dir / f"{member.member_id}.pem" if ca_dir else None
            try:
                pushed = transport.push_bundle(
                    ctx, in_force, member.member_id, None, now=utc_now(),
                    ca_file=pem if pem and pem.is_file() else None, retries=retries, actor=actor,
                )
            except RegionRuleError:
                typer.echo(f"{member.member_id}: skipped (outside the scheme's region rule)")
                continue
            except (JointUseError, SchemeError) as exc:  # this member fails, the others go on
                typer.echo(f"{member.member_id}: FAILED: {exc}")
                failed.append(member.member_id)
                continue
            typer.echo(f"{member.member_id}: bundle #{pushed.sequence} delivered "
                       f"({pushed.entries} item(s), {pushed.bundle_bytes} bytes)")
    if failed:
        raise typer.Exit(1)


@app.command("receipt")
def receipt(
    receipt_file: Annotated[Path, typer.Argument(help="a receipt file from a member")],
    as_user: AsOption,
) -> None:
    """Apply a member's receipt: record what it holds and which erasures it confirmed."""
    blob = read_input_file(receipt_file)
    with registry() as ctx:
        actor = login(ctx, as_user)
        applied = sync.apply_receipt(ctx, scheme.scheme_in_force(ctx), blob, utc_now(),
                                     actor=actor)
    typer.echo(f"{applied.member} acknowledged bundle #{applied.sequence}; "
               f"{len(applied.tombstones_confirmed)} erasure(s) confirmed")


@app.command("resend-receipt")
def resend_receipt(
    member: Annotated[str, typer.Option("--from", help="the member whose bundle it was")],
    out: Annotated[Path, typer.Option("--out", help="where to write the receipt")],
    as_user: AsOption,
) -> None:
    """Write again the receipt of the last bundle applied from a member (if it was lost)."""
    with registry() as ctx:
        login(ctx, as_user)
        blob = sync.last_receipt(ctx, member)
    _write(out, blob)
    typer.echo(f"receipt: {out}")


@app.command("status")
def status(as_user: AsOption, as_json: JsonOption = False) -> None:
    """Per member: last sequence sent, acknowledged, received; erasures awaiting confirmation."""
    with registry() as ctx:
        login(ctx, as_user)
        rows = [s.to_dict() for s in sync.status(ctx, scheme.scheme_in_force(ctx))]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{'member':<16} {'region':<10} {'sent':>5} {'acked':>6} {'received':>9}  "
               "pending erasure confirmations")
    for row in rows:
        region = str(row["region"]) + ("" if row["may_receive"] else " (x)")
        pending = row["pending_erasure_confirmations"]
        assert isinstance(pending, list)
        typer.echo(f"{row['member']!s:<16} {region:<10} {row['last_sent']!s:>5} "
                   f"{row['last_acked']!s:>6} {row['last_received']!s:>9}  "
                   f"{len(pending)}" + (f" ({', '.join(p[:12] for p in pending)})"
                                        if pending else ""))
    if any(not r["may_receive"] for r in rows):
        typer.echo("(x): the region rule does not allow sharing with this member")


@objection_app.command("record")
def objection_record(
    entry: Annotated[str, typer.Argument(help="entry id (a unique prefix of 6+ characters)")],
    as_user: AsOption, reason: ReasonOption,
) -> None:
    """Record an objection: the entry leaves every index here and at members until decided."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        entry_id = resolve_entry(ctx, entry)
        record_objection(ctx, actor=actor, entry_id=entry_id, reason=reason,
                                    now=utc_now())
    typer.echo(f"entry {entry_id} suspended; members suspend it with their next bundle")


@objection_app.command("decide")
def objection_decide(
    entry: Annotated[str, typer.Argument(help="entry id (a unique prefix of 6+ characters)")],
    as_user: AsOption, reason: ReasonOption,
    upheld: Annotated[bool, typer.Option("--uphold/--dismiss",
                                         help="uphold (erase everywhere) or dismiss")],
) -> None:
    """Decide an objection: upheld erases the entry everywhere, dismissed lifts the suspension."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        entry_id = resolve_entry(ctx, entry)
        decide_objection(ctx, actor=actor, entry_id=entry_id, upheld=upheld,
                                    reason=reason, now=utc_now())
    typer.echo(f"objection to {entry_id} {'upheld: entry erased' if upheld else 'dismissed'}")

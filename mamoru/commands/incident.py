"""`mamoru incident ...`: breach response (G-BRE-1..4) from discovery to the reports.

open -> contain (recorded steps) -> triage (rule 7, deadlines) -> status ->
report drafts -> submitted. `mamoru incident drill` rehearses all of it on a
copy of the registry with a fixed clock.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kernel.errors import RuleViolationError
from mamoru.commands.session import AsOption, login, registry
from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths, rekey_edge_copies
from registry.breach import incident as breach
from registry.breach.report import DEFAULT_BODY, DEFAULT_INQUIRY_DESK, Draft, make_draft
from registry.clock import parse_timestamp, utc_now
from registry.context import RegistryContext, open_registry
from registry.domain import Ground, Role, User

app = typer.Typer(help="Personal-data breach response: record, contain, triage, report (G-BRE).")

DRILL_CLOCK = "2026-03-10T01:00:00+00:00"  # 10:00 in Japan; the drill's 'now'


class Step(StrEnum):
    DISABLE_DEVICES = "disable-devices"
    ROTATE_KEY = "rotate-key"
    STOP_EDGE = "stop-edge"
    PRESERVE_EVIDENCE = "preserve-evidence"


def _when(text: str | None) -> datetime:
    return parse_timestamp(text, "time") if text else utc_now()


@app.command("open")
def open_(
    as_user: AsOption,
    discovered_by: Annotated[str, typer.Option(help="who found it (name, role or outside party)")],
    how: Annotated[str, typer.Option(help="how it was found, e.g. 'NVR box missing at opening'")],
    discovered_at: Annotated[str | None, typer.Option(help="when (ISO; default now)")] = None,
    summary: Annotated[str, typer.Option(help="what is known so far")] = "",
) -> None:
    """Record the discovery and what the registry holds now (managers, admins)."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        now = utc_now()
        incident_id = breach.open_incident(ctx, actor=actor, discovered_at=_when(discovered_at),
                                           discovered_by=discovered_by, how=how,
                                           summary=summary, now=now)
        _print_status(ctx, incident_id, now)


def _stop_edge_services() -> str:
    """Stop the edge unit where systemd runs; otherwise say what a person must do."""
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return "systemd is not running here: stop the edge box by hand (power or network)"
    result = subprocess.run(["systemctl", "stop", "mamoru-edge.service"], capture_output=True,
                            text=True, check=False, timeout=120)
    return "mamoru-edge.service stopped" if result.returncode == 0 else (
        f"systemctl stop failed: {result.stderr.strip().splitlines()[-1:] or result.returncode}")


def _journal() -> list[tuple[str, bytes]]:
    if shutil.which("journalctl") is None or not Path("/run/systemd/system").is_dir():
        return []
    result = subprocess.run(["journalctl", "--no-pager", "-o", "export", "-u", "mamoru-*"],
                            capture_output=True, check=False, timeout=300)
    return [("journal.export", result.stdout)] if result.returncode == 0 else []


@app.command("contain")
def contain(
    incident_id: Annotated[str, typer.Argument(help="the incident id (or a unique prefix)")],
    step: Annotated[Step, typer.Option(help="the containment step to run and record")],
    as_user: AsOption,
    to: Annotated[Path | None, typer.Option(
        help="preserve-evidence: folder for the sealed copy (removable media)")] = None,
    log: Annotated[list[Path] | None, typer.Option(
        help="preserve-evidence: a log file to include (repeatable)")] = None,
) -> None:
    """Run one containment step; it is recorded against the incident and in the audit trail."""
    settings = get_settings()
    with registry() as ctx:
        actor, now = login(ctx, as_user), utc_now()
        if step is Step.DISABLE_DEVICES:
            names = breach.contain_disable_devices(ctx, actor=actor, incident_id=incident_id,
                                                   now=now)
            typer.echo(f"device tokens disabled: {', '.join(names) or 'none were active'}")
        elif step is Step.ROTATE_KEY:
            old_key = ctx.master_key
            fresh = breach.contain_rotate_key(ctx, actor=actor, incident_id=incident_id, now=now)
            rekey_edge_copies(settings, old_key, ctx.master_key)
            typer.echo(f"key rotated; old backups wiped; fresh backup: {fresh}")
        elif step is Step.STOP_EDGE:
            typer.echo(breach.contain_stop_edge(ctx, actor=actor, incident_id=incident_id,
                                                now=now, stop=_stop_edge_services))
        else:
            if to is None:
                raise RuleViolationError("preserve-evidence needs --to FOLDER (removable media)")
            logs = [(p.name, p.read_bytes()) for p in log or []] + _journal()
            sealed = breach.preserve_evidence(ctx, actor=actor, incident_id=incident_id,
                                              now=now, to_dir=to, logs=logs)
            typer.echo(f"sealed copy written: {sealed} (SHA-256 in the incident and audit trail)")


@app.command("triage")
def triage(
    incident_id: Annotated[str, typer.Argument(help="the incident id (or a unique prefix)")],
    as_user: AsOption,
    reason: Annotated[str, typer.Option(help="why these grounds apply, or why none does")],
    ground: Annotated[list[Ground] | None, typer.Option(
        help="a rule-7 ground that applies (repeatable); none = not reportable")] = None,
) -> None:
    """Record the rule-7 test; a reportable leak marks the affected persons' stop-use right."""
    with registry() as ctx:
        now = utc_now()
        result = breach.triage(ctx, actor=login(ctx, as_user), incident_id=incident_id,
                               grounds=ground or [], reason=reason, now=now)
        typer.echo("reportable: " + (", ".join(g.label for g in result.grounds)
                                     if result.reportable else "no"))
        _print_status(ctx, incident_id, now)


@app.command("status")
def status(
    as_user: AsOption,
    incident_id: Annotated[str | None, typer.Argument(help="one incident; default all")] = None,
) -> None:
    """Each incident's deadlines, with a warning before each one and after it passes."""
    with registry() as ctx:
        require_responder(login(ctx, as_user))
        ids = [incident_id] if incident_id else [i.incident_id for i in breach.list_incidents(ctx)]
        if not ids:
            typer.echo("no incidents recorded")
        for one in ids:
            _print_status(ctx, one, utc_now())


def require_responder(user: User) -> None:
    breach.require_responder(user)


def _print_status(ctx: RegistryContext, incident_id: str, now: datetime,
                  say: Callable[[str], None] = typer.echo) -> None:
    for line in breach.status_lines(breach.get_incident(ctx, incident_id), now):
        say(line)


@app.command("report")
def report(
    incident_id: Annotated[str, typer.Argument(help="the incident id (or a unique prefix)")],
    as_user: AsOption,
    preliminary: Annotated[bool, typer.Option("--preliminary", help="速報")] = False,
    final: Annotated[bool, typer.Option("--final", help="確報")] = False,
    notice: Annotated[bool, typer.Option("--notice", help="notice to each person")] = False,
    publication: Annotated[bool, typer.Option(
        "--publication", help="public notice where persons cannot be reached")] = False,
    accredited_body: Annotated[bool, typer.Option(
        "--accredited-body", help="report to the accredited body")] = False,
    inquiry_desk: Annotated[str, typer.Option(
        help="the inquiry desk named in notices")] = DEFAULT_INQUIRY_DESK,
    body: Annotated[str, typer.Option(help="the accredited body's name")] = DEFAULT_BODY,
    submitted: Annotated[bool, typer.Option(
        help="record that this report was sent (status stops warning)")] = False,
) -> None:
    """Draft a report; counts come from the registry, judgements are left to people."""
    chosen = [d for d, on in ((Draft.PRELIMINARY, preliminary), (Draft.FINAL, final),
                              (Draft.NOTICE, notice), (Draft.PUBLICATION, publication),
                              (Draft.ACCREDITED_BODY, accredited_body)) if on]
    if len(chosen) != 1:
        raise RuleViolationError("choose one of --preliminary, --final, --notice, "
                                 "--publication, --accredited-body")
    with registry() as ctx:
        actor = login(ctx, as_user)
        require_responder(actor)
        typer.echo(render(ctx, incident_id, chosen[0], inquiry_desk=inquiry_desk, body=body,
                          actor=actor, submitted=submitted, now=utc_now()))


def render(ctx: RegistryContext, incident_id: str, draft: Draft, *, inquiry_desk: str, body: str,
           actor: User, submitted: bool, now: datetime) -> str:
    """One draft, recorded against the incident (preliminary and final reports)."""
    return make_draft(ctx, incident_id, draft, actor=actor, inquiry_desk=inquiry_desk, body=body,
                      submitted=submitted, now=now)


@app.command("drill")
def drill(
    as_user: AsOption,
    clock: Annotated[str, typer.Option(help="the drill's fixed 'now' (ISO)")] = DRILL_CLOCK,
    out: Annotated[Path | None, typer.Option(help="keep the drafts in this folder")] = None,
) -> None:
    """Rehearse the whole workflow on a throw-away copy of the registry with a fixed clock.

    The live registry is not changed. The key is not rotated and the edge is
    not stopped (those steps are named, not run); devices are disabled on the copy only.
    """
    settings = get_settings()
    live = settings.data_dir
    with tempfile.TemporaryDirectory(prefix="mamoru-drill-") as scratch:
        copy = Path(scratch) / "data"
        shutil.copytree(live, copy, ignore=shutil.ignore_patterns("backups", ".write.lock"))
        paths = registry_paths(settings, copy)
        with open_registry(paths, settings.registry, index_spec(settings)) as ctx:
            run_drill(ctx, as_user=as_user, now=parse_timestamp(clock, "--clock"),
                      evidence_dir=Path(scratch) / "evidence", out=out, say=typer.echo)
    typer.echo("drill finished; the copy was deleted, the live registry is unchanged")


def run_drill(ctx: RegistryContext, *, as_user: str, now: datetime, evidence_dir: Path,
              out: Path | None, say: Callable[[str], None]) -> None:
    """The drill's script: each step as in a real incident, at fixed times from `now`."""
    actor = login(ctx, as_user)
    require_responder(actor)
    say(f"DRILL on a copy; clock fixed at {now.isoformat()}")
    incident_id = breach.open_incident(
        ctx, actor=actor, discovered_at=now, discovered_by="drill: store manager",
        how="drill: the NVR box is missing from the back office at opening",
        summary="drill: theft of the in-store box", now=now)
    say(f"1. opened {incident_id}")
    step = now + timedelta(minutes=30)
    if actor.role is Role.ADMIN:
        names = breach.contain_disable_devices(ctx, actor=actor, incident_id=incident_id,
                                               now=step)
        say(f"2. device tokens disabled (on the copy): {', '.join(names) or 'none active'}")
    else:
        say("2. disable-devices needs an admin: ask one (`mamoru incident contain ... "
            "--step disable-devices`)")
    say("3. rotate-key and stop-edge are named, not run, in a drill")
    sealed = breach.preserve_evidence(ctx, actor=actor, incident_id=incident_id,
                                      now=step + timedelta(minutes=10), to_dir=evidence_dir)
    say(f"4. evidence sealed: {sealed.name}")
    breach.triage(ctx, actor=actor, incident_id=incident_id,
                  grounds=[Ground.SENSITIVE, Ground.MALICIOUS],
                  reason="drill: records that may show a criminal past (1号), theft (3号)",
                  now=now + timedelta(hours=2))
    say("5. triage: 1号 and 3号 assumed; status two days later:")
    _print_status(ctx, incident_id, now + timedelta(days=2), say=lambda s: say("   " + s))
    drafts = {d: render(ctx, incident_id, d, inquiry_desk="【要記入：窓口】", body=DEFAULT_BODY,
                        actor=actor, submitted=False, now=now + timedelta(days=2))
              for d in Draft}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for draft, text in drafts.items():
            (out / f"{incident_id}-{draft.value}.md").write_text(text, encoding="utf-8")
        say(f"6. drafts written to {out}")
    else:
        say(f"6. drafts made: {', '.join(d.value for d in drafts)} (use --out to keep them)")

"""`mamoru audit verify|report` and `mamoru expire`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated

import typer
from tqdm import tqdm

from mamoru.commands.session import (
    AsOption,
    JsonOption,
    already_running,
    login,
    registry,
    scheduled_job,
)
from registry.clock import parse_timestamp, utc_now
from registry.jobs import JOB_EXPIRY
from registry.oversight.report import require_overseer
from registry.retention.expiry import run_expiry

app = typer.Typer(help="The tamper-evident audit trail.")


@app.command("verify")
def verify(as_user: AsOption) -> None:
    """Check the whole hash chain; exit 1 and name the first bad record if it was altered."""
    with registry() as ctx:
        require_overseer(login(ctx, as_user))  # the chain office: the trail spans every store
        report = ctx.audit.verify()
    if report.problem is None:
        typer.echo(f"audit trail intact: {report.records} records")
        return
    typer.echo(f"audit trail BROKEN at record {report.problem.seq}: {report.problem.reason}")
    raise typer.Exit(1)


@app.command("report")
def report(
    as_user: AsOption,
    start: Annotated[str, typer.Option(
        "--from", help="start: a date (00:00 UTC) or a date-time with its zone, e.g. 2026-01-01")],
    end: Annotated[
        str | None, typer.Option("--to", help="end date (exclusive); default now")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Counts of registrations, approvals and erasures for a period; no faces, no names."""
    begin = parse_timestamp(start, "--from")
    finish = parse_timestamp(end, "--to") if end else utc_now() + timedelta(seconds=1)
    with registry() as ctx:
        require_overseer(login(ctx, as_user))  # the chain office: the trail spans every store
        counts = ctx.audit.report(begin, finish)
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    for key, value in counts.items():
        if key != "by_action":
            typer.echo(f"{key:<34} {value}")


def expire(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be erased")] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="pretend it is this time (testing)")
    ] = None,
) -> None:
    """Erase every entry past its retention period, lapse unjudged alerts, delete old backups,
    prune the audit trail past its retention and wipe the desk's closed-request records past
    theirs (the nightly job, G-REG-4, G-RET-1). Once at a time per registry: a second start
    while one runs (another host's timer) says so and exits 0."""
    moment = parse_timestamp(now, "--now") if now else utc_now()
    if dry_run:
        _expire(moment, dry_run=True)
        return
    with scheduled_job(JOB_EXPIRY) as held:
        if not held:
            already_running("mamoru expire")
            return
        _expire(moment, dry_run=False)


def _expire(moment: datetime, *, dry_run: bool) -> None:
    with registry() as ctx:
        due = len(ctx.repo.due_for_expiry(moment))
        with tqdm(total=due, desc="expiring", unit="entry", disable=due < 50 or dry_run) as bar:

            def advance(_: str) -> None:
                bar.update()

            result = run_expiry(ctx, now=moment, dry_run=dry_run, on_progress=advance)
    if dry_run:
        typer.echo(f"{len(result.due)} entr{'y' if len(result.due) == 1 else 'ies'} would expire")
        for entry_id in result.due:
            typer.echo(f"  {entry_id}")
        typer.echo(f"{len(result.alerts_due)} unjudged alert(s) would lapse")
        typer.echo(f"{len(result.requests_wiped)} closed request(s) would have their contact "
                   "and summary wiped")
        return
    typer.echo(f"expired {len(result.expired)} entr{'y' if len(result.expired) == 1 else 'ies'}; "
               f"swept {result.orphans_swept} orphaned image file(s)")
    for entry_id in result.expired:
        typer.echo(f"  {entry_id}")
    typer.echo(f"lapsed {len(result.alerts_lapsed)} unjudged alert(s); erased "
               f"{result.stray_snapshots_erased} stray alert snapshot(s); deleted "
               f"{len(result.backups_deleted)} old backup(s); pruned "
               f"{result.audit_records_pruned} audit record(s); wiped "
               f"{len(result.scratch_swept)} backup scratch folder(s) a killed process left")
    typer.echo(f"wiped the contact and summary of {len(result.requests_wiped)} closed "
               "request(s) past registry.request_record_days")

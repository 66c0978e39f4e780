"""`mamoru request ...` (the request and complaint desk) and `mamoru review ...` (見直し).

The requester's contact is read from the prompt or `--contact`; it is shown
only by `request show`. The requester's photo is read into memory for one
search and never written anywhere (G-DSR-1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kernel.durable import write_private_file
from mamoru.commands.session import AsOption, JsonOption, login, registry, resolve_entry
from mamoru.images import read_image
from mamoru.settings import get_settings
from mamoru.wiring import open_engine
from registry.clock import to_text, utc_now
from registry.domain import IdentityMethod, RefusalGround, RequestKind, ReviewDecision
from registry.requests import desk as requests
from registry.watchlist import reviews

app = typer.Typer(help="The request and complaint desk (開示・訂正・利用停止・消去・苦情・反論).",
                  no_args_is_help=True)
review_app = typer.Typer(help="Periodic review of active entries (見直しの機会, G-REV-1).",
                         no_args_is_help=True)

RequestArgument = Annotated[str, typer.Argument(
    help="request id (a unique prefix of 6+ characters)")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why; recorded with the answer")]


@app.command("open")
def open_request(
    as_user: AsOption,
    kind: Annotated[RequestKind, typer.Option("--kind", help="what the person asks for")],
    identity: Annotated[IdentityMethod, typer.Option(
        "--identity", help="how identity was checked (the document itself is not kept)")],
    agent: Annotated[bool, typer.Option(
        "--agent", help="an agent asks on the person's behalf")] = False,
    summary: Annotated[str, typer.Option(help="what is asked or complained about")] = "",
    as_json: JsonOption = False,
) -> None:
    """Record a request after checking the requester's identity (G-DSR-4).

    The contact is asked at the prompt (never an argument: it would stay in the
    shell history); it is stored in the encrypted database and shown only by `show`.
    """
    contact = str(typer.prompt("Requester's contact (address / phone / e-mail)"))
    with registry() as ctx:
        actor = login(ctx, as_user)
        request = requests.open_request(ctx, actor=actor, kind=kind, identity_method=identity,
                                        contact=contact, by_agent=agent, summary=summary,
                                        now=utc_now())
        row = requests.summary_row(ctx, request, utc_now())
    if as_json:
        typer.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    typer.echo(f"request {request.request_id} ({kind.value}) opened; due "
               f"{to_text(request.due_at)[:10]}")


@app.command("search")
def search(
    request: RequestArgument, as_user: AsOption,
    photo: Annotated[Path, typer.Argument(help="the requester's photo (read once, not kept)")],
) -> None:
    """Find the person on the watchlist with their photo; recorded in the audit trail."""
    settings = get_settings()
    image = read_image(photo)
    with registry() as ctx:
        actor = login(ctx, as_user)
        engine = open_engine(settings)
        outcome = requests.search(ctx, engine, actor=actor,
                                  request_id=requests.resolve(ctx, request), image=image,
                                  now=utc_now())
    del image
    if outcome.outcome == "no_face":
        typer.echo("no face found in the photo; nothing matched (recorded)")
    elif not outcome.found:
        typer.echo("not found: the watchlist holds nobody like this photo (recorded)")
    else:
        typer.echo(f"found: entry {', '.join(outcome.found)} (recorded)")
        if outcome.request.forwarded_to:
            typer.echo(f"the entry was shared by {outcome.request.forwarded_to}: the request "
                       "goes there in the next bundle and is answered by that store")


@app.command("assign")
def assign(request: RequestArgument, as_user: AsOption,
           to: Annotated[str, typer.Option("--to", help="the manager who answers it")]) -> None:
    """Give a request or complaint to a manager (G-DSR-3)."""
    with registry() as ctx:
        done = requests.assign(ctx, actor=login(ctx, as_user),
                               request_id=requests.resolve(ctx, request), assignee=to,
                               now=utc_now())
    typer.echo(f"request {done.request_id} assigned to {to}")


@app.command("answer")
def answer(
    request: RequestArgument, as_user: AsOption, reason: ReasonOption,
    features: Annotated[str | None, typer.Option(help="correction: the corrected features")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="disclosure: folder for the document (JA/EN) and the masked images")] = None,
) -> None:
    """Do what the request asks and record the answer (disclosure, correction, stop-use,
    erasure, objection, complaint)."""
    with registry() as ctx:
        actor = login(ctx, as_user)
        request_id = requests.resolve(ctx, request)
        document = None
        if requests.show(ctx, actor=actor, request_id=request_id).kind is RequestKind.DISCLOSURE:
            if out is None:
                raise typer.BadParameter("a disclosure answer needs --out FOLDER for the document")
            document = requests.disclosure(ctx, actor=actor, request_id=request_id)
        done = requests.answer(ctx, actor=actor, request_id=request_id, reason=reason,
                               now=utc_now(), features=features)
    if document is not None and out is not None:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(out / "disclosure.md", document.to_markdown().encode("utf-8"))
        for name, png in document.images.items():
            write_private_file(out / name, png)
        typer.echo(f"disclosure document written to {out / 'disclosure.md'} with "
                   f"{len(document.images)} masked image(s)")
        typer.echo("these files are outside mamoru's custody: no expiry job reaches them. "
                   "Hand them to the requester, then delete the folder")
    typer.echo(f"request {done.request_id} answered: {done.answer}")


@app.command("refuse")
def refuse(
    request: RequestArgument, as_user: AsOption, reason: ReasonOption,
    ground: Annotated[RefusalGround, typer.Option("--ground", help="the legal ground")],
    harm_justification: Annotated[str, typer.Option(
        "--harm-justification",
        help="G-DSR-1: for an entry held for nuisance acts only, the concrete harm "
             "disclosure would cause in this case (a nuisance act does not qualify by itself)",
    )] = "",
) -> None:
    """Refuse on a legal ground (APPI 33(2) for disclosure), with the reason (G-DSR-4)."""
    with registry() as ctx:
        done = requests.refuse(ctx, actor=login(ctx, as_user),
                               request_id=requests.resolve(ctx, request), ground=ground,
                               reason=reason, harm_justification=harm_justification,
                               now=utc_now())
    typer.echo(f"request {done.request_id} refused ({ground.value}); notify the requester "
               "without delay with the reason")


@app.command("list")
def list_requests(
    as_user: AsOption,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="only those past their due date")] = False,
    as_json: JsonOption = False,
) -> None:
    """Requests and complaints (no contact details), oldest first."""
    now = utc_now()
    with registry() as ctx:
        found = requests.list_requests(ctx, actor=login(ctx, as_user), now=now,
                                       overdue_only=overdue)
        rows = [requests.summary_row(ctx, r, now) for r in found]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        flag = "OVERDUE " if row["overdue"] else ""
        member = row["forwarded_to"] or row["from_member"] or ""
        typer.echo(f"{row['request_id'][:12]}  {row['kind']:<10} {row['status']:<9} "
                   f"due {row['due_at'][:10]} {flag}{member}")
    if not rows:
        typer.echo("no overdue requests" if overdue else "no requests")


@app.command("show")
def show(request: RequestArgument, as_user: AsOption, as_json: JsonOption = False) -> None:
    """One request in full, with the requester's contact (managers only)."""
    now = utc_now()
    with registry() as ctx:
        actor = login(ctx, as_user)
        found = requests.show(ctx, actor=actor, request_id=requests.resolve(ctx, request))
        row = {**requests.summary_row(ctx, found, now), "contact": found.contact,
               "summary": found.summary, "answer_reason": found.answer_reason}
    if as_json:
        typer.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    for key, value in row.items():
        typer.echo(f"{key:<16} {value}")


@review_app.command("list")
def review_list(as_user: AsOption,
                all_entries: Annotated[bool, typer.Option(
                    "--all", help="not only overdue")] = False,
                as_json: JsonOption = False) -> None:
    """Active entries whose review is due (見直しの機会)."""
    now = utc_now()
    with registry() as ctx:
        rows = [r.to_dict(now) for r in reviews.due_reviews(
            ctx, actor=login(ctx, as_user), now=now, overdue_only=not all_entries)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        typer.echo(f"{row['entry_id'][:12]}  review due {row['due_at'][:10]}"
                   f"{'  OVERDUE' if row['overdue'] else ''}")
    if not rows:
        typer.echo("no reviews due")


def _review(entry: str, as_user: str, reason: str, decision: ReviewDecision) -> None:
    with registry() as ctx:
        actor = login(ctx, as_user)
        entry_id = resolve_entry(ctx, entry)
        reviews.review(ctx, actor=actor, entry_id=entry_id, decision=decision, reason=reason,
                       now=utc_now())
    typer.echo(f"entry {entry_id} reviewed: {decision.value}")


@review_app.command("keep")
def review_keep(entry: Annotated[str, typer.Argument(help="entry id (6+ characters)")],
                as_user: AsOption, reason: ReasonOption) -> None:
    """Keep the entry; the reason says why it is still needed (not its proposer)."""
    _review(entry, as_user, reason, ReviewDecision.KEEP)


@review_app.command("withdraw")
def review_withdraw(entry: Annotated[str, typer.Argument(help="entry id (6+ characters)")],
                    as_user: AsOption, reason: ReasonOption) -> None:
    """Withdraw the entry on review; its face data is erased here and at every member."""
    _review(entry, as_user, reason, ReviewDecision.WITHDRAW)

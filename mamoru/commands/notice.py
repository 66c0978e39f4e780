"""`mamoru notice render --out DIR`: the public notice and the printable sign (G-NOT-2).

Writes `notice.html` (the page `GET /notice` serves, byte for byte) and
`notice-sign-a4.pdf` (the sign with a QR code to the notice URL), and records the
page's SHA-256 in the audit trail if it changed. Joint-use export refuses while
the recorded notice is older than the settings or the scheme it must describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kernel.durable import write_private_file
from mamoru.commands.session import registry
from mamoru.settings import ConfigError, get_settings
from registry.clock import utc_now
from registry.notice.content import notice_content
from registry.notice.publication import publish_notice
from registry.notice.sign import find_cjk_font, render_sign

app = typer.Typer(help="The public notice (お知らせ) and the A4 sign, from the configuration.",
                  no_args_is_help=True)

PAGE_FILE = "notice.html"
SIGN_FILE = "notice-sign-a4.pdf"


@app.command("render")
def render(
    out: Annotated[Path, typer.Option("--out", help="folder to write notice.html and the sign to")],
    url: Annotated[str | None, typer.Option(
        "--url", help="where the notice is published (the QR code's target); default "
                      "registry.notice.public_url")] = None,
) -> None:
    """Write the notice page and the A4 sign; record the page's SHA-256 if it changed."""
    target = url or get_settings().registry.notice.public_url
    if not target:
        raise ConfigError("the sign's QR code needs the notice URL: give --url or set "
                          "registry.notice.public_url (MAMORU_REGISTRY__NOTICE__PUBLIC_URL)")
    if not target.startswith(("https://", "http://")) or any(c.isspace() for c in target):
        raise ConfigError(f"--url must be an http(s) URL without spaces, got {target!r}")
    font = find_cjk_font()  # before anything is recorded: a missing font changes nothing
    with registry() as ctx:
        content = notice_content(ctx)
        sign = render_sign(content, target, font=font)
        publication = publish_notice(ctx, now=utc_now(), actor="notice-render")
    page = publication.page
    out.mkdir(parents=True, exist_ok=True)
    write_private_file(out / PAGE_FILE, page.body)
    write_private_file(out / SIGN_FILE, sign)
    for name in (PAGE_FILE, SIGN_FILE):
        (out / name).chmod(0o644)  # public documents
    typer.echo(f"notice {page.sha256} "
               + ("recorded in the audit trail" if publication.recorded
                  else "unchanged since the last record"))
    typer.echo(f"page: {out / PAGE_FILE}")
    typer.echo(f"sign: {out / SIGN_FILE} (QR code to {target})")

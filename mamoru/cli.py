"""The `mamoru` command line. Expected failures end in one line on stderr and exit 2."""

from __future__ import annotations

import os
import sys

import typer

from kernel.errors import RegistryError
from mamoru import terminal
from mamoru.commands import (
    audit,
    demo,
    devices,
    edge,
    emergency,
    faces,
    incident,
    joint_use,
    models,
    notice,
    registry,
    requests,
    serve,
    stores,
    users,
    watchlist,
)
from mamoru.inputs import InputFileError
from mamoru.settings import ConfigError
from models.carrier import FetchError, IntegrityError
from models.manifest import ManifestError
from models.packs import PackError

app = typer.Typer(
    name="mamoru",
    help="mamoru (守る): lawful face identification against shoplifting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.add_typer(faces.app, name="faces")
app.command("demo")(demo.run)
app.add_typer(registry.app, name="registry")
app.add_typer(registry.key_app, name="key")
app.add_typer(users.app, name="user")
app.add_typer(stores.app, name="store")
app.add_typer(watchlist.app, name="watchlist")
app.add_typer(audit.app, name="audit")
app.add_typer(devices.app, name="device")
app.command("serve")(serve.serve)
app.add_typer(edge.app, name="edge")
app.add_typer(joint_use.app, name="joint-use")
app.add_typer(emergency.app, name="emergency-share")
app.add_typer(notice.app, name="notice")
app.add_typer(requests.app, name="request")
app.add_typer(requests.review_app, name="review")
app.add_typer(incident.app, name="incident")
for command in (watchlist.propose, watchlist.approve, watchlist.reject, watchlist.correct,
                watchlist.withdraw, watchlist.reoffend, watchlist.erase, audit.expire,
                registry.backup, registry.restore):
    app.command(command.__name__)(command)

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    FetchError,
    InputFileError,  # BadImageError too
    IntegrityError,
    ManifestError,
    PackError,
    RegistryError,
)


def main() -> None:
    """Entry point of the console script.

    Everything this process creates is the owner's alone (umask 077), also
    what a library writes behind mamoru's back (SQLite's journal, logs):
    defence in depth for the 0600/0700 modes the registry sets itself (G-SEC-2).
    """
    os.umask(0o077)
    terminal.install()  # stored text is shown escaped, never obeyed by the terminal
    try:
        app()
    except USER_ERRORS as exc:
        sys.stderr.write(f"mamoru: error: {exc}\n")
        raise SystemExit(2) from None

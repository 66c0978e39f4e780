"""Opening the registry and logging in for one CLI command.

Passwords come from `MAMORU_PASSWORD` (the password of `--as`) or
`MAMORU_NEW_PASSWORD` (a password being set: `registry init`, `user add`) or
an interactive prompt, never from a command-line argument (which would land
in shell history and `ps`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from kernel.errors import NotFoundError, RuleViolationError
from mamoru.settings import get_settings
from mamoru.wiring import job_lock, open_registry_from
from registry.accounts.users import authenticate
from registry.context import RegistryContext
from registry.domain import User

AsOption = Annotated[
    str, typer.Option("--as", help="your user name (password: MAMORU_PASSWORD or prompt)")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


PASSWORD_CREDENTIAL = "mamoru-password"


def read_password(prompt: str = "Password") -> str:
    """MAMORU_PASSWORD, else the unit's `mamoru-password` credential, else a prompt.

    The timers' operator passwords are systemd credentials sealed like the
    master key (`LoadCredentialEncrypted=mamoru-password:...`): decrypted by
    systemd into this unit's private credentials folder, never in the clear on disk.
    """
    from_env = os.environ.get("MAMORU_PASSWORD")
    if from_env is not None:
        return from_env
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / PASSWORD_CREDENTIAL).is_file():
        return (Path(credentials) / PASSWORD_CREDENTIAL).read_text(encoding="utf-8").rstrip("\n")
    return str(typer.prompt(prompt, hide_input=True))


def read_new_password(username: str) -> str:
    """The password to set for `username`: `MAMORU_NEW_PASSWORD`, else typed twice.

    Never `MAMORU_PASSWORD`: that is the password of the person running the
    command, not the one they are setting for someone else.
    """
    from_env = os.environ.get("MAMORU_NEW_PASSWORD")
    if from_env:
        return from_env
    return str(typer.prompt(f"New password for {username}", hide_input=True,
                            confirmation_prompt=True))


@contextmanager
def registry() -> Iterator[RegistryContext]:
    """The configured registry, closed on every path out of the command."""
    with open_registry_from(get_settings()) as context:
        yield context


@contextmanager
def scheduled_job(job: str) -> Iterator[bool]:
    """True while this run holds `job` (a `registry.jobs` name); False if another run does.

    The lock is the configured registry's (`mamoru.wiring.job_lock`): a file
    next to its SQLCipher database, or an advisory lock in the chain's
    PostgreSQL database that every host's timer meets.
    """
    with job_lock(get_settings(), job) as held:
        yield held


def already_running(command: str) -> None:
    """What a second start of a scheduled job says before it exits 0 (the job is being done)."""
    typer.echo(f"{command}: already running (another run holds the job lock); nothing to do")


def login(ctx: RegistryContext, username: str) -> User:
    return authenticate(ctx.repo, username, read_password(f"Password for {username}"))


def resolve_entry(ctx: RegistryContext, prefix: str) -> str:
    """Accept a unique prefix of an entry id (at least 6 characters), as git does for commits."""
    prefix = prefix.strip().lower()
    if len(prefix) < 6:
        raise RuleViolationError("give at least 6 characters of the entry id")
    matches = [e.entry_id for e in ctx.repo.entries() if e.entry_id.startswith(prefix)]
    if not matches:
        raise NotFoundError(f"no entry id starts with {prefix}")
    if len(matches) > 1:
        raise RuleViolationError(f"{prefix} matches {len(matches)} entries; give more characters")
    return matches[0]

"""PostgreSQL's own tools on the chain database: `pg_dump` out, `pg_restore` + `psql` back in.

A backup of the chain registry is `pg_dump -Fc` of the whole database as its
owner role. The dump holds what the database holds, and the database never
sees a personal value in the clear: every column of `PERSONAL_COLUMNS`
(templates, names, reasons, evidence PNGs) is ciphertext the application
sealed, so the dump is too (`registry.backup.archive` seals it once more as a
whole under the backup key).

The dump is taken in a snapshot exported by a REPEATABLE READ transaction,
so the audit sequence number read in that transaction is exactly the last
record the dump saw: a restore re-applies every erasure after it.

A restore puts back the `registry` schema's rows only, in one transaction:
its tables are emptied and refilled in foreign-key order (`pg_restore -L`
with a reordered list, piped into `psql`). The `audit` schema is never
restored: it is append-only for every role, and it is what still holds the
erasures made since the snapshot (as `audit.db` on one box, G-REG-4). The key
canary and the schema version stay as they are: the backup is sealed under
the current key, and one of another schema version is refused before this
runs.

Passwords reach the tools in their environment (`PGPASSWORD`) only: never
on a command line (where `ps` shows it), in a log line or an exception.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import RegistryError
from registry.config import PostgresSettings
from registry.storage.postgres.base import PgConnection
from registry.storage.postgres.cluster import BINDIR_ENV, DEBIAN_ROOT, find_bindir
from registry.storage.postgres.opened import connect, read_password_file

TOOL_TIMEOUT_S = 3600
# Rows that are not restored: the schema's own version and key canary stay the live ones;
# rate-limit counters are worth a minute and are not dumped at all.
KEPT_TABLES = frozenset({"schema_migrations", "key_canary", "rate_limit_hits"})
NOT_DUMPED = ("registry.rate_limit_hits",)
_LIST_ITEM = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) (\S+) (\S+) ")


class DumpError(RegistryError):
    """pg_dump, pg_restore or psql failed, or is missing; the message names which and why."""


@dataclass(frozen=True)
class Snapshot:
    """What the dump saw: the last audit record and the watchlist version in its snapshot."""

    audit_seq: int
    watchlist_version: int
    schema_version: int


def client_bindir() -> Path:
    """The folder of pg_dump, pg_restore and psql: the override, Debian's newest, or PATH."""
    found = find_bindir(("pg_dump", "pg_restore", "psql"))
    if found is None:
        raise DumpError("PostgreSQL's client tools (pg_dump, pg_restore, psql) were not found in "
                        f"{DEBIAN_ROOT}/<version>/bin or on PATH: install the Debian package "
                        f"`postgresql-client` or set {BINDIR_ENV}")
    return found


def _environment(settings: PostgresSettings, user: str, password: str) -> dict[str, str]:
    """The connection, TLS verify-full included, as libpq environment variables only."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**inherited, "PGHOST": settings.host, "PGPORT": str(settings.port),
            "PGDATABASE": settings.dbname, "PGUSER": user, "PGPASSWORD": password,
            "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(settings.ca_file),
            "PGCONNECT_TIMEOUT": str(settings.connect_timeout_s),
            "PGAPPNAME": "mamoru-backup", "PGOPTIONS": "-c TimeZone=UTC"}


def _run(tool: str, args: Sequence[str], env: Mapping[str, str], password: str, *,
         stdin: bytes | None = None) -> bytes:
    """Run one client tool; its stdout, or a `DumpError` with the last line of its stderr."""
    command = [str(client_bindir() / tool), *args]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, env=dict(env),
                              timeout=TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DumpError(f"{tool} did not finish within {TOOL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.decode(errors="replace").splitlines()
                 if line.strip()]
        why = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise DumpError(f"{tool} failed: {why}".replace(password, "***"))
    return done.stdout


@dataclass(frozen=True)
class OwnerAccess:
    """The chain database as its owner role: who dumps and restores it."""

    settings: PostgresSettings
    owner: str
    password_file: Path

    def password(self) -> str:
        return read_password_file(self.password_file)

    def connect(self) -> PgConnection:
        return connect(self.settings, user=self.owner, password_file=self.password_file)

    def environment(self) -> tuple[dict[str, str], str]:
        password = self.password()
        return _environment(self.settings, self.owner, password), password


@contextmanager
def _exported_snapshot(conn: PgConnection) -> Iterator[tuple[str, Snapshot]]:
    """A REPEATABLE READ transaction held open while pg_dump reads its exported snapshot."""
    conn.autocommit = False
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM audit.records").fetchone()
        version = conn.execute("SELECT value FROM registry.meta WHERE key = "
                               "'watchlist_version'").fetchone()
        schema = conn.execute("SELECT coalesce(max(version), 0) FROM registry.schema_migrations"
                              ).fetchone()
        assert row is not None and seq is not None and schema is not None
        yield str(row[0]), Snapshot(int(seq[0]), int(version[0]) if version else 0,
                                    int(schema[0]))
    finally:
        conn.rollback()


def dump_database(access: OwnerAccess, target: Path) -> Snapshot:
    """`pg_dump -Fc` of the whole chain database into `target`; what its snapshot saw."""
    env, password = access.environment()
    with access.connect() as conn, _exported_snapshot(conn) as (snapshot_id, seen):
        # Fast gzip: the sealed columns are ciphertext, but COPY writes bytea as hex (twice
        # the bytes), which level 1 brings back near the ciphertext's size.
        args = ["--format=custom", "--compress=1", "--no-password", f"--snapshot={snapshot_id}",
                f"--file={target}"]
        args += [f"--exclude-table-data={table}" for table in NOT_DUMPED]
        _run("pg_dump", args, env, password)
    return seen


def _tables_in_dependency_order(conn: PgConnection) -> list[str]:
    """The registry's tables, each after every table its foreign keys point to."""
    tables = [str(r[0]) for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'registry' AND c.relkind = 'r' ORDER BY c.relname").fetchall()]
    needs: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in conn.execute(
            "SELECT c.relname, p.relname FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE k.contype = 'f' AND n.nspname = 'registry'").fetchall():
        if child != parent:
            needs[str(child)].add(str(parent))
    ordered: list[str] = []
    while needs:
        ready = sorted(t for t, parents in needs.items() if parents <= set(ordered))
        if not ready:
            raise DumpError(f"circular foreign keys among {sorted(needs)}")
        ordered += ready
        for table in ready:
            del needs[table]
    return ordered


def _restore_list(listing: str, order: Sequence[str]) -> str:
    """The archive's data items of the registry schema, tables in `order`, then sequences."""
    rank = {name: i for i, name in enumerate(order)}
    tables: list[tuple[int, str]] = []
    sequences: list[str] = []
    for line in listing.splitlines():
        match = _LIST_ITEM.match(line)
        if match is None or match.group(2) != "registry" or match.group(3) in KEPT_TABLES:
            continue
        if match.group(1) == "SEQUENCE SET":
            sequences.append(line)
        elif match.group(3) in rank:
            tables.append((rank[match.group(3)], line))
        else:
            raise DumpError(f"the backup holds a table registry.{match.group(3)} this "
                            "registry does not have")
    return "\n".join([line for _, line in sorted(tables)] + sequences) + "\n"


def restore_registry_rows(access: OwnerAccess, dump: Path, scratch: Path) -> None:
    """Replace every row of the registry schema by the dump's, in one transaction.

    The audit schema, the schema version and the key canary are left as
    they are (module docstring). If anything fails, nothing changed.
    """
    env, password = access.environment()
    with access.connect() as conn:
        order = _tables_in_dependency_order(conn)
    emptied = [t for t in order if t not in KEPT_TABLES]
    listing = _run("pg_restore", ["--list", str(dump)], env, password).decode()
    list_file = scratch / "restore.list"
    list_file.write_text(_restore_list(listing, order), encoding="utf-8")
    restore = ["--data-only", "--no-owner", "--no-privileges", f"--use-list={list_file}",
               "--file=-", str(dump)]
    truncate = "TRUNCATE " + ", ".join(f"registry.{t}" for t in emptied) + ";\n"
    _pipe_into_psql(restore, f"BEGIN;\n{truncate}".encode(), env, password)


def _pipe_into_psql(restore_args: Sequence[str], before: bytes, env: Mapping[str, str],
                    password: str) -> None:
    """`before`, then pg_restore's SQL streamed into psql; COMMIT only if pg_restore finished.

    Streamed, not held: the script of a large registry is gigabytes (bytea as hex). A
    pg_restore that fails midway gets no COMMIT: psql's end of input rolls everything back.
    """
    bindir = client_bindir()
    psql = subprocess.Popen(
        [str(bindir / "psql"), "--no-psqlrc", "--quiet", "--no-password",
         "--set=ON_ERROR_STOP=1", "--file=-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(env))
    with tempfile.TemporaryFile() as restore_errors:
        restore = subprocess.Popen([str(bindir / "pg_restore"), *restore_args],
                                   stdout=subprocess.PIPE, stderr=restore_errors,
                                   env=dict(env))
        assert psql.stdin is not None and restore.stdout is not None
        try:
            psql.stdin.write(before)
            shutil.copyfileobj(restore.stdout, psql.stdin, 1 << 20)
            restored = restore.wait(TOOL_TIMEOUT_S)
            if restored == 0:
                psql.stdin.write(b"\nCOMMIT;\n")
        except BrokenPipeError:  # psql stopped on an error: its stderr says which
            restored = restore.wait(TOOL_TIMEOUT_S)
        finally:
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()
            restore.stdout.close()
            if restore.poll() is None:
                restore.kill()
        assert psql.stderr is not None
        psql_errors = psql.stderr.read()  # small: psql stops at the first error
        psql.wait(TOOL_TIMEOUT_S)
        psql.stderr.close()
        restore_errors.seek(0)
        failures = [("psql", psql.returncode, psql_errors),
                    ("pg_restore", restored, restore_errors.read())]
    for tool, code, errors in failures:
        if code != 0:
            lines = [line for line in errors.decode(errors="replace").splitlines()
                     if line.strip()]
            why = lines[-1].strip() if lines else f"exit status {code}"
            raise DumpError(f"{tool} failed, nothing was restored: {why}".replace(password,
                                                                                 "***"))

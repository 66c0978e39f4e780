"""A throw-away PostgreSQL cluster in a temporary folder, for tests and benchmarks.

    with ThrowawayCluster() as cluster:
        db = cluster.create_database("chain")          # its owner and app roles
        migrate(db.connect_owner(), app_role=db.app)    # schema.migrate
        with db.connect_app() as conn: ...

Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, package
`postgresql`, installed by `make system-deps`) run `initdb` and `pg_ctl` on a
folder of their own that `stop()` removes. The cluster is set up the way the
chain's production database must be (issue 15, item 2), so the tests exercise
the real thing:

- it listens on 127.0.0.1 on a free port only, plus a Unix socket inside the
  folder (mode 0700), and nowhere else;
- TCP is TLS 1.3 only, with a certificate generated here for `localhost` and
  127.0.0.1; clients connect with `sslmode=verify-full` against it (`ca_file`);
- `pg_hba.conf` lets the login roles (members of `LOGIN_GROUP`) in over
  `hostssl` with SCRAM-SHA-256 and nothing else over TCP (no `trust`, no plain
  TCP); the bootstrap superuser comes in over the Unix socket only, with SCRAM;
- passwords are random per cluster and reach the server as SCRAM verifiers
  computed by libpq, never in the clear.

`initdb` refuses to run as root. When this process is root (the test machines
run as root) the server runs as the `postgres` account Debian's package
creates (or `nobody`), which owns the folder; as any other user it runs as
that user. If the process dies without `stop()`, the postmaster notices its
lock file gone once the folder is removed and shuts itself down (it checks
once a minute).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg.conninfo import make_conninfo

from registry.storage.postgres.schema import LOGIN_GROUP, RoleNames, provision

BINDIR_ENV = "MAMORU_PG_BINDIR"  # where initdb and pg_ctl are, if not Debian's folder
DEBIAN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "mamoru_superuser"  # the bootstrap superuser: Unix socket only
SERVICE_ACCOUNTS = ("postgres", "nobody")  # who runs the server when we are root
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
HOST = "127.0.0.1"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ClusterError(RuntimeError):
    """The throw-away cluster could not be set up, started or stopped."""


def find_bindir(tools: tuple[str, ...]) -> Path | None:
    """The folder holding all of `tools`: $MAMORU_PG_BINDIR, else Debian's newest
    `/usr/lib/postgresql/<version>/bin`, else where the first tool is on PATH."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates = [Path(override)]
    else:
        versions = sorted(DEBIAN_ROOT.glob(f"*/bin/{tools[0]}"),
                          key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                          else -1)
        candidates = [p.parent for p in reversed(versions)]
        on_path = shutil.which(tools[0])
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    return next((folder for folder in candidates
                 if all((folder / tool).is_file() for tool in tools)), None)


def server_bindir() -> Path:
    """The folder of `initdb`, `pg_ctl` and `postgres`: the newest Debian version, or PATH."""
    found = find_bindir(("initdb", "pg_ctl", "postgres"))
    if found is None:
        raise ClusterError(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found in "
            f"{DEBIAN_ROOT}/<version>/bin or on PATH: run `make system-deps` (Debian package "
            f"`postgresql`) or set {BINDIR_ENV}"
        )
    return found


@dataclass(frozen=True)
class ServiceAccount:
    """The account the server runs as when this process is root (initdb refuses root)."""

    name: str
    uid: int
    gid: int


def service_account() -> ServiceAccount | None:
    """None when we are not root (the server runs as us), else `postgres` or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_ACCOUNTS:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return ServiceAccount(name, entry.pw_uid, entry.pw_gid)
    raise ClusterError(
        "running as root, and PostgreSQL refuses to: no account "
        f"{' or '.join(SERVICE_ACCOUNTS)} to run it as; run the tests as an ordinary user"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_alive(pid: int) -> bool:
    """Whether `pid` runs: not gone and not a zombie (an init that reaps nothing keeps the
    exited postmaster, whose parent was `pg_ctl`, as a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _certificate(now: datetime) -> tuple[bytes, bytes]:
    """A self-signed EC P-256 server certificate for localhost and 127.0.0.1 (PEM cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mamoru test cluster")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@dataclass(frozen=True)
class ProcessUsage:
    """What the cluster's processes use now: RSS counts shared buffers once per process
    that touched them, PSS splits them (the honest sum)."""

    processes: int
    rss_bytes: int
    pss_bytes: int
    cpu_seconds: float  # user + system, including exited backends


@dataclass(frozen=True)
class Database:
    """One database of the cluster, its owner role (migrations) and its application role."""

    name: str
    port: int
    ca_file: Path
    roles: RoleNames
    owner_password: str = field(repr=False)
    app_password: str = field(repr=False)

    @property
    def owner(self) -> str:
        return self.roles.owner

    @property
    def app(self) -> str:
        return self.roles.app

    def conninfo(self, user: str, password: str, **extra: str) -> str:
        """A libpq connection string: TCP, TLS verified against the cluster's certificate
        (`verify-full`: 127.0.0.1 must be named in it); `extra` adds or overrides keywords."""
        return make_conninfo(
            "", **{"host": HOST, "port": str(self.port), "dbname": self.name, "user": user,
                   "password": password, "sslmode": "verify-full",
                   "sslrootcert": str(self.ca_file), "connect_timeout": "10", **extra})

    def connect_owner(self, **extra: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo(self.owner, self.owner_password, **extra))

    def connect_app(self, **extra: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo(self.app, self.app_password, **extra))


class ThrowawayCluster:
    """One PostgreSQL cluster in its own temporary folder, removed by `stop()`.

    `durable=False` (tests) turns fsync off: a crash loses the folder anyway.
    Benchmarks that measure PostgreSQL pass `durable=True`. `settings` are
    extra `postgresql.conf` lines (name -> value, quoted by the caller).
    """

    def __init__(self, *, durable: bool = False, max_connections: int = 100,
                 settings: Mapping[str, str] | None = None) -> None:
        self.durable = durable
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.bindir = server_bindir()
        self.account = service_account()
        self.root: Path | None = None
        self.port = 0
        self._superuser_password = ""

    # -- paths ------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if self.root is None:
            raise ClusterError("the cluster is not started")
        return self.root / name

    @property
    def data_dir(self) -> Path:
        return self._path("data")

    @property
    def socket_dir(self) -> Path:
        return self._path("socket")

    @property
    def ca_file(self) -> Path:
        """The server's certificate, which clients trust (it is self-signed)."""
        return self._path("server.crt")

    @property
    def log_file(self) -> Path:
        return self._path("server.log")

    @property
    def running(self) -> bool:
        return self.postmaster_pid() is not None

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> ThrowawayCluster:
        """initdb, configure, start; returns once the server accepts connections."""
        if self.root is not None:
            return self
        self.root = Path(tempfile.mkdtemp(prefix="mamoru-pg-"))
        try:
            self._initdb()
            self._configure()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and remove the folder."""
        if self.root is None:
            return
        try:
            if self.postmaster_pid() is not None:
                try:
                    self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S))
                except ClusterError:
                    self._pg_ctl("stop", "-m", "immediate", "-w", "-t", str(STOP_TIMEOUT_S))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- databases --------------------------------------------------------------------
    def connect_superuser(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """The bootstrap superuser over the Unix socket (for provisioning only)."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, dbname=dbname,
                               user=SUPERUSER, password=self._superuser_password,
                               autocommit=True)

    def create_database(self, name: str) -> Database:
        """A new, empty database with its own owner and application roles (`schema.provision`)."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
        roles = RoleNames(database=name, owner=f"{name}_owner", app=f"{name}_app")
        owner_password, app_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self.connect_superuser() as conn:
            provision(conn, roles, owner_password=owner_password, app_password=app_password)
        return Database(name, self.port, self.ca_file, roles, owner_password, app_password)

    # -- measuring --------------------------------------------------------------------
    def postmaster_pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        if self.root is None:
            return None
        try:
            pid = int(self.data_dir.joinpath("postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def process_ids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def usage(self) -> ProcessUsage:
        """Memory and CPU of the cluster's processes now (Linux /proc)."""
        pids = self.process_ids()
        rss = pss = 0
        ticks = 0
        tick_s = os.sysconf("SC_CLK_TCK")
        for index, pid in enumerate(pids):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # utime, stime (fields 14, 15); for the postmaster also its reaped children's
                ticks += int(fields[11]) + int(fields[12])
                if index == 0:
                    ticks += int(fields[13]) + int(fields[14])
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("Rss", "Pss"):
                        amount = int(value.split()[0]) * 1024
                        rss, pss = (rss + amount, pss) if key == "Rss" else (rss, pss + amount)
        return ProcessUsage(len(pids), rss, pss, ticks / tick_s)

    # -- internals --------------------------------------------------------------------
    def _run(self, command: Sequence[str], what: str) -> None:
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self._path(".")),
               "TZ": "UTC"}
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}
        result = subprocess.run(list(command), env=env, capture_output=True, text=True,
                                timeout=READY_TIMEOUT_S, check=False, cwd=self._path("."),
                                **kwargs)  # type: ignore[call-overload]
        if result.returncode != 0:
            log = ""
            if self.root is not None and self.log_file.exists():
                log = "\n" + self.log_file.read_text()[-2000:]
            raise ClusterError(f"{what} failed (exit code {result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}{log}")

    def _own(self, *paths: Path) -> None:
        """Give folder and files to the server's account (it refuses a key it does not own)."""
        if self.account is None:
            return
        for path in paths:
            os.chown(path, self.account.uid, self.account.gid)

    def _initdb(self) -> None:
        root = self._path(".")
        root.chmod(0o700)
        self._superuser_password = secrets.token_urlsafe(24)
        password_file = root / "superuser.pw"
        password_file.write_text(self._superuser_password + "\n")
        password_file.chmod(0o600)
        self._own(root, password_file)
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                       f"--pwfile={password_file}", "--auth-local=scram-sha-256",
                       "--auth-host=reject", "-E", "UTF8", "--no-locale", "--no-sync",
                       "--no-instructions"], "initdb")
        finally:
            password_file.unlink()

    def _configure(self) -> None:
        root = self._path(".")
        cert_pem, key_pem = _certificate(datetime.now(UTC))
        self.ca_file.write_bytes(cert_pem)
        key_file = root / "server.key"
        key_file.write_bytes(key_pem)
        key_file.chmod(0o600)
        self.socket_dir.mkdir(mode=0o700)
        self.log_file.touch(mode=0o600)
        self._own(self.ca_file, key_file, self.socket_dir, self.log_file)
        self.data_dir.joinpath("pg_hba.conf").write_text(
            "# TYPE   DATABASE USER              ADDRESS       METHOD\n"
            f"local     all      {SUPERUSER:<17} {'':<13} scram-sha-256\n"
            f"hostssl   all      +{LOGIN_GROUP:<16} {HOST}/32  scram-sha-256\n"
            "hostnossl all      all               0.0.0.0/0     reject\n"
        )
        lines = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            "ssl": "on",
            "ssl_cert_file": f"'{self.ca_file}'",
            "ssl_key_file": f"'{key_file}'",
            "ssl_min_protocol_version": "'TLSv1.3'",
            "password_encryption": "'scram-sha-256'",
            "max_connections": str(self.max_connections),
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
        }
        if not self.durable:
            lines.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        lines.update(self.settings)
        with self.data_dir.joinpath("postgresql.conf").open("a") as conf:
            conf.write("\n# mamoru throw-away cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())

    def _start_server(self) -> None:
        """pg_ctl start on a free port; another port if that one was taken meanwhile."""
        for attempt in range(3):
            self.port = free_port()
            try:
                self._pg_ctl("start", "-w", "-t", str(READY_TIMEOUT_S), "-l", str(self.log_file),
                             "-o", f"-p {self.port}")
                break
            except ClusterError as error:
                if attempt == 2 or "could not bind" not in str(error):
                    raise
        # pg_ctl -w returned once the postmaster reported itself ready: one connection
        # proves it is ours and that the superuser's password works.
        try:
            self.connect_superuser().close()
        except psycopg.OperationalError as error:
            raise ClusterError(f"the cluster started but refused its superuser: {error}"
                               ) from None

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args],
                  f"pg_ctl {args[0]}")

"""`mamoru serve`: the registry's HTTPS API and tablet pages, for edge boxes and staff.

HTTPS by default, with a certificate generated on this machine on first run
(`<data_dir>/tls/`, see `mamoru.tls`) or the store's own (`--cert/--key`).
Plain HTTP only when asked for explicitly, and only on a loopback address,
where no other machine can reach it (a box on the same host, the demo, tests).

`--workers N` runs N processes sharing the port (uvicorn's supervisor, each
worker started fresh with `spawn` and building its app with `worker_app`
from the same settings): each opens its own registry connection and loads
its own face engine (memory: one engine per worker, see the README). What
must hold across workers lives in the registry database (sessions, login
lockouts, the boxes' status reports) and where `mamoru.wiring.rate_limit_store`
puts the rate limits: the chain's PostgreSQL database, whose counters every
worker of every host shares, or on SQLCipher the file this host's workers
count in (`<data_dir>/ratelimit.db`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mamoru.settings import ConfigError, MamoruSettings, get_settings
from mamoru.tls import TlsFiles, ensure_certificate, load_certificate, server_context
from mamoru.wiring import api_host, key_custody, key_passphrase, open_engine, open_registry_from
from registry.api.host import ApiHost
from registry.keys.custody import WrappedKeyFile

if TYPE_CHECKING:
    from fastapi import FastAPI

MAX_WORKERS = 64
WORKER_APP = "mamoru.commands.serve:worker_app"  # what each worker process imports

KEEP_ALIVE_S = 75  # longer than any box's poll or report interval
# uvicorn's supervisor pings each worker and kills one that has not answered within this many
# seconds as hung. Its default, 5 s, killed healthy workers in start-up (imports, the face
# engine) on a busy 2-core box, again and again ("Child process died" in the log) until the
# load went: a worker that is really hung is still replaced, a minute later.
WORKER_HEALTHCHECK_S = 60


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _url(scheme: str, host: str, port: int) -> str:
    shown = socket.gethostname() if _is_wildcard(host) else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}/"


def _tls_files(data_dir: Path, host: str, cert: Path | None, key: Path | None) -> TlsFiles:
    if (cert is None) != (key is None):
        raise ConfigError("give both --cert and --key (the store's own certificate), or neither")
    if cert is not None and key is not None:
        return load_certificate(cert, key)
    extra = () if _is_wildcard(host) or is_loopback(host) else (host,)
    return ensure_certificate(data_dir / "tls", extra_names=extra)


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8443,
    cert: Annotated[Path | None, typer.Option(
        help="the store's own certificate (PEM); default: one generated in <data_dir>/tls")] = None,
    key: Annotated[Path | None, typer.Option(help="its private key (PEM, mode 0600)")] = None,
    insecure_http: Annotated[bool, typer.Option(
        "--insecure-http", help="serve plain HTTP (loopback addresses only)")] = False,
    workers: Annotated[int, typer.Option(
        min=1, max=MAX_WORKERS,
        help="worker processes sharing the port; each loads its own face engine")] = 1,
) -> None:
    """Serve the registry API (edge alerts, index download, tablet pages) until stopped."""
    if insecure_http and not is_loopback(host):
        raise ConfigError(
            f"--insecure-http is refused on {host}, which is not a loopback address: passwords, "
            "device tokens and snapshots would cross the network unencrypted; use 127.0.0.1 or ::1"
        )
    if insecure_http and (cert or key):
        raise ConfigError("--insecure-http serves no certificate; drop --cert/--key or the flag")
    import uvicorn

    from registry.api.app import create_app

    settings = get_settings()
    tls = None if insecure_http else _tls_files(settings.data_dir, host, cert, key)
    if workers > 1:
        _share_passphrase(settings)
    # Fail here, in one line, rather than inside the server's start-up with a traceback.
    open_registry_from(settings).close()
    if tls is None:
        typer.echo(f"serving plain HTTP on loopback only: {_url('http', host, port)}")
        ssl: dict[str, object] = {}
    else:
        made = f"new self-signed certificate in {tls.cert.parent}" if tls.created else str(tls.cert)
        typer.echo(f"serving {_url('https', host, port)}")
        typer.echo(f"certificate: {made}, valid until {tls.not_after.date().isoformat()} for "
                   f"{', '.join(tls.names)}")
        typer.echo(f"certificate SHA-256 fingerprint: {tls.fingerprint_sha256}")
        if not _is_wildcard(host) and not is_loopback(host) and host not in tls.names:
            typer.echo(f"warning: the certificate is not valid for {host}", err=True)
        ssl = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key),
               "ssl_context_factory": TlsContextFactory(tls)}
    # Boxes poll every few seconds and report status every half minute: a connection kept
    # open longer than that is reused instead of paying a TLS handshake per request
    # (uvicorn's default of 5 s closed it between polls, and a request could meet a
    # connection being closed under it).
    options: dict[str, Any] = {"host": host, "port": port, "server_header": False,
                               "proxy_headers": False, "log_level": "info",
                               "timeout_keep_alive": KEEP_ALIVE_S, **ssl}
    if workers == 1:
        engine = open_engine(settings)
        uvicorn.run(create_app(api_host(settings, engine=engine)), **options)
        return
    typer.echo(f"{workers} worker processes, each with its own face engine")
    _run_workers(uvicorn.Config(WORKER_APP, factory=True, workers=workers,
                                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, **options))


def _run_workers(config: Any) -> None:  # uvicorn.Config
    """uvicorn's supervisor over `config.workers` processes; one line if a worker cannot start.

    (uvicorn.run with workers > 1 would exit 0 after a worker's failed start.)
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise ConfigError("a worker failed to start (its error is in the log above); stopped")


def _share_passphrase(settings: MamoruSettings) -> None:
    """A passphrase-wrapped master key is asked for once, here, not by each worker.

    The workers read it from MAMORU_KEY_PASSPHRASE, as a unit without a
    terminal does; it stays in this process tree's environment only.
    """
    if "MAMORU_KEY_PASSPHRASE" not in os.environ and isinstance(key_custody(settings),
                                                                 WrappedKeyFile):
        os.environ["MAMORU_KEY_PASSPHRASE"] = key_passphrase()


def shared_host(settings: MamoruSettings) -> ApiHost:
    """The API host of one of several workers: rate limits counted where every worker counts.

    The face engine is opened by the app when the worker starts (one per
    worker). Where the counts live is decided by `registry.storage`
    (`mamoru.wiring.rate_limit_store`).
    """
    return api_host(settings, several_workers=True)


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker process: the app, from the same settings as the parent."""
    from registry.api.app import create_app

    return create_app(shared_host(get_settings()))


@dataclass(frozen=True)
class TlsContextFactory:
    """uvicorn's hook for its TLS context: ours (`mamoru.tls.server_context`), not its default.

    A module-level class, not a closure: with several workers uvicorn pickles
    its configuration into each spawned process, and each builds its context.
    """

    files: TlsFiles

    def __call__(self, config: Any, default: Callable[[], SSLContext]) -> SSLContext:
        return server_context(self.files)

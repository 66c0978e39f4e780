"""`mamoru serve`: the registry's HTTPS API and tablet pages, for edge boxes and staff.

HTTPS by default, with a certificate generated on this machine on first run
(`<data_dir>/tls/`, see `mamoru.tls`) or the store's own (`--cert/--key`).
Plain HTTP only when asked for explicitly, and only on a loopback address,
where no other machine can reach it (a box on the same host, the demo, tests).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from ssl import SSLContext
from typing import Annotated, Any

import typer

from mamoru.settings import ConfigError, get_settings
from mamoru.tls import TlsFiles, ensure_certificate, load_certificate, server_context
from mamoru.wiring import api_host, open_engine, open_registry_from


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
    # Fail here, in one line, rather than inside the server's start-up with a traceback.
    open_registry_from(settings).close()
    engine = open_engine(settings)
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
               "ssl_context_factory": _context_factory(tls)}
    uvicorn.run(create_app(api_host(settings, engine=engine)), host=host, port=port,
                server_header=False, proxy_headers=False, log_level="info", **ssl)  # type: ignore[arg-type]


def _context_factory(files: TlsFiles) -> Callable[[Any, Callable[[], SSLContext]], SSLContext]:
    """uvicorn's hook for its TLS context: ours (`mamoru.tls.server_context`), not its default."""

    def factory(config: Any, default: Callable[[], SSLContext]) -> SSLContext:
        return server_context(files)

    return factory

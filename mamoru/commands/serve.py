"""`mamoru serve`: the registry's HTTP API for the in-store edge boxes.

TLS with a locally generated certificate comes next; until then plain HTTP
is served only when asked for explicitly, and only on a loopback address,
where no other machine can reach it (a box on the same host, or tests).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from mamoru.settings import ConfigError, get_settings
from mamoru.wiring import open_registry_from


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8443,
    insecure_http: Annotated[bool, typer.Option(
        "--insecure-http", help="serve plain HTTP (loopback addresses only)")] = False,
) -> None:
    """Serve the registry API (edge alerts, index download) until stopped."""
    if not insecure_http:
        raise ConfigError(
            "TLS serving is not implemented yet; for now use --insecure-http on a loopback "
            "address (127.0.0.1 or ::1)"
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--insecure-http is refused on {host}, which is not a loopback address: device "
            "tokens and snapshots would cross the network unencrypted; use 127.0.0.1 or ::1"
        )
    import uvicorn

    from registry.api.app import create_app

    settings = get_settings()
    # Fail here, in one line, rather than inside the server's start-up with a traceback.
    open_registry_from(settings).close()
    uvicorn.run(create_app(settings), host=host, port=port, server_header=False,
                proxy_headers=False, log_level="info")

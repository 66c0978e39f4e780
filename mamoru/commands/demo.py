"""`mamoru demo`: the main job on the embedded default, end to end on this machine."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from mamoru.demo.cameras import free_port
from mamoru.demo.runner import run_demo
from mamoru.settings import get_settings


def run(
    port: Annotated[int, typer.Option(help="port of the tablet pages; 0 picks a free one")] = 8080,
    exit_after_alert: Annotated[
        bool,
        typer.Option("--exit-after-alert", help="stop once the first alert reached the registry"),
    ] = False,
    max_seconds: Annotated[float | None, typer.Option(help="stop after this long")] = None,
) -> None:
    """Registry, two-person registration, RTSP camera, edge loop and tablet: all real, all local."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if max_seconds:
        timer = threading.Timer(max_seconds, stop.set)
        timer.daemon = True
        timer.start()
    result = run_demo(get_settings(), port=port or free_port(), stop=stop, say=typer.echo,
                      exit_after_alert=exit_after_alert)
    first = (f"{result.first_alert_after_s:.1f} s after start-up"
             if result.first_alert_after_s else "none")
    typer.echo(f"demo stopped: {result.alerts_raised} alert(s) raised, {result.alerts_delivered} "
               f"delivered to the registry; first alert: {first}")

"""`mamoru edge run`: the in-store NVR box's main job."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, TextIO

import typer
from pydantic import SecretStr, ValidationError

from edge.archive import JsonLinesFeed
from edge.config import CameraConfig
from edge.logs import configure_json_logging
from edge.loop import AlertListener, EdgeLoop
from mamoru.settings import ConfigError, get_settings
from mamoru.wiring import open_edge_parts
from models.engine import FaceEngine

app = typer.Typer(help="The in-store edge loop.")


def parse_source(text: str) -> CameraConfig:
    name, sep, url = text.partition("=")
    if not sep:
        raise typer.BadParameter(f"{text!r}: expected NAME=URL_OR_FILE")
    try:
        return CameraConfig(name=name.strip(), url=SecretStr(url.strip()))
    except ValidationError as exc:
        raise ConfigError(f"--source {name}: {exc.errors()[0]['msg']}") from None


@app.command("run")
def run(
    source: Annotated[
        list[str] | None, typer.Option("--source", help="NAME=RTSP_URL_OR_FILE (repeatable)")
    ] = None,
    exit_at_end: Annotated[
        bool, typer.Option("--exit-at-end", help="stop when every file source ended")
    ] = False,
    alerts_jsonl: Annotated[str | None, typer.Option(
        "--alerts-jsonl", help="append alerts as JSON lines to PATH, or - for stdout")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="stop after this long")] = None,
) -> None:
    """Capture every camera, alert on watchlist faces, forget everyone else."""
    settings = get_settings()
    configure_json_logging(file=settings.logs.file, retention_days=settings.logs.retention_days)
    cameras = list(settings.edge.cameras) + [parse_source(s) for s in source or []]
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"camera names must be unique: {', '.join(names)}")
    stop = threading.Event()
    with ExitStack() as stack:
        parts = open_edge_parts(settings)
        listeners: list[AlertListener] = [parts.archive]
        if alerts_jsonl:
            stream: TextIO = sys.stdout if alerts_jsonl == "-" else stack.enter_context(
                Path(alerts_jsonl).open("a", encoding="utf-8"))
            listeners.append(JsonLinesFeed(stream, parts.archive))
        loop = EdgeLoop(settings.edge, cameras, engine=parts.engine, matcher=parts.matcher,
                        outbox=parts.outbox, matching_policy=settings.quality.matching,
                        metrics=parts.metrics, listeners=listeners)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        if max_seconds:
            threading.Timer(max_seconds, stop.set).start()
        if settings.edge.metrics_port:
            parts.metrics.serve(settings.edge.metrics_port)
        loop.run(stop, exit_at_end=exit_at_end)
        states = ", ".join(f"{name}: {state.value}" for name, state in loop.states().items())
        typer.echo(f"edge loop stopped ({states}); "
                   f"{len(parts.outbox.pending())} alert(s) waiting in the outbox", err=True)



_PROFILE_HELP = ("NAME=WxH@FPS[:DETWxDETH] (repeatable); default: 1080p/25 main stream, "
                 "1080p/5, 720p/5, 640x360/5")
_CLIP_HELP = "a recorded clip of the store's camera; default: a composed scene of real photos"


@app.command("plan")
def plan_command(
    profile: Annotated[list[str] | None, typer.Option("--profile", help=_PROFILE_HELP)] = None,
    clip: Annotated[Path | None, typer.Option(help=_CLIP_HELP)] = None,
    seconds: Annotated[float, typer.Option(min=1.0, max=120.0,
                                           help="length of each profile's clip")] = 8.0,
    target: Annotated[float, typer.Option(min=0.1, max=1.0,
                                          help="share of the box's CPU to plan for")] = 0.75,
) -> None:
    """How many cameras of each stream profile this box can analyse at the configured rate."""
    from edge.plan import (
        DEFAULT_PROFILES,
        PlanError,
        StreamProfile,
        load_hint,
        plan,
        plan_table,
    )
    from mamoru.face_data import data_root
    from mamoru.wiring import open_engine

    settings = get_settings()
    try:
        profiles = [StreamProfile.parse(p) for p in profile] if profile else list(DEFAULT_PROFILES)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None
    if clip is not None and not clip.is_file():
        raise ConfigError(f"--clip {clip}: no such file")
    engine = open_engine(settings)
    with tempfile.TemporaryDirectory(prefix="mamoru-plan-") as name:
        source = clip or _compose_source(Path(name), engine, data_root(settings.cache_dir), seconds)
        try:
            costs, hardware = plan(engine, settings.edge, settings.quality.matching, source,
                                   profiles, seconds=seconds, target=target)
        except PlanError as exc:
            raise ConfigError(str(exc)) from None
    typer.echo(f"analysis at {settings.edge.analysis_fps:g} fps per camera, planning for "
               f"{target:.0%} of {costs[0].cores} cores; {load_hint()}")
    typer.echo(hardware.describe())
    typer.echo(plan_table(costs))
    usable = [c for c in costs if not c.faces_too_small] or costs
    best = max(usable, key=lambda c: c.cameras)
    typer.echo(f"this box: up to {best.cameras} cameras with profile {best.profile.name} "
               f"({best.profile.label}, faces big enough to match); every frame a stream sends "
               f"is decoded, so set each camera's analysis stream to "
               f"{settings.edge.analysis_fps:g} fps")


def _compose_source(folder: Path, engine: FaceEngine, face_data: Path, seconds: float) -> Path:
    """A 1080p walk-past scene from the packaged real photos (five strangers + one walker).

    Made here, not in `edge.plan`: the box's code imports no demo material.
    """
    from mamoru.demo.scene import cast, compose_walk_past

    listed, strangers = cast(face_data, strangers=5)
    truth = compose_walk_past(folder / "scene-1080p.mp4", listed, strangers, size=(1920, 1080),
                              fps=25, seconds=seconds, listed_enters_at=seconds * 0.2,
                              listed_leaves_at=seconds * 0.8, engine=engine, face_data=face_data)
    return truth.path

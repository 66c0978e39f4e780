"""Builds configured objects from settings: the only place that knows both sides."""

from __future__ import annotations

from mamoru.settings import MamoruSettings
from models.engine import FaceEngine
from models.packs import PackCatalogue


def open_engine(
    settings: MamoruSettings, *, pack: str | None = None, accept_licence: bool = False
) -> FaceEngine:
    """The face engine for the configured (or named) pack, verified and ready."""
    catalogue = PackCatalogue(settings.resolved_models_dir, settings.engine.drop_in_pack_dirs)
    return FaceEngine.open(
        catalogue.get(pack or settings.engine.pack),
        settings.runtime,
        accept_licence=accept_licence or settings.engine.accept_noncommercial_licence,
        threshold=settings.engine.match_threshold,
    )

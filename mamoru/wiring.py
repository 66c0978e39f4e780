"""Builds configured objects from settings: the only place that knows both sides."""

from __future__ import annotations

from mamoru.settings import MamoruSettings
from models.engine import FaceEngine
from models.packs import PackCatalogue
from registry.context import IndexSpec, RegistryContext, RegistryPaths, open_registry


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


def registry_paths(settings: MamoruSettings) -> RegistryPaths:
    return RegistryPaths(settings.data_dir, settings.resolved_key_file)


def index_spec(settings: MamoruSettings) -> IndexSpec:
    """The index holds templates of the configured pack, at that pack's dimension."""
    catalogue = PackCatalogue(settings.resolved_models_dir, settings.engine.drop_in_pack_dirs)
    manifest = catalogue.get(settings.engine.pack).manifest
    return IndexSpec(manifest.name, manifest.recognizer.embedding_dim)


def open_registry_from(settings: MamoruSettings) -> RegistryContext:
    """The configured registry, opened and recovered from any interrupted write."""
    context = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    context.recover()
    return context

"""The one validated configuration of mamoru, with safe defaults.

Sources, highest first: environment variables (`MAMORU_*`, nested with
`__`, e.g. `MAMORU_RUNTIME__INTRA_OP_THREADS=1`), then the TOML file named by
`MAMORU_CONFIG`. Unknown keys are refused, so a typo cannot silently leave a
safety setting at a value nobody chose. Load it with `get_settings()`; nothing
is read at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge.config import EdgeSettings
from models.quality import MATCHING_POLICY, REGISTRATION_POLICY, QualityPolicy
from models.runtime import RuntimeSettings
from registry.config import LogSettings, RegistrySettings, WebSettings
from registry.keys.custody import KeyCustodySettings

DEFAULT_PACK = "yunet-sface"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mamoru"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mamoru"


class QualitySettings(BaseModel):
    """Quality gate limits (G-REG-1): strict for registration, looser for live matching."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registration: QualityPolicy = REGISTRATION_POLICY
    matching: QualityPolicy = MATCHING_POLICY


class EngineSettings(BaseModel):
    """Which model pack runs, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pack: str = DEFAULT_PACK
    drop_in_pack_dirs: tuple[Path, ...] = Field(
        default=(), description="folders holding a store's own packs (manifest.json + ONNX files)"
    )
    accept_noncommercial_licence: bool = Field(
        default=False, description="required to select a pack whose licence forbids commercial use"
    )
    match_threshold: float | None = Field(
        default=None, gt=-1.0, lt=1.0, description="overrides the calibrated per-pack threshold"
    )


class MamoruSettings(BaseSettings):
    """Everything configurable, validated in one place."""

    model_config = SettingsConfigDict(
        env_prefix="MAMORU_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cache_dir: Path = Field(default_factory=_default_cache_dir)
    models_dir: Path | None = Field(
        default=None, description="where built-in packs are fetched to; default <cache_dir>/models"
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="the registry's encrypted files (database, audit trail, evidence, index)",
    )
    key_file: Path | None = Field(
        default=None,
        description="plain master key file (0600); default <data_dir>/master.key, refused on "
                    "the data disk unless key.insecure_plain_key_file_on_data_disk. Never a CLI "
                    "argument",
    )
    key: KeyCustodySettings = Field(
        default=KeyCustodySettings(),
        description="where the master key is kept: systemd credential, passphrase-wrapped file, "
                    "or (development only) a plain file",
    )
    registry: RegistrySettings = RegistrySettings()
    web: WebSettings = WebSettings()
    engine: EngineSettings = EngineSettings()
    edge: EdgeSettings = EdgeSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    quality: QualitySettings = QualitySettings()
    logs: LogSettings = LogSettings()

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.cache_dir / "models"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "master.key"

    @property
    def carrier_dir(self) -> Path:
        """Downloaded carrier archives, kept so a re-fetch needs no network."""
        return self.cache_dir / "carriers"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("MAMORU_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def get_settings(**overrides: Any) -> MamoruSettings:
    """Load and validate the configuration; any problem is one clear `ConfigError`."""
    config_file = os.environ.get("MAMORU_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"MAMORU_CONFIG points to {config_file}, which does not exist")
    try:
        return MamoruSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid configuration at {where}: {first['msg']}") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration: {exc}") from exc

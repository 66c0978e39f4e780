"""Registry settings: one section of the validated configuration tree."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegistrySettings(BaseModel):
    """Store policy for the watchlist. Safe defaults; unsafe values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(
        default="store-001", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="this store's id, recorded on every incident",
    )
    retention_years: int = Field(
        default=3, ge=3, le=5,
        description="G-REG-4: entries are erased this long after the latest incident",
    )
    backup_retention_days: int = Field(
        default=30, ge=1, le=90,
        description="backups are deleted on their own, shorter schedule (G-REG-4)",
    )

"""Registry settings: one section of the validated configuration tree."""

from __future__ import annotations

from pathlib import Path

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
    joint_use_scheme: Path | None = Field(
        default=None,
        description="G-SHR-1: the published joint-use scheme file (TOML or JSON) this store "
                    "shares under; none = no joint use",
    )
    request_response_days: int = Field(
        default=14, ge=1, le=30,
        description="G-DSR-2/4: a request or complaint is due this many days after it was "
                    "received (APPI: without delay); later ones are listed as overdue",
    )
    review_interval_days: int = Field(
        default=365, ge=90, le=730,
        description="G-REV-1: each active entry comes up for review this long after its "
                    "approval or its last review (見直しの機会)",
    )


class WebSettings(BaseModel):
    """People on the tablet pages and the API: sessions, lockout, rate limits (G-SEC-2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_idle_minutes: int = Field(
        default=15, ge=1, le=120,
        description="a session not used for this long ends (the tablet is left unattended)",
    )
    session_absolute_hours: int = Field(
        default=8, ge=1, le=24,
        description="a session ends this long after login however busy it is (one shift)",
    )
    lockout_failures: int = Field(
        default=5, ge=3, le=20,
        description="consecutive failed logins for one user name before it is locked",
    )
    lockout_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="how long a locked user name refuses every login, even the right password",
    )
    login_rate_limit_per_minute: int = Field(
        default=60, ge=1, le=10_000,
        description="login attempts accepted per client address and minute",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, le=1_000_000,
        description="other requests accepted per client address and minute",
    )

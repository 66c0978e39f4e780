"""Registry settings: one section of the validated configuration tree."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    open_alert_days: int = Field(
        default=7, ge=1, le=30,
        description="G-RET-1: an alert nobody confirms or dismisses lapses this long after it "
                    "arrived; its snapshot is erased, the row keeps ids and counts only. A week "
                    "covers a weekend and a short absence of the person on duty; a match left "
                    "unjudged longer is no lead any more, only a stored face",
    )
    audit_retention_years: int = Field(
        default=6, ge=3, le=10,
        description="G-RET-1, G-SHR-7: audit records (ids and hashes only) are pruned this long "
                    "after they were written, never while their entry is still on the watchlist "
                    "or a kept backup needs them. At least 3 years (APPI 29/30 keep provision "
                    "records that long) and longer than retention_years, so every erasure stays "
                    "provable after its entry is gone",
    )
    joint_use_scheme: Path | None = Field(
        default=None,
        description="G-SHR-1: the published joint-use scheme file (TOML or JSON) this store "
                    "shares under; none = no joint use",
    )


    @model_validator(mode="after")
    def _the_audit_trail_outlives_entries_and_backups(self) -> RegistrySettings:
        # G-REG-4: a restore re-applies every erasure recorded after the backup was taken, so
        # the trail must reach further back than the oldest backup kept; and an entry's whole
        # history must stay verifiable after it is erased. Both are checked, not assumed.
        if self.audit_retention_years <= self.retention_years:
            raise ValueError(
                f"audit_retention_years ({self.audit_retention_years}) must be longer than "
                f"retention_years ({self.retention_years}): the audit trail must outlive entries"
            )
        if self.audit_retention_years * 365 <= self.backup_retention_days:
            raise ValueError("audit_retention_years must be longer than backup_retention_days")
        return self


class LogSettings(BaseModel):
    """JSON logs (G-RET-1): ids and counts only, and deleted after a fixed number of days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path | None = Field(
        default=None,
        description="also write the JSON lines to this file, rotated at midnight UTC; none = "
                    "stderr only (journald; deploy/journald sets the same retention there)",
    )
    retention_days: int = Field(
        default=14, ge=1, le=90,
        description="rotated log files older than this many days are deleted (one file a day)",
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

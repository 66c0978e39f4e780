"""How long an entry is kept (G-REG-4): a fixed period after the latest incident."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from registry.clock import add_years
from registry.domain import Incident


def expiry_for(incidents: Sequence[Incident], retention_years: int) -> datetime:
    """Retention counts from the newest incident, so a re-offence restarts it."""
    if not incidents:
        raise ValueError("an entry without incidents has no retention period")
    latest = max(i.occurred_at for i in incidents)
    return add_years(latest, retention_years)

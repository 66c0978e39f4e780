"""What makes a reported incident registrable."""

from __future__ import annotations

from datetime import datetime

from registry.clock import checked, not_in_future
from registry.domain import IncidentInput
from registry.errors import RuleViolationError


def validate_incident(incident: IncidentInput, now: datetime) -> None:
    """G-REG-2: only objectively confirmed offences; G-REG-5 categories are enforced by type."""
    if not incident.confirmation_ref.strip():
        raise RuleViolationError(
            "registration needs an objective confirmation of the offence (G-REG-2), "
            "e.g. the police damage-report (被害届) number"
        )
    # Every way in (API, tablet, CLI, joint use) already parsed it as a `Timestamp`;
    # checked again here for callers of the services themselves.
    checked(incident.occurred_at, "occurred_at")
    not_in_future(incident.occurred_at, now, "occurred_at")

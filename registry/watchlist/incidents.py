"""What makes a reported incident registrable."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kernel.errors import RuleViolationError
from registry.clock import checked, not_in_future
from registry.domain import IncidentInput
from registry.text import CONFIRMATION_REF, DAMAGE, DESCRIPTION


def validate_incident(incident: IncidentInput, now: datetime) -> IncidentInput:
    """The incident as stored (its free text by `registry.text`'s rule), if registrable.

    G-REG-2: only objectively confirmed offences; G-REG-5 categories are enforced by type.
    """
    incident = replace(
        incident,
        confirmation_ref=CONFIRMATION_REF.clean(incident.confirmation_ref,
                                                field="confirmation_ref"),
        damage=DAMAGE.clean(incident.damage, field="damage"),
        description=DESCRIPTION.clean(incident.description, field="description"),
    )
    if not incident.confirmation_ref:
        raise RuleViolationError(
            "registration needs an objective confirmation of the offence (G-REG-2), "
            "e.g. the police damage-report (被害届) number"
        )
    # Every way in (API, tablet, CLI, joint use) already parsed it as a `Timestamp`;
    # checked again here for callers of the services themselves.
    checked(incident.occurred_at, "occurred_at")
    not_in_future(incident.occurred_at, now, "occurred_at")
    return incident

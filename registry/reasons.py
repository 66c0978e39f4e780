"""Every decision about a person records why (G-REG-2; REQUIREMENTS "what follows" 3)."""

from __future__ import annotations

from registry.errors import RuleViolationError


def required_reason(reason: str, *, what: str = "decision") -> str:
    """The reason, trimmed; refuses an empty one with a message the person can act on."""
    if not reason.strip():
        raise RuleViolationError(f"give a reason: it is recorded with the {what}")
    return reason.strip()

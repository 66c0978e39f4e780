"""Every decision about a person records why (G-REG-2; REQUIREMENTS "what follows" 3)."""

from __future__ import annotations

from kernel.errors import RuleViolationError
from registry.text import REASON


def required_reason(reason: str, *, what: str = "decision") -> str:
    """The reason as stored (`registry.text`: NFC, trimmed, no control characters);
    refuses an empty one with a message the person can act on."""
    cleaned = REASON.clean(reason, field="reason")
    if not cleaned:
        raise RuleViolationError(f"give a reason: it is recorded with the {what}")
    return cleaned

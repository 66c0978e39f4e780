"""One router per kind of caller."""

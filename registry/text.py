"""Free text people type (reasons, features, incident details): one rule for every field.

Whatever the way in (JSON API, tablet form, CLI option, a member's joint-use
bundle), a free-text field is stored only as NFC-normalised text, trimmed,
within its length, and without characters that change how other text is
shown: C0/C1 control characters (an escape sequence would drive an admin's
terminal), bidirectional overrides and isolates (they reorder what a reader
sees), line and paragraph separators, and lone surrogates. A multi-line
field keeps line breaks (CRLF and CR become LF) and tabs; a one-line field
refuses them. The domain services apply the rule, so every caller is
covered; request models use the same `TextRule` as an annotation, so a bad
field is refused before anything else runs:

    reason: Annotated[str, REASON] = ""
    REASON.clean(typed, field="reason")   # -> the stored form, or RuleViolationError
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from kernel.errors import RuleViolationError

# Characters that reorder or hide the text around them wherever it is shown.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                           "\u200e\u200f\u061c")
_SEPARATORS = frozenset("\u2028\u2029")
_MULTILINE_WHITESPACE = frozenset("\n\t")


def unsafe_character(text: str, *, multiline: bool) -> str | None:
    """The first character the rule refuses in `text`, or None."""
    for char in text:
        if multiline and char in _MULTILINE_WHITESPACE:
            continue
        if char in _BIDI_CONTROLS or char in _SEPARATORS:
            return char
        if unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None


@dataclass(frozen=True)
class TextRule:
    """The rule of one kind of free-text field: how long, and whether it may span lines."""

    max_chars: int
    multiline: bool = False

    def clean(self, value: str, *, field: str) -> str:
        """The text as stored, or `RuleViolationError` naming the field and what is wrong."""
        problem, cleaned = self._check(value)
        if problem:
            raise RuleViolationError(f"{field}: {problem}")
        return cleaned

    def _check(self, value: str) -> tuple[str, str]:
        text = value.replace("\r\n", "\n").replace("\r", "\n") if self.multiline else value
        bad = unsafe_character(text, multiline=self.multiline)
        if bad is not None:
            what = "a line break" if bad in "\r\n\u2028\u2029" else "a control character"
            return (f"contains {what} (U+{ord(bad):04X}); "
                    f"{'use plain text' if self.multiline else 'keep it to one line of text'}",
                    "")
        text = unicodedata.normalize("NFC", text).strip()
        if len(text) > self.max_chars:
            return f"keep it to {self.max_chars} characters (it has {len(text)})", ""
        return "", text

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """As an annotation on a `str` field: the same rule, failing as a validation error."""

        def validate(value: str) -> str:
            problem, cleaned = self._check(value)
            if problem:
                raise PydanticCustomError("free_text", problem)
            return cleaned

        return core_schema.no_info_after_validator_function(validate, handler(source))


# Every free-text field of the registry, by kind.
REASON = TextRule(1000, multiline=True)  # why a decision was taken
FEATURES = TextRule(1000, multiline=True)  # the person's clothes, build, ...
DISPLAY_NAME = TextRule(200)
CONFIRMATION_REF = TextRule(200)  # the police damage-report number, or another reference
DAMAGE = TextRule(1000, multiline=True)
DESCRIPTION = TextRule(2000, multiline=True)

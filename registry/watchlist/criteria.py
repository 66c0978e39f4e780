"""G-REG-2: the written registration criteria, and the version a proposal was judged under.

The texts live in the settings (`registry.criteria`, one per offence category,
G-REG-5). A version is the SHA-256 of the category and its text: a proposal
records it on its entry row together with the text itself (kept once per
version), so an auditor can read which criteria a registration was decided
under even after the settings changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from registry.config import RegistrationCriteria
from registry.domain import OffenceCategory


@dataclass(frozen=True)
class CriteriaVersion:
    """One category's criteria text and its version (SHA-256)."""

    category: OffenceCategory
    text: str
    sha256: str

    @property
    def short(self) -> str:
        """The first 12 hex digits: enough to tell versions apart on a page."""
        return self.sha256[:12]


def criteria_version(criteria: RegistrationCriteria, category: OffenceCategory) -> CriteriaVersion:
    text = criteria.text_for(category.value)
    canonical = json.dumps({"category": category.value, "criteria": text}, ensure_ascii=False,
                           sort_keys=True, separators=(",", ":"))
    return CriteriaVersion(category, text, hashlib.sha256(canonical.encode("utf-8")).hexdigest())


def all_criteria(criteria: RegistrationCriteria) -> list[CriteriaVersion]:
    """Every category's criteria, in the order of `OffenceCategory`."""
    return [criteria_version(criteria, category) for category in OffenceCategory]

"""An incident's structured columns as the JSON text both back-ends store (G-BRE-1..4).

`counts`, `affected` and `triage` are JSON text in SQLCipher and in PostgreSQL
alike (none is personal: counts, pseudonymous entry ids, the rule-7 grounds
and who judged), and a step's `details` is JSON before PostgreSQL seals it.
One writer and one reader here keep the two back-ends' rows the same.
"""

from __future__ import annotations

import json
from typing import Any

from registry.clock import from_text, to_text
from registry.domain import Ground, RegistryCounts, Triage


def counts_text(counts: RegistryCounts) -> str:
    return json.dumps(counts.__dict__)


def counts_of(text: str) -> RegistryCounts:
    return RegistryCounts(**json.loads(text))


def affected_text(affected: tuple[str, ...]) -> str:
    return json.dumps(list(affected))


def affected_of(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def triage_text(triage: Triage) -> str:
    return json.dumps({"grounds": [g.value for g in triage.grounds], "reason": triage.reason,
                       "by": triage.by, "at": to_text(triage.at)}, ensure_ascii=False)


def triage_of(text: str | None) -> Triage | None:
    if not text:
        return None
    fields = json.loads(text)
    return Triage(tuple(Ground(g) for g in fields["grounds"]), fields["reason"], fields["by"],
                  from_text(fields["at"]))


def details_text(details: dict[str, Any]) -> str:
    return json.dumps(details, ensure_ascii=False)


def details_of(text: str) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(text)
    return details

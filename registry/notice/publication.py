"""The notice's publication record: its SHA-256 in the audit trail whenever it changes.

`publish_notice` renders the notice from the configuration in force and, if its
hash differs from the last one recorded, appends a NOTICE_PUBLISHED record
(`mamoru notice render`, and every start of the registry app). Joint-use export
(`registry.joint_use.sync.ensure_notice_current`) compares the last recorded hash
with the current page's: while the last recorded notice is not the one the
current settings and adopted scheme give (a new member, a new retention period,
new criteria), nothing is provided, because what visitors were told would not be
what the store does (G-NOT-2, G-SHR-1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.notice.content import adopted_scheme
from registry.notice.page import NoticePage, current_page


@dataclass(frozen=True)
class Publication:
    page: NoticePage
    previous_sha256: str | None
    recorded: bool  # False: the notice had not changed, nothing was appended


def last_published_sha256(ctx: RegistryContext) -> str | None:
    details = ctx.repo.last_audit_details(Action.NOTICE_PUBLISHED.value)
    if details is None:
        return None
    value = json.loads(details).get("sha256")
    return value if isinstance(value, str) else None


def publish_notice(ctx: RegistryContext, *, now: datetime, actor: str) -> Publication:
    """Record the current notice's hash if it changed since the last record."""
    with ctx.writing():
        page = current_page(ctx)
        previous = last_published_sha256(ctx)
        if previous == page.sha256:
            return Publication(page, previous, recorded=False)
        scheme = adopted_scheme(ctx)
        with ctx.repo.unit_of_work():
            ctx.audit.record(actor=actor, action=Action.NOTICE_PUBLISHED, at=now, details={
                "sha256": page.sha256, "previous_sha256": previous,
                "retention_years": ctx.policy.retention_years,
                "scheme_sha256": ctx.repo.current_scheme_sha256() if scheme else None,
                "members": [m.member_id for m in scheme.members] if scheme else [],
            })
    return Publication(page, previous, recorded=True)

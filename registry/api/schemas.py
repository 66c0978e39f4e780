"""Request and response bodies of the API, one family per resource.

`AlertIn` is what a box sends (defined beside the service that receives it,
`registry.alerts`); `AlertReceipt` is all the box gets back. The staff-facing
`AlertPublic` of the tablet pages comes with the people login.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from registry.alerts import AlertIn

__all__ = ["AlertIn", "AlertReceipt", "IndexVersionOut"]


class AlertReceipt(BaseModel):
    """The answer to an alert: stored now (201) or already stored before (200)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    created: bool


class IndexVersionOut(BaseModel):
    """The published index's version and pack, from its clear header (cheap to poll)."""

    model_config = ConfigDict(frozen=True)

    version: int
    pack: str

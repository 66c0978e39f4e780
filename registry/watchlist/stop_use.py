"""Stop-use rights of registered persons (G-BRE-4, APPI 35(5)): the one reader.

A reportable leak gives each affected person the right to ask for use to stop;
`registry.breach.incident` marks them in `entry_stop_use_rights` when an
incident is triaged reportable. Reading the marks belongs with the entries they
are about: the entry's view, the watchlist page and the request desk show them.
Nothing here changes an entry (stopping use is the person's choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from registry.clock import from_text
from registry.context import RegistryContext


@dataclass(frozen=True)
class StopUseRight:
    """A person who may ask for use to stop after a reportable leak (G-BRE-4, APPI 35(5))."""

    entry_id: str
    incident_id: str
    since: datetime


def stop_use_right_list(ctx: RegistryContext, entry_id: str | None = None) -> list[StopUseRight]:
    """The one reader of `entry_stop_use_rights`, oldest first; with `entry_id`, its rights only.

    The entry's view, the watchlist page and the request desk all show what this
    returns; nothing here changes an entry (stopping use is the person's choice).
    """
    query = "SELECT entry_id, incident_id, since FROM entry_stop_use_rights"
    params: tuple[str, ...] = ()
    if entry_id is not None:
        query, params = query + " WHERE entry_id = ?", (entry_id,)
    return [StopUseRight(entry, incident_id, from_text(since))
            for entry, incident_id, since in ctx.sqlcipher_connection().execute(
                query + " ORDER BY since, incident_id, entry_id", params)]

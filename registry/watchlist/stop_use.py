"""Stop-use rights of registered persons (G-BRE-4, APPI 35(5)): the one reader.

A reportable leak gives each affected person the right to ask for use to stop;
`registry.breach.incident` marks them in `entry_stop_use_rights` when an
incident is triaged reportable. Reading the marks belongs with the entries they
are about: the entry's view, the watchlist page and the request desk show them.
Nothing here changes an entry (stopping use is the person's choice).
"""

from __future__ import annotations

from registry.context import RegistryContext
from registry.domain import StopUseRight as StopUseRight  # where it was defined before


def stop_use_right_list(ctx: RegistryContext, entry_id: str | None = None) -> list[StopUseRight]:
    """The one reader of `entry_stop_use_rights`, oldest first; with `entry_id`, its rights only.

    The entry's view, the watchlist page and the request desk all show what this
    returns; nothing here changes an entry (stopping use is the person's choice).
    Through the repository, so it reads the same on SQLCipher and PostgreSQL.
    """
    return ctx.repo.stop_use_rights(entry_id)

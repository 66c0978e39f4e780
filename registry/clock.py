"""Time in the registry: one timestamp type, always timezone-aware UTC, stored as ISO-8601 text.

Every time that comes from outside (an edge box's `detected_at`, an incident's
`occurred_at` typed at the tablet, on the command line or sent to the API, the
period of an audit report, `expire --now`, the times inside a joint-use
bundle) goes through `parse_timestamp` / `checked`, or the pydantic type
`Timestamp` built on them. They accept only

- an ISO-8601 date-time with its UTC offset (`2026-01-20T09:15:02+09:00`, `...Z`), or
- a date alone (`2026-01-20`), which is the start of that day in UTC (or in the
  zone the channel states: the tablet's form is in the store's time), and

only within `EARLIEST..LATEST`, and hand back the same instant in UTC. A
date-time without an offset is refused unless the caller names the zone it is
in: "14:05" means a different instant in Tokyo and in UTC, and the registry
will not guess (incident times are shared with other stores, G-SHR-2).

Why 2000-01-01 .. 2199-12-31 (UTC): nothing the registry keeps can be older
than this product (an incident older than the 3-5 year retention, G-RET-1,
would expire at once anyway), and nothing it computes reaches far ahead (the
latest expiry is a few years from now). Inside that range every offset (-24h
to +24h) converts to UTC without leaving `datetime`'s years 1..9999, every
year has four digits, and so the stored text always reads back and sorts like
time (SQL compares expiry dates as text). Before this type existed, year 999
was written as "999-..." (strftime does not pad), which neither read back nor
sorted; the schema's migration 5 repairs rows stored that way, and
`from_text` still reads the old form.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Final

from pydantic import BeforeValidator

from kernel.errors import RuleViolationError

EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# How far ahead of the registry's clock a reported time may be (an edge box's or a
# tablet's clock runs a little fast): beyond that, "when it happened" is in the future.
CLOCK_SKEW: Final = timedelta(minutes=5)
_STORED = re.compile(r"(\d{1,4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z")
_RANGE = "2000-01-01 to 2199-12-31 (UTC)"


class TimestampError(RuleViolationError, ValueError):
    """A time from outside that is not a zoned ISO-8601 time within the registry's range.

    A `RuleViolationError` for the services and the CLI (422, or one line and
    exit 2) and a `ValueError` so that pydantic reports it as a field error.
    """


def utc_now() -> datetime:
    return datetime.now(UTC)


def _refuse(what: str, problem: str) -> TimestampError:
    return TimestampError(f"{what}: {problem}" if what else problem)


def checked(moment: datetime, what: str = "") -> datetime:
    """`moment` in UTC; refuses a naive time or one outside `EARLIEST..LATEST`.

    `what` names the field or option in the message (pydantic names it itself).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _refuse(what, "a date-time needs its UTC offset, e.g. +09:00 or Z")
    # Aware datetimes compare by instant without converting, so even year 9999 at -12:00
    # (which has no UTC form inside datetime's range) is refused here, not overflowed.
    if not EARLIEST <= moment <= LATEST:
        raise _refuse(what, f"{moment.isoformat()} is outside {_RANGE}")
    return moment.astimezone(UTC)


def parse_timestamp(value: str | date, what: str = "", *,
                    naive_zone: tzinfo | None = None) -> datetime:
    """A time from outside (text, date or datetime) as a checked UTC datetime.

    A date alone is the start of that day in `naive_zone`, or in UTC without one.
    A date-time without an offset is taken to be in `naive_zone`; without one it
    is refused.
    """
    if isinstance(value, str):
        value = _from_iso(value.strip(), what)
    if isinstance(value, datetime):
        if value.tzinfo is None and naive_zone is not None:
            value = value.replace(tzinfo=naive_zone)
        return checked(value, what)
    day = datetime(value.year, value.month, value.day, tzinfo=naive_zone or UTC)
    return checked(day, what)


def _from_iso(text: str, what: str) -> date:
    """The date or date-time an ISO-8601 text names (a date alone stays a `date`)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _refuse(what, f"{text[:40]!r} is not an ISO-8601 date-time like "
                            "2026-11-20T14:05+09:00 or a date like 2026-11-20") from None


def _timestamp_from_wire(value: object) -> datetime:
    if isinstance(value, str | date):
        return parse_timestamp(value)
    raise TimestampError("give an ISO-8601 date-time with its offset, or a date")


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_from_wire)]
"""The pydantic field type of every time the registry receives (API bodies and queries,
joint-use bundles): a zoned ISO-8601 date-time or a date, within range, in UTC."""


def not_in_future(moment: datetime, now: datetime, what: str) -> datetime:
    """Refuse a time after `now` (plus `CLOCK_SKEW`): something that has not happened yet."""
    if moment > now + CLOCK_SKEW:
        raise _refuse(what, f"{to_text(moment)} is in the future")
    return moment


def to_text(moment: datetime) -> str:
    """The stored form: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always four digits of year."""
    utc = checked(moment)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_text(text: str) -> datetime:
    """A stored time. Also reads the unpadded years (`999-01-01...`) older versions wrote."""
    match = _STORED.fullmatch(text)
    if match is None:
        raise ValueError(f"not a stored registry time: {text[:40]!r}")
    year, month, day, hour, minute, second, micro = (int(g) for g in match.groups())
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def add_years(moment: datetime, years: int) -> datetime:
    """Same calendar day `years` later; 29 February becomes 28 February."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)

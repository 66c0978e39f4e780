"""The request desk's data requests and entry reviews, on PostgreSQL (issue 15).

Mirrors `registry.storage.sqlcipher.requests`. A requester's contact, the
summary, the answer and its reason, and a review's reason are sealed by the
application (`schema.PERSONAL_COLUMNS`) bound to their row: a request's to its
`request_id`, a review's to its `review_id`. As PostgreSQL sees only
ciphertext, "still holds personal text" (`closed_with_personal_text`) is
decided here after opening, not by a `!= ''` in SQL, and a wiped text is the
sealed empty string, like any other value of the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from registry.domain import (
    DataRequest,
    EntryReview,
    EntryState,
    IdentityMethod,
    RefusalGround,
    RequestKind,
    RequestStatus,
    ReviewDecision,
    TemplateRecord,
)
from registry.storage.postgres.base import PostgresStore, utc

_COLUMNS = tuple(f.name for f in fields(DataRequest))
_SEALED = ("contact", "summary", "answer", "answer_reason")  # PERSONAL_COLUMNS of data_requests
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM data_requests"
_OPEN = ("open", "forwarded")
_CLOSED = ("answered", "refused")


class PostgresRequests(PostgresStore):
    """`RequestRepository`: the `data_requests` table, and the templates the desk searches."""

    def _params(self, request: DataRequest) -> tuple[Any, ...]:
        values: list[Any] = []
        for name in _COLUMNS:
            value = getattr(request, name)
            if name in _SEALED:
                value = self._fields.seal_text("data_requests", name, request.request_id, value)
            elif hasattr(value, "value"):  # the enums; datetimes and booleans travel as they are
                value = value.value
            values.append(value)
        return tuple(values)

    def _request(self, row: Sequence[Any]) -> DataRequest:
        data = dict(zip(_COLUMNS, row, strict=True))
        request_id = str(data["request_id"])
        opened = {name: self._fields.open_text("data_requests", name, request_id, data[name])
                  for name in _SEALED}
        return DataRequest(**{
            **data,
            **opened,
            "kind": RequestKind(data["kind"]),
            "status": RequestStatus(data["status"]),
            "received_at": utc(data["received_at"]),
            "due_at": utc(data["due_at"]),
            "identity_method": IdentityMethod(data["identity_method"]),
            "answered_at": utc(data["answered_at"]),
            "refusal_ground": RefusalGround(data["refusal_ground"]) if data["refusal_ground"]
            else None,
        })

    def add(self, request: DataRequest) -> None:
        self._db.execute(
            f"INSERT INTO data_requests ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('%s' for _ in _COLUMNS)})", self._params(request))

    def update(self, request: DataRequest) -> None:
        sets = ", ".join(f"{c} = %s" for c in _COLUMNS[1:])
        self._db.execute(f"UPDATE data_requests SET {sets} WHERE request_id = %s",
                         (*self._params(request)[1:], request.request_id))

    def get(self, request_id: str) -> DataRequest | None:
        row = self._one(f"{_SELECT} WHERE request_id = %s", (request_id,))
        return self._request(row) if row else None

    def all(self) -> list[DataRequest]:
        return [self._request(r) for r in self._all(f"{_SELECT} ORDER BY received_at, request_id")]

    def overdue(self, now: datetime) -> list[DataRequest]:
        rows = self._all(f"{_SELECT} WHERE status = ANY(%s) AND due_at < %s "
                         "ORDER BY due_at, request_id", (list(_OPEN), now))
        return [self._request(r) for r in rows]

    def by_origin(self, member: str, origin_request_id: str) -> DataRequest | None:
        row = self._one(f"{_SELECT} WHERE origin_member = %s AND origin_request_id = %s",
                        (member, origin_request_id))
        return self._request(row) if row else None

    def forwards_to_send(self, member: str) -> list[DataRequest]:
        """Requests forwarded to `member` whose arrival it has not acknowledged yet."""
        rows = self._all(f"{_SELECT} WHERE forwarded_to = %s AND NOT forward_acked "
                         "AND status = 'forwarded' ORDER BY received_at, request_id", (member,))
        return [self._request(r) for r in rows]

    def answers_to_send(self, member: str) -> list[DataRequest]:
        """Requests `member` forwarded here, answered, the answer not acknowledged yet."""
        rows = self._all(f"{_SELECT} WHERE origin_member = %s AND NOT answer_acked "
                         "AND status = ANY(%s) ORDER BY answered_at, request_id",
                         (member, list(_CLOSED)))
        return [self._request(r) for r in rows]

    def mark_forward_acked(self, member: str, request_ids: Sequence[str]) -> None:
        self._db.execute("UPDATE data_requests SET forward_acked = true "
                         "WHERE forwarded_to = %s AND request_id = ANY(%s)",
                         (member, list(request_ids)))

    def mark_answer_acked(self, member: str, origin_request_ids: Sequence[str]) -> None:
        self._db.execute("UPDATE data_requests SET answer_acked = true "
                         "WHERE origin_member = %s AND origin_request_id = ANY(%s)",
                         (member, list(origin_request_ids)))

    def closed_with_personal_text(self, answered_before: datetime) -> list[str]:
        """Closed requests answered before the moment that still hold contact or free text.

        The texts are ciphertext to PostgreSQL: each candidate is opened here.
        """
        rows = self._all(
            "SELECT request_id, contact, summary, answer_reason FROM data_requests "
            "WHERE status = ANY(%s) AND answered_at < %s ORDER BY answered_at, request_id",
            (list(_CLOSED), answered_before))
        return [str(r[0]) for r in rows
                if any(self._fields.open_text("data_requests", name, str(r[0]), blob)
                       for name, blob in zip(("contact", "summary", "answer_reason"), r[1:],
                                             strict=True))]

    def wipe_personal_text(self, request_ids: Sequence[str]) -> None:
        """Blank contact, summary and answer text; kind, dates and outcome stay (issue 10).

        Each row gets the empty text sealed to it; the old ciphertext is gone
        with the row version (no key could open it anywhere else either).
        """
        for request_id in request_ids:
            blank = {name: self._fields.seal_text("data_requests", name, request_id, "")
                     for name in ("contact", "summary", "answer_reason")}
            self._db.execute(
                "UPDATE data_requests SET contact = %(contact)s, summary = %(summary)s, "
                "answer_reason = %(answer_reason)s WHERE request_id = %(request_id)s",
                {**blank, "request_id": request_id})

    def held_templates(self, pack: str) -> list[TemplateRecord]:
        """Templates of every entry that still holds face data (proposed or active, suspended
        or not, own or imported): everything a person may ask about."""
        rows = self._all(
            "SELECT t.template_id, t.entry_id, t.pack, t.vector, t.image_id, t.quality "
            "FROM templates t JOIN entries e ON e.entry_id = t.entry_id "
            "WHERE e.state = ANY(%s) AND t.pack = %s ORDER BY t.template_id",
            ([EntryState.PROPOSED.value, EntryState.ACTIVE.value], pack))
        return [TemplateRecord(int(r[0]), r[1], r[2],
                               self._fields.open("templates", "vector", int(r[0]), r[3]),
                               r[4], r[5])
                for r in rows]


class PostgresRequestDesk(PostgresStore):
    """`RegistryRepository.requests`: the desk's store on this connection, as on SQLCipher."""

    @property
    def requests(self) -> PostgresRequests:
        return PostgresRequests(self._db, self._fields)


class PostgresReviews(PostgresStore):
    """`ReviewRepository`: the `entry_reviews` table."""

    def add_review(self, review: EntryReview) -> None:
        # The reason is sealed to the review's key, known once the row exists: insert, then
        # seal, in one transaction (a savepoint inside the caller's unit of work).
        with self._db.transaction():
            row = self._one(
                "INSERT INTO entry_reviews (entry_id, decision, reason, reviewed_by, reviewed_at) "
                "VALUES (%s, %s, ''::bytea, %s, %s) RETURNING review_id",
                (review.entry_id, review.decision.value, review.reviewed_by,
                 review.reviewed_at))
            review_id = int(row[0])
            self._db.execute("UPDATE entry_reviews SET reason = %s WHERE review_id = %s",
                             (self._fields.seal_text("entry_reviews", "reason", review_id,
                                                     review.reason), review_id))

    def last_reviews(self) -> dict[str, datetime]:
        """entry_id -> when it was last reviewed."""
        rows = self._all("SELECT entry_id, max(reviewed_at) FROM entry_reviews GROUP BY entry_id")
        return {str(r[0]): _at(r[1]) for r in rows}

    def reviews(self, entry_id: str) -> list[EntryReview]:
        rows = self._all(
            "SELECT review_id, entry_id, decision, reason, reviewed_by, reviewed_at "
            "FROM entry_reviews WHERE entry_id = %s ORDER BY reviewed_at, review_id",
            (entry_id,))
        return [EntryReview(r[1], ReviewDecision(r[2]),
                            self._fields.open_text("entry_reviews", "reason", int(r[0]), r[3])
                            or "",
                            int(r[4]), _at(r[5]))
                for r in rows]


def _at(moment: datetime) -> datetime:
    """A NOT NULL time from the database, as UTC."""
    return moment.astimezone(UTC)

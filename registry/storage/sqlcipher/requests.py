"""The request desk's data requests and entry reviews, on the registry's SQLCipher connection.

The desk's tables (migration 5) have one reader and one writer here. Neither
store commits: callers write inside `ctx.repo.unit_of_work()`, on the same
connection, together with the audit record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from registry.clock import from_text, to_text
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
from registry.storage.sqlcipher.base import SqlCipherStore

_COLUMNS = tuple(f.name for f in fields(DataRequest))
_OPEN = ("open", "forwarded")


def _time(text: str | None) -> datetime | None:
    return from_text(text) if text else None


def _request(row: Sequence[Any]) -> DataRequest:
    data = dict(zip(_COLUMNS, row, strict=True))
    return DataRequest(**{
        **data,
        "kind": RequestKind(data["kind"]),
        "status": RequestStatus(data["status"]),
        "received_at": from_text(data["received_at"]),
        "due_at": from_text(data["due_at"]),
        "identity_method": IdentityMethod(data["identity_method"]),
        "by_agent": bool(data["by_agent"]),
        "answered_at": _time(data["answered_at"]),
        "refusal_ground": RefusalGround(data["refusal_ground"]) if data["refusal_ground"]
        else None,
    })


def _params(request: DataRequest) -> tuple[Any, ...]:
    values: list[Any] = []
    for name in _COLUMNS:
        value = getattr(request, name)
        if isinstance(value, datetime):
            value = to_text(value)
        elif isinstance(value, bool):
            value = int(value)
        elif hasattr(value, "value"):
            value = value.value
        values.append(value)
    return tuple(values)


class SqlCipherRequests(SqlCipherStore):
    """`RequestRepository`: the `data_requests` table, and the templates the desk searches."""

    def add(self, request: DataRequest) -> None:
        self._db.execute(
            f"INSERT INTO data_requests ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})", _params(request))

    def update(self, request: DataRequest) -> None:
        sets = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
        self._db.execute(f"UPDATE data_requests SET {sets} WHERE request_id = ?",
                         (*_params(request)[1:], request.request_id))

    def get(self, request_id: str) -> DataRequest | None:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
                               "WHERE request_id = ?", (request_id,)).fetchone()
        return _request(row) if row else None

    def all(self) -> list[DataRequest]:
        rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
                                "ORDER BY received_at, request_id")
        return [_request(r) for r in rows]

    def overdue(self, now: datetime) -> list[DataRequest]:
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
            "WHERE status IN (?, ?) AND due_at < ? ORDER BY due_at", (*_OPEN, to_text(now)))
        return [_request(r) for r in rows]

    def by_origin(self, member: str, origin_request_id: str) -> DataRequest | None:
        row = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
            "WHERE origin_member = ? AND origin_request_id = ?",
            (member, origin_request_id)).fetchone()
        return _request(row) if row else None

    def forwards_to_send(self, member: str) -> list[DataRequest]:
        """Requests forwarded to `member` whose arrival it has not acknowledged yet."""
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
            "WHERE forwarded_to = ? AND forward_acked = 0 AND status = 'forwarded' "
            "ORDER BY received_at", (member,))
        return [_request(r) for r in rows]

    def answers_to_send(self, member: str) -> list[DataRequest]:
        """Requests `member` forwarded here, answered, the answer not acknowledged yet."""
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM data_requests "
            "WHERE origin_member = ? AND answer_acked = 0 AND status IN ('answered', 'refused') "
            "ORDER BY answered_at", (member,))
        return [_request(r) for r in rows]

    def mark_forward_acked(self, member: str, request_ids: Sequence[str]) -> None:
        self._db.executemany(
            "UPDATE data_requests SET forward_acked = 1 WHERE forwarded_to = ? AND request_id = ?",
            [(member, r) for r in request_ids])

    def mark_answer_acked(self, member: str, origin_request_ids: Sequence[str]) -> None:
        self._db.executemany(
            "UPDATE data_requests SET answer_acked = 1 "
            "WHERE origin_member = ? AND origin_request_id = ?",
            [(member, r) for r in origin_request_ids])

    def closed_with_personal_text(self, answered_before: datetime) -> list[str]:
        """Closed requests answered before the moment that still hold contact or free text."""
        rows = self._db.execute(
            "SELECT request_id FROM data_requests WHERE status IN ('answered', 'refused') "
            "AND answered_at < ? AND (contact != '' OR summary != '' OR answer_reason != '') "
            "ORDER BY answered_at, request_id", (to_text(answered_before),))
        return [str(r[0]) for r in rows]

    def wipe_personal_text(self, request_ids: Sequence[str]) -> None:
        """Blank contact, summary and answer text; kind, dates and outcome stay (issue 10).

        The database runs with secure_delete, so the old text does not linger in free pages.
        """
        self._db.executemany(
            "UPDATE data_requests SET contact = '', summary = '', answer_reason = '' "
            "WHERE request_id = ?", [(r,) for r in request_ids])

    def held_templates(self, pack: str) -> list[TemplateRecord]:
        """Templates of every entry that still holds face data (proposed or active, suspended
        or not, own or imported): everything a person may ask about."""
        rows = self._db.execute(
            "SELECT t.template_id, t.entry_id, t.pack, t.vector, t.image_id, t.quality "
            "FROM templates t JOIN entries e ON e.entry_id = t.entry_id "
            "WHERE e.state IN (?, ?) AND t.pack = ? ORDER BY t.template_id",
            (EntryState.PROPOSED.value, EntryState.ACTIVE.value, pack))
        return [TemplateRecord(*r) for r in rows]


class SqlCipherReviews(SqlCipherStore):
    """`ReviewRepository`: the `entry_reviews` table."""

    def add_review(self, review: EntryReview) -> None:
        self._db.execute(
            "INSERT INTO entry_reviews (entry_id, decision, reason, reviewed_by, reviewed_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (review.entry_id, review.decision.value, review.reason, review.reviewed_by,
             to_text(review.reviewed_at)))

    def last_reviews(self) -> dict[str, datetime]:
        """entry_id -> when it was last reviewed."""
        rows = self._db.execute(
            "SELECT entry_id, MAX(reviewed_at) FROM entry_reviews GROUP BY entry_id")
        return {str(r[0]): from_text(r[1]) for r in rows}

    def reviews(self, entry_id: str) -> list[EntryReview]:
        rows = self._db.execute(
            "SELECT entry_id, decision, reason, reviewed_by, reviewed_at FROM entry_reviews "
            "WHERE entry_id = ? ORDER BY reviewed_at", (entry_id,))
        return [EntryReview(r[0], ReviewDecision(r[1]), r[2], r[3], from_text(r[4]))
                for r in rows]

"""The tamper-evident audit trail (REQUIREMENTS, "what follows" 3; G-SHR-4, G-SHR-7).

Every change to the watchlist appends one record in the same transaction as
the change. Each record's hash covers its sequence number, content and the
previous record's hash, so editing, deleting or re-ordering any record breaks
the chain from that point; the newest (seq, hash) is also copied to a head
file outside the database, so cutting records off the end is caught too.
Records carry pseudonymous entry ids and counts, never a face or a name:
an outside auditor can verify and count without reading anyone's data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from registry.clock import from_text, to_text
from registry.repository import AuditRow, RegistryRepository

GENESIS = "0" * 64


class Action(str, Enum):
    """Every kind of change the trail records."""

    REGISTRY_INIT = "registry_init"
    USER_ADD = "user_add"
    USER_ROLE = "user_role"
    USER_TRAINED = "user_trained"
    USER_DISABLED = "user_disabled"
    PROPOSE = "propose"
    APPROVE = "approve"
    REJECT = "reject"
    CORRECT = "correct"
    REOFFENCE = "reoffence"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"
    ERASE = "erase"
    KEY_ROTATE = "key_rotate"
    BACKUP = "backup"
    BACKUP_DELETED = "backup_deleted"
    RESTORE = "restore"
    ERASURE_REAPPLIED = "erasure_reapplied"
    DEVICE_ADD = "device_add"
    DEVICE_DISABLED = "device_disabled"
    ALERT_RECEIVED = "alert_received"
    ALERT_CONFIRMED = "alert_confirmed"
    ALERT_DISMISSED = "alert_dismissed"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_LOCKED = "login_locked"
    # joint use (G-SHR-1..7) and emergency one-off provision (G-SHR-6)
    JOINT_USE_SCHEME_ADOPTED = "joint_use_scheme_adopted"
    JOINT_USE_MEMBER_ADDED = "joint_use_member_added"
    JOINT_USE_MEMBER_REMOVED = "joint_use_member_removed"
    JOINT_USE_KEYS_CREATED = "joint_use_keys_created"
    JOINT_USE_PROVIDED = "joint_use_provided"  # a bundle sent: the provision record (G-SHR-7)
    JOINT_USE_RECEIVED = "joint_use_received"  # a bundle applied: the receipt record
    JOINT_USE_CONFIRMED = "joint_use_confirmed"  # a member's receipt applied at the origin
    OBJECTION_RECORDED = "objection_recorded"
    OBJECTION_DISMISSED = "objection_dismissed"
    EMERGENCY_SHARE_REQUESTED = "emergency_share_requested"
    EMERGENCY_SHARE_CHECKED = "emergency_share_checked"
    EMERGENCY_SHARE_PROVIDED = "emergency_share_provided"
    # the public notice (G-NOT-2): its SHA-256 whenever the rendered page changes
    NOTICE_PUBLISHED = "notice_published"
    # the request and complaint desk (G-DSR-1..4) and periodic review (G-REV-1)
    REQUEST_OPENED = "request_opened"
    REQUEST_ASSIGNED = "request_assigned"
    REQUEST_SEARCHED = "request_searched"  # outcome and entry ids only; the photo is not kept
    REQUEST_FORWARDED = "request_forwarded"  # about an imported entry: to its origin store
    REQUEST_RECEIVED = "request_received"  # forwarded here by a member
    REQUEST_ANSWERED = "request_answered"
    REQUEST_REFUSED = "request_refused"
    REQUEST_ANSWER_RECEIVED = "request_answer_received"  # the origin answered a forwarded one
    REVIEW_KEPT = "review_kept"
    REVIEW_WITHDRAWN = "review_withdrawn"
    # issue 10: closed requests' contact, summary and answer text wiped after their lifetime
    REQUEST_RECORDS_WIPED = "request_records_wiped"


# Actions that remove a person's face data; a restore must re-apply them all (G-REG-4).
ERASING_ACTIONS = frozenset({Action.REJECT, Action.WITHDRAW, Action.EXPIRE, Action.ERASE})


def record_hash(prev_hash: str, seq: int, at: str, actor: str, action: str,
                entry_id: str | None, details: str) -> str:
    body = json.dumps([seq, at, actor, action, entry_id, details], ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    """The first record that does not verify, and how."""

    seq: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    records: int
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class AuditTrail:
    """Appends and verifies records through the repository; anchors the head in a file."""

    def __init__(self, repository: RegistryRepository, head_file: Path) -> None:
        self._repo = repository
        self._head_file = head_file

    def record(self, *, actor: str, action: Action, at: datetime, entry_id: str | None = None,
               details: dict[str, Any] | None = None) -> int:
        """Append one record; call inside the use case's unit of work."""
        last = self._repo.last_audit()
        seq = (last[0] if last else 0) + 1
        prev = last[1] if last else GENESIS
        text = json.dumps(details or {}, ensure_ascii=False, sort_keys=True)
        stamp = to_text(at)
        digest = record_hash(prev, seq, stamp, actor, action.value, entry_id, text)
        self._repo.append_audit(stamp, actor, action.value, entry_id, text, prev, digest)
        return seq

    def anchor_head(self) -> None:
        """Copy the newest (seq, hash) outside the database, after a commit.

        The anchor only moves forward along the chain: if the trail no longer
        holds the anchored record (records were cut off the end, or the end
        rewritten), the old anchor is kept as the evidence `verify()` reports.
        Otherwise any write, even the `recover()` every open runs, would
        re-anchor a truncated trail and hide the truncation.
        """
        last = self._repo.last_audit()
        if last is None:
            return
        if self._head_file.is_file():
            head = self._read_head()
            if head is None or self._hash_at(head[0]) != head[1]:
                return  # damaged or left behind: kept for `verify()` to report
        partial = self._head_file.with_name(self._head_file.name + ".partial")
        partial.write_text(f"{last[0]} {last[1]}\n", encoding="ascii")
        os.replace(partial, self._head_file)

    def reset_anchor(self) -> None:
        """After a restore the chain is re-based; the old head no longer applies."""
        self._head_file.unlink(missing_ok=True)
        self.anchor_head()

    def verify(self) -> ChainReport:
        """Walk the whole chain; name the first record that is wrong."""
        expected_seq, prev, count = 1, GENESIS, 0
        for row in self._repo.audit_rows():
            problem = _check_row(row, expected_seq, prev)
            if problem:
                return ChainReport(count, problem)
            expected_seq, prev, count = row.seq + 1, row.hash, count + 1
        return ChainReport(count, self._check_head(expected_seq - 1, prev))

    def _read_head(self) -> tuple[int, str] | None:
        """The anchored (seq, hash); None without a head file or with an unreadable one."""
        if not self._head_file.is_file():
            return None
        try:
            text = self._head_file.read_bytes().decode("ascii")
        except UnicodeDecodeError:
            return None
        seq_text, _, hash_text = text.strip().partition(" ")
        if not seq_text.isdigit() or len(hash_text) != len(GENESIS):
            return None
        return int(seq_text), hash_text

    def _hash_at(self, seq: int) -> str | None:
        """The hash of record `seq`, or None if the trail has no such record."""
        rows = self._repo.audit_rows(seq - 1)
        try:
            row = next(iter(rows), None)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        return row.hash if row is not None and row.seq == seq else None

    def _check_head(self, last_seq: int, last_hash: str) -> ChainProblem | None:
        if not self._head_file.is_file():
            return None
        head = self._read_head()
        if head is None:
            return ChainProblem(last_seq, f"the anchored head {self._head_file} is unreadable "
                                          "(damaged or edited): the end of the trail cannot be "
                                          "checked")
        head_seq, hash_text = head
        if head_seq > last_seq:
            return ChainProblem(last_seq + 1, f"records {last_seq + 1}..{head_seq} were deleted "
                                              "(the anchored head is beyond the last record)")
        if head_seq == last_seq and hash_text != last_hash:
            return ChainProblem(last_seq, "the last record differs from the anchored head")
        if head_seq < last_seq and self._hash_at(head_seq) != hash_text:
            return ChainProblem(head_seq, f"record {head_seq} differs from the anchored head "
                                          "(the end of the trail was cut off and rewritten)")
        return None

    def rows_between(self, start: datetime, end: datetime) -> list[AuditRow]:
        return [r for r in self._repo.audit_rows() if start <= from_text(r.at) < end]

    def report(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Counts per action in [start, end): what an outside auditor needs, no faces or names."""
        rows = self.rows_between(start, end)
        counts = Counter(r.action for r in rows)
        return {
            "from": to_text(start),
            "to": to_text(end),
            "records": len(rows),
            "registrations_proposed": counts.get(Action.PROPOSE.value, 0),
            "approvals": counts.get(Action.APPROVE.value, 0),
            "rejections": counts.get(Action.REJECT.value, 0),
            "corrections": counts.get(Action.CORRECT.value, 0),
            "reoffences": counts.get(Action.REOFFENCE.value, 0),
            "withdrawals": counts.get(Action.WITHDRAW.value, 0),
            "expiries": counts.get(Action.EXPIRE.value, 0),
            "erasures": counts.get(Action.ERASE.value, 0),
            "erasures_reapplied_after_restore": counts.get(Action.ERASURE_REAPPLIED.value, 0),
            "alerts_received": counts.get(Action.ALERT_RECEIVED.value, 0),
            "alerts_confirmed": counts.get(Action.ALERT_CONFIRMED.value, 0),
            "alerts_dismissed": counts.get(Action.ALERT_DISMISSED.value, 0),
            "logins_locked": counts.get(Action.LOGIN_LOCKED.value, 0),
            "objections_recorded": counts.get(Action.OBJECTION_RECORDED.value, 0),
            "joint_use_provisions": provisions_by_member(rows),
            "emergency_shares": emergency_shares(rows),
            "by_action": dict(sorted(counts.items())),
        }


def provisions_by_member(rows: list[AuditRow]) -> dict[str, dict[str, int]]:
    """G-SHR-7: bundles and entries provided to / received from each member; no faces, no names."""
    per: dict[str, Counter[str]] = {}
    for row in rows:
        if row.action == Action.JOINT_USE_PROVIDED.value:
            details = json.loads(row.details)
            counter = per.setdefault(details["to"], Counter())
            counter["bundles_sent"] += 1
            counter["entries_provided"] += len(details.get("entries", ()))
            counter["corrections_provided"] += len(details.get("corrections", ()))
            counter["tombstones_sent"] += len(details.get("tombstones", ()))
        elif row.action == Action.JOINT_USE_RECEIVED.value:
            details = json.loads(row.details)
            counter = per.setdefault(details["from"], Counter())
            counter["bundles_received"] += 1
            counter["entries_received"] += len(details.get("entries", ()))
            counter["tombstones_applied"] += len(details.get("tombstones", ()))
        elif row.action == Action.JOINT_USE_CONFIRMED.value:
            details = json.loads(row.details)
            counter = per.setdefault(details["from"], Counter())
            counter["receipts_applied"] += 1
            counter["erasures_confirmed"] += len(details.get("tombstones_confirmed", ()))
    return {member: dict(sorted(c.items())) for member, c in sorted(per.items())}


def emergency_shares(rows: list[AuditRow]) -> list[dict[str, Any]]:
    """G-SHR-6: every one-off emergency provision, flagged so it cannot pass as routine."""
    return [
        {"flag": "EMERGENCY (not joint use)", "at": r.at, "entry_id": r.entry_id,
         **{k: v for k, v in json.loads(r.details).items()
            if k in ("share_id", "recipient", "checked_by_roles", "checks")}}
        for r in rows if r.action == Action.EMERGENCY_SHARE_PROVIDED.value
    ]


def _check_row(row: AuditRow, expected_seq: int, prev: str) -> ChainProblem | None:
    if row.seq != expected_seq:
        return ChainProblem(expected_seq, f"record {expected_seq} is missing (next is {row.seq})")
    if row.prev_hash != prev:
        return ChainProblem(row.seq, "does not follow the record before it (re-ordered or replaced)")
    digest = record_hash(prev, row.seq, row.at, row.actor, row.action, row.entry_id, row.details)
    if digest != row.hash:
        return ChainProblem(row.seq, "its content was edited after it was written")
    return None

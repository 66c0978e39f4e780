"""The tamper-evident audit trail (REQUIREMENTS, "what follows" 3; G-SHR-4, G-SHR-7).

Every change to the watchlist appends one record in the same transaction as
the change. Each record's hash covers its sequence number, content and the
previous record's hash, so editing, deleting or re-ordering any record breaks
the chain from that point; the newest (seq, hash) is also copied to a head
file outside the database, so cutting records off the end is caught too.
Records carry pseudonymous entry ids, counts and hashes, never a face, a
name or typed text: free text (a reason, an emergency check) can hold a name,
so `record` keeps only its SHA-256 and the text itself goes to the registry,
next to its entry, and is erased with it (G-RET-1).

The trail has its own retention (`audit_retention_years`): `prune` deletes
the oldest records and anchors the (seq, hash) of the last one it deleted,
both in the database and in a second side file, so the remaining chain still
verifies from that base and a deleted anchor or a cut beyond it is caught.

Where the head and base are kept is a `TrailAnchors`: two side files on one
box (`FileAnchors`), or, for a chain's PostgreSQL registry served by several
API hosts, append-only tables of the same database
(`registry.storage.postgres.anchors`). Verification is the same either way.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from kernel.durable import write_private_file
from registry.clock import from_text, to_text
from registry.repository import AuditRow, AuditStore

GENESIS = "0" * 64


class Action(str, Enum):
    """Every kind of change the trail records."""

    REGISTRY_INIT = "registry_init"
    USER_ADD = "user_add"
    USER_ROLE = "user_role"
    USER_TRAINED = "user_trained"
    USER_DISABLED = "user_disabled"
    STORE_ADD = "store_add"  # issue 15, item 1: a store of the operator registered
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
    INDEX_KEY_DELIVERED = "index_key_delivered"  # to a chain's box (issue 15); no key material
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
    # G-RET-1 lifetimes enforced by the nightly job
    ALERT_LAPSED = "alert_lapsed"  # an unjudged alert's snapshot erased after open_alert_days
    ALERT_SNAPSHOTS_SWEPT = "alert_snapshots_swept"  # safety net: snapshots of closed entries
    BACKUP_SCRATCH_SWEPT = "backup_scratch_swept"  # folders a killed backup/restore left
    AUDIT_PRUNED = "audit_pruned"  # records past audit_retention_years deleted, base anchored
    # personal-data breach response (G-BRE-1..4)
    BREACH_OPENED = "breach_opened"
    BREACH_CONTAINMENT = "breach_containment"
    BREACH_TRIAGED = "breach_triaged"
    BREACH_REPORT_DRAFTED = "breach_report_drafted"
    BREACH_STOP_USE_MARKED = "breach_stop_use_marked"
    # issue 10: closed requests' contact, summary and answer text wiped after their lifetime
    REQUEST_RECORDS_WIPED = "request_records_wiped"


# Actions that remove a person's face data; a restore must re-apply them all (G-REG-4).
ERASING_ACTIONS = frozenset({Action.REJECT, Action.WITHDRAW, Action.EXPIRE, Action.ERASE})


# Keys whose values are typed by people: the trail keeps `<key>_sha256` instead (G-RET-1).
FREE_TEXT_KEYS = frozenset({"reason", "present_danger", "necessity", "proportionality"})


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _without_free_text(value: Any, texts: dict[str, str]) -> Any:
    """`value` with every free-text field replaced by its hash; the texts collected by hash."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in FREE_TEXT_KEYS and isinstance(item, str):
                digest = text_sha256(item)
                texts[digest] = item
                out[f"{key}_sha256"] = digest
            else:
                out[key] = _without_free_text(item, texts)
        return out
    if isinstance(value, list | tuple):
        return [_without_free_text(item, texts) for item in value]
    return value


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


Pair = tuple[int, str]  # (seq, hash) of one record


class TrailAnchors(Protocol):
    """Where the trail's head (newest anchored record) and base (last pruned one) are kept,
    outside the records themselves, so cutting the end or the start off is caught."""

    head_name: str  # named in problems: "audit.head", "audit.head_anchors"
    base_name: str

    def head_present(self) -> bool: ...
    def read_head(self) -> Pair | None:
        """The anchored head; None if absent or unreadable (`head_present` tells which)."""
        ...
    def write_head(self, seq: int, digest: str) -> None: ...
    def clear_head(self) -> None:
        """Forget the head (after a restore re-bases the chain)."""
        ...
    def read_base(self) -> Pair | None: ...
    def write_base(self, seq: int, digest: str) -> None:
        """Called before a prune's transaction: a crash leaves the base one prune ahead."""
        ...


class FileAnchors:
    """Head and base as two side files next to the databases (one box, SQLCipher)."""

    def __init__(self, head_file: Path, base_file: Path | None = None) -> None:
        self.head_file = head_file
        self.base_file = base_file or head_file.with_name(head_file.stem + ".base")
        self.head_name = str(head_file)
        self.base_name = self.base_file.name

    def head_present(self) -> bool:
        return self.head_file.is_file()

    def read_head(self) -> Pair | None:
        return _read_pair(self.head_file)

    def write_head(self, seq: int, digest: str) -> None:
        _write_pair(self.head_file, seq, digest)

    def clear_head(self) -> None:
        self.head_file.unlink(missing_ok=True)

    def read_base(self) -> Pair | None:
        return _read_pair(self.base_file)

    def write_base(self, seq: int, digest: str) -> None:
        _write_pair(self.base_file, seq, digest)


class AuditTrail:
    """Appends and verifies records through the repository; anchors the head outside them."""

    def __init__(self, repository: AuditStore, anchors: Path | TrailAnchors,
                 base_file: Path | None = None) -> None:
        """`anchors`: a head file (the base file beside it, or `base_file`), or any store."""
        self._repo = repository
        self._anchors: TrailAnchors = (FileAnchors(anchors, base_file)
                                       if isinstance(anchors, Path) else anchors)

    def record(self, *, actor: str, action: Action, at: datetime, entry_id: str | None = None,
               details: dict[str, Any] | None = None) -> int:
        """Append one record; call inside the use case's unit of work.

        Free text in `details` (FREE_TEXT_KEYS, at any depth) is stored as its
        SHA-256 only; the text is kept in the registry with the entry's lifetime
        (dropped when the record names no entry).
        """
        texts: dict[str, str] = {}
        cleaned = _without_free_text(details or {}, texts)
        if entry_id is not None:
            for digest, free_text in texts.items():
                if free_text:
                    self._repo.add_audit_text(entry_id, digest, free_text)
        last = self._repo.last_audit()
        anchor = self._repo.audit_anchor() if last is None else None
        seq = (last or anchor or (0, GENESIS))[0] + 1
        prev = (last or anchor or (0, GENESIS))[1]
        text = json.dumps(cleaned, ensure_ascii=False, sort_keys=True)
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
        # Read once; asked whether it is present only when it did not read (on PostgreSQL each
        # is a round trip, and this runs after every write: issue 15, 2,000 boxes).
        head = self._anchors.read_head()
        if head is not None or self._anchors.head_present():
            if head == last:
                return  # the newest record is anchored already (so it is in the trail)
            if head is None or self._hash_at(head[0]) != head[1]:
                return  # damaged or left behind: kept for `verify()` to report
        self._anchors.write_head(last[0], last[1])

    def reset_anchor(self) -> None:
        """After a restore the chain is re-based; the old head no longer applies."""
        self._anchors.clear_head()
        self.anchor_head()

    def verify(self) -> ChainReport:
        """Walk the whole chain from its base; name the first record that is wrong.

        The base is genesis, or after pruning the anchored (seq, hash) of the
        last pruned record, which must agree with the `audit.base` side file.
        """
        anchor = self._repo.audit_anchor()
        problem = self._check_base(anchor)
        if problem:
            return ChainReport(0, problem)
        expected_seq, prev = (anchor[0] + 1, anchor[1]) if anchor else (1, GENESIS)
        count = 0
        for row in self._repo.audit_rows():
            problem = _check_row(row, expected_seq, prev)
            if problem:
                return ChainReport(count, problem)
            expected_seq, prev, count = row.seq + 1, row.hash, count + 1
        return ChainReport(count, self._check_head(expected_seq - 1, prev))

    def _check_base(self, anchor: tuple[int, str] | None) -> ChainProblem | None:
        """The database's pruning anchor against the side file written before each prune."""
        base = self._anchors.read_base()
        if base is None:
            if anchor is not None:
                return ChainProblem(anchor[0], f"the pruning anchor {self._anchors.base_name} "
                                               "is missing or unreadable")
            return None
        if anchor is None or base[0] > anchor[0]:
            # A prune writes the file first: until it commits, the record is still there.
            if self._hash_at(base[0]) == base[1]:
                return None
            return ChainProblem(base[0], f"records up to {base[0]} were pruned but the pruning "
                                         "anchor is gone (deleted from the trail)")
        if base[0] < anchor[0]:
            return ChainProblem(base[0] + 1,
                                f"records {base[0] + 1}..{anchor[0]} were deleted beyond the "
                                f"anchored base in {self._anchors.base_name}")
        if base[1] != anchor[1]:
            return ChainProblem(anchor[0], "the pruning anchor differs from "
                                           f"{self._anchors.base_name}")
        return None

    def prune(self, *, before: datetime, now: datetime, actor: str,
              keep: Callable[[AuditRow], bool], details: dict[str, Any]) -> int:
        """Delete the oldest records written before `before`; how many. Call under the lock.

        Stops at the first record that is younger, that `keep` wants kept, or
        that is the newest one, so only a prefix goes and the chain stays whole.
        The side file is written before the transaction: a crash leaves it one
        prune ahead, which `verify` accepts while the record it names is there.
        """
        last = self._repo.last_audit()
        through: AuditRow | None = None
        count = 0
        anchor = self._repo.audit_anchor()
        rows = self._repo.audit_rows(anchor[0] if anchor else 0)
        try:
            for row in rows:
                if last is None or row.seq >= last[0] or from_text(row.at) >= before or keep(row):
                    break
                through, count = row, count + 1
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        if through is None:
            return 0
        self._anchors.write_base(through.seq, through.hash)
        with self._repo.unit_of_work():
            self._repo.prune_audit(through.seq, through.hash, through.at, to_text(now), count)
            self.record(actor=actor, action=Action.AUDIT_PRUNED, at=now,
                        details={**details, "records": count, "through_seq": through.seq,
                                 "through_hash": through.hash, "before": to_text(before)})
        return count

    def _hash_at(self, seq: int) -> str | None:
        """The hash of record `seq`, or None if the trail has no such record."""
        return self._repo.audit_hash(seq)

    def _check_head(self, last_seq: int, last_hash: str) -> ChainProblem | None:
        if not self._anchors.head_present():
            return None
        head = self._anchors.read_head()
        if head is None:
            return ChainProblem(last_seq, f"the anchored head {self._anchors.head_name} is "
                                          "unreadable (damaged or edited): the end of "
                                          "the trail cannot be checked")
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
            "alerts_lapsed": counts.get(Action.ALERT_LAPSED.value, 0),
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


def _read_pair(path: Path) -> tuple[int, str] | None:
    """A side file's "seq hash"; None if it is missing or unreadable (damaged, edited)."""
    try:
        text = path.read_bytes().decode("ascii")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None
    seq_text, _, hash_text = text.strip().partition(" ")
    if not seq_text.isdigit() or len(hash_text) != len(GENESIS):
        return None
    return int(seq_text), hash_text


def _write_pair(path: Path, seq: int, digest: str) -> None:
    write_private_file(path, f"{seq} {digest}\n".encode("ascii"))


def _check_row(row: AuditRow, expected_seq: int, prev: str) -> ChainProblem | None:
    if row.seq != expected_seq:
        return ChainProblem(expected_seq, f"record {expected_seq} is missing (next is {row.seq})")
    if row.prev_hash != prev:
        return ChainProblem(
            row.seq, "does not follow the record before it (re-ordered or replaced)")
    digest = record_hash(prev, row.seq, row.at, row.actor, row.action, row.entry_id, row.details)
    if digest != row.hash:
        return ChainProblem(row.seq, "its content was edited after it was written")
    return None

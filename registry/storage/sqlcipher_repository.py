"""`RegistryRepository` on the embedded SQLCipher files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.errors import ConflictError, NotFoundError
from registry.clock import from_text, to_text
from registry.domain import (
    Alert,
    AlertStatus,
    ConfirmationKind,
    Device,
    EmergencyCheck,
    EmergencyShare,
    Entry,
    EntryState,
    ErasureConfirmation,
    EvidenceRecord,
    HeldCopy,
    ImportedEntry,
    InboundState,
    Incident,
    IncidentInput,
    LoginFailures,
    OffenceCategory,
    Role,
    SentBundle,
    SentItem,
    TemplateRecord,
    User,
    WebSession,
)
from registry.repository import AuditRow
from registry.storage.database import Connection, transaction

_ENTRY_COLUMNS = (
    "entry_id, state, store_id, features, display_name, proposed_by, proposed_at, decided_by, "
    "decided_at, decision_reason, expires_at, revision, closed_at, closed_reason"
)
_DEVICE_COLUMNS = "device_id, name, created_at, active"
_SESSION_COLUMNS = "session_id, user_id, created_at, last_seen_at, csrf_token, expires_at"
_ALERT_COLUMNS = (
    "alert_id, device, camera, detected_at, received_at, score, threshold, entry_id, "
    "index_version, snapshot_image_id, status, decided_by, decided_at, decision_reason"
)


@dataclass(frozen=True)
class _AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    entry_id: str | None
    details: str
    prev_hash: str
    hash: str


def _user(row: Any) -> User:
    return User(
        user_id=row[0], username=row[1], role=Role(row[2]),
        trained_at=from_text(row[3]) if row[3] else None, active=bool(row[4]),
    )


def _entry(row: Any) -> Entry:
    return Entry(
        entry_id=row[0], state=EntryState(row[1]), store_id=row[2], features=row[3],
        display_name=row[4], proposed_by=row[5], proposed_at=from_text(row[6]),
        decided_by=row[7], decided_at=from_text(row[8]) if row[8] else None,
        decision_reason=row[9], expires_at=from_text(row[10]) if row[10] else None,
        revision=row[11], closed_at=from_text(row[12]) if row[12] else None,
        closed_reason=row[13],
    )


def _device(row: Any) -> Device:
    return Device(device_id=row[0], name=row[1], created_at=from_text(row[2]),
                  active=bool(row[3]))


def _alert(row: Any) -> Alert:
    return Alert(
        alert_id=row[0], device=row[1], camera=row[2], detected_at=from_text(row[3]),
        received_at=from_text(row[4]), score=row[5], threshold=row[6], entry_id=row[7],
        index_version=row[8], snapshot_image_id=row[9], status=AlertStatus(row[10]),
        decided_by=row[11], decided_at=from_text(row[12]) if row[12] else None,
        decision_reason=row[13],
    )


def _web_session(row: Any) -> WebSession:
    return WebSession(session_id=row[0], user_id=row[1], created_at=from_text(row[2]),
                      last_seen_at=from_text(row[3]), csrf_token=row[4],
                      expires_at=from_text(row[5]))


def _incident(row: Any) -> Incident:
    return Incident(
        incident_id=row[0], entry_id=row[1], store_id=row[2], category=OffenceCategory(row[3]),
        occurred_at=from_text(row[4]), confirmation_kind=ConfirmationKind(row[5]),
        confirmation_ref=row[6], damage=row[7], description=row[8], recorded_by=row[9],
        recorded_at=from_text(row[10]),
    )


class SqlCipherRepository:
    """Every query of the registry, on one connection; commits only in `unit_of_work`."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._depth = 0

    @property
    def connection(self) -> Connection:
        return self._db

    def rebind(self, connection: Connection) -> None:
        """Use a new connection (after a restore replaced the database file)."""
        self._db = connection

    def unit_of_work(self) -> AbstractContextManager[None]:
        return self._unit_of_work()

    @contextmanager
    def _unit_of_work(self) -> Iterator[None]:
        if self._depth:  # nested use cases join the outer transaction
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with transaction(self._db):
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._db.execute(sql, params).fetchone()

    # users ---------------------------------------------------------------
    def add_user(self, username: str, role: Role, password_hash: str, now: datetime) -> User:
        cursor = self._db.execute(
            "INSERT INTO users (username, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (username, role.value, password_hash, to_text(now)),
        )
        return User(int(cursor.lastrowid or 0), username, role, None, True)

    def user_by_name(self, username: str) -> User | None:
        row = self._one(
            "SELECT user_id, username, role, trained_at, active FROM users WHERE username = ?",
            (username,),
        )
        return _user(row) if row else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self._one(
            "SELECT user_id, username, role, trained_at, active FROM users WHERE user_id = ?",
            (user_id,),
        )
        return _user(row) if row else None

    def password_hash_of(self, username: str) -> str | None:
        row = self._one("SELECT password_hash FROM users WHERE username = ?", (username,))
        return str(row[0]) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._db.execute(
            "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
        )

    def set_trained(self, user_id: int, at: datetime) -> None:
        self._db.execute(
            "UPDATE users SET trained_at = ? WHERE user_id = ?", (to_text(at), user_id))

    def set_role(self, user_id: int, role: Role) -> None:
        self._db.execute("UPDATE users SET role = ? WHERE user_id = ?", (role.value, user_id))

    def set_active(self, user_id: int, active: bool) -> None:
        self._db.execute("UPDATE users SET active = ? WHERE user_id = ?", (int(active), user_id))

    def users(self) -> list[User]:
        rows = self._db.execute(
            "SELECT user_id, username, role, trained_at, active FROM users ORDER BY username"
        )
        return [_user(r) for r in rows]

    def username_of(self, user_id: int) -> str:
        row = self._one("SELECT username FROM users WHERE user_id = ?", (user_id,))
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        return str(row[0])

    # entries and incidents --------------------------------------------------
    def add_entry(self, entry: Entry) -> None:
        self._db.execute(
            f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            _entry_params(entry),
        )

    def entry(self, entry_id: str) -> Entry | None:
        row = self._one(f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE entry_id = ?", (entry_id,))
        return _entry(row) if row else None

    def entries(self, states: Sequence[EntryState] | None = None) -> list[Entry]:
        if states is None:
            rows = self._db.execute(f"SELECT {_ENTRY_COLUMNS} FROM entries ORDER BY proposed_at")
        else:
            marks = ", ".join("?" * len(states))
            rows = self._db.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state IN ({marks}) "
                "ORDER BY proposed_at",
                [s.value for s in states],
            )
        return [_entry(r) for r in rows]

    def set_criteria_version(self, entry_id: str, sha256: str, category: str, criteria: str,
                             at: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO registration_criteria (sha256, category, criteria, "
            "first_used_at) VALUES (?, ?, ?, ?)", (sha256, category, criteria, to_text(at)))
        cursor = self._db.execute("UPDATE entries SET criteria_sha256 = ? WHERE entry_id = ?",
                                  (sha256, entry_id))
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry_id}")

    def criteria_version_of(self, entry_id: str) -> tuple[str, str] | None:
        row = self._one(
            "SELECT e.criteria_sha256, c.criteria FROM entries e JOIN registration_criteria c "
            "ON c.sha256 = e.criteria_sha256 WHERE e.entry_id = ?", (entry_id,))
        return (str(row[0]), str(row[1])) if row else None

    def due_for_expiry(self, now: datetime) -> list[Entry]:
        rows = self._db.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE state = 'active' AND expires_at <= ? "
            "ORDER BY expires_at",
            (to_text(now),),
        )
        return [_entry(r) for r in rows]

    def update_entry(self, entry: Entry) -> None:
        params = _entry_params(entry)
        assignments = ", ".join(f"{c.strip()} = ?" for c in _ENTRY_COLUMNS.split(",")[1:])
        cursor = self._db.execute(
            f"UPDATE entries SET {assignments} WHERE entry_id = ?", (*params[1:], params[0])
        )
        if cursor.rowcount != 1:
            raise NotFoundError(f"no entry {entry.entry_id}")

    def add_incident(
        self, entry_id: str, store_id: str, incident: IncidentInput, by: int, now: datetime
    ) -> Incident:
        cursor = self._db.execute(
            "INSERT INTO incidents (entry_id, store_id, category, occurred_at, confirmation_kind, "
            "confirmation_ref, damage, description, recorded_by, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry_id, store_id, incident.category.value, to_text(incident.occurred_at),
                incident.confirmation_kind.value, incident.confirmation_ref, incident.damage,
                incident.description, by, to_text(now),
            ),
        )
        return Incident(
            int(cursor.lastrowid or 0), entry_id, store_id, incident.category, incident.occurred_at,
            incident.confirmation_kind, incident.confirmation_ref, incident.damage,
            incident.description, by, now,
        )

    def incidents(self, entry_id: str) -> list[Incident]:
        rows = self._db.execute(
            "SELECT incident_id, entry_id, store_id, category, occurred_at, confirmation_kind, "
            "confirmation_ref, damage, description, recorded_by, recorded_at FROM incidents "
            "WHERE entry_id = ? ORDER BY occurred_at",
            (entry_id,),
        )
        return [_incident(r) for r in rows]

    # face data ---------------------------------------------------------------
    def add_template(
        self, entry_id: str, pack: str, vector: bytes, dim: int, image_id: str, quality: str
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO templates (entry_id, pack, dim, vector, image_id, quality) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry_id, pack, dim, vector, image_id, quality),
        )
        return int(cursor.lastrowid or 0)

    def templates(self, entry_id: str) -> list[TemplateRecord]:
        rows = self._db.execute(
            "SELECT template_id, entry_id, pack, vector, image_id, quality FROM templates "
            "WHERE entry_id = ? ORDER BY template_id",
            (entry_id,),
        )
        return [TemplateRecord(*r) for r in rows]

    def active_templates(self, pack: str) -> list[TemplateRecord]:
        rows = self._db.execute(
            "SELECT t.template_id, t.entry_id, t.pack, t.vector, t.image_id, t.quality "
            "FROM templates t JOIN entries e ON e.entry_id = t.entry_id "
            "WHERE e.state = 'active' AND t.pack = ? "
            "AND e.entry_id NOT IN (SELECT entry_id FROM entry_suspensions) "
            "ORDER BY t.template_id",
            (pack,),
        )
        return [TemplateRecord(*r) for r in rows]

    def add_evidence(self, record: EvidenceRecord) -> None:
        self._db.execute(
            "INSERT INTO evidence (image_id, entry_id, sha256, masked_faces, added_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (record.image_id, record.entry_id, record.sha256, record.masked_faces,
             to_text(record.added_at)),
        )

    def evidence(self, entry_id: str) -> list[EvidenceRecord]:
        rows = self._db.execute(
            "SELECT image_id, entry_id, sha256, masked_faces, added_at FROM evidence "
            "WHERE entry_id = ? ORDER BY added_at, image_id",
            (entry_id,),
        )
        return [EvidenceRecord(r[0], r[1], r[2], r[3], from_text(r[4])) for r in rows]

    def all_evidence_ids(self) -> set[str]:
        rows = self._db.execute(
            "SELECT image_id FROM evidence UNION "
            "SELECT snapshot_image_id FROM alerts WHERE snapshot_image_id IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    def purge_face_data(self, entry_id: str) -> list[str]:
        image_ids = [
            str(r[0])
            for r in self._db.execute(
                "SELECT image_id FROM evidence WHERE entry_id = ?", (entry_id,))
        ]
        image_ids += [
            str(r[0])
            for r in self._db.execute(
                "SELECT snapshot_image_id FROM alerts "
                "WHERE entry_id = ? AND snapshot_image_id IS NOT NULL",
                (entry_id,),
            )
        ]
        for table in ("templates", "evidence", "incidents", "audit_texts"):
            self._db.execute(f"DELETE FROM {table} WHERE entry_id = ?", (entry_id,))
        # The alerts stay as a record that a match happened; the picture of the person and
        # what staff typed about it go (the audit trail keeps that text's hash only).
        self._db.execute(
            "UPDATE alerts SET snapshot_image_id = NULL, decision_reason = '' WHERE entry_id = ?",
            (entry_id,),
        )
        return image_ids

    def add_audit_text(self, entry_id: str, sha256: str, text: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO audit_texts (entry_id, sha256, text) VALUES (?, ?, ?)",
            (entry_id, sha256, text),
        )

    def audit_text(self, entry_id: str, sha256: str) -> str | None:
        row = self._one("SELECT text FROM audit_texts WHERE entry_id = ? AND sha256 = ?",
                        (entry_id, sha256))
        return str(row[0]) if row else None

    # edge devices ---------------------------------------------------------------
    def add_device(self, name: str, token_sha256: str, now: datetime) -> Device:
        cursor = self._db.execute(
            "INSERT INTO devices (name, token_sha256, created_at) VALUES (?, ?, ?)",
            (name, token_sha256, to_text(now)),
        )
        return Device(int(cursor.lastrowid or 0), name, from_text(to_text(now)), True)

    def device_by_name(self, name: str) -> Device | None:
        row = self._one(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE name = ?", (name,))
        return _device(row) if row else None

    def device_by_token_hash(self, token_sha256: str) -> Device | None:
        row = self._one(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE token_sha256 = ?", (token_sha256,)
        )
        return _device(row) if row else None

    def devices(self) -> list[Device]:
        return [_device(r) for r in
                self._db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY name")]

    def set_device_active(self, device_id: int, active: bool) -> None:
        self._db.execute(
            "UPDATE devices SET active = ? WHERE device_id = ?", (int(active), device_id)
        )

    # alerts -----------------------------------------------------------------------
    def add_alert(self, alert: Alert) -> None:
        self._db.execute(
            f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            (
                alert.alert_id, alert.device, alert.camera, to_text(alert.detected_at),
                to_text(alert.received_at), alert.score, alert.threshold, alert.entry_id,
                alert.index_version, alert.snapshot_image_id, alert.status.value,
                alert.decided_by, to_text(alert.decided_at) if alert.decided_at else None,
                alert.decision_reason,
            ),
        )

    def alert(self, alert_id: str) -> Alert | None:
        row = self._one(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
        return _alert(row) if row else None

    def alerts(self, status: AlertStatus | None = None) -> list[Alert]:
        if status is None:
            rows = self._db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY received_at, alert_id"
            )
        else:
            rows = self._db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE status = ? "
                "ORDER BY received_at, alert_id",
                (status.value,),
            )
        return [_alert(r) for r in rows]

    def decide_alert(self, alert: Alert) -> None:
        cursor = self._db.execute(
            "UPDATE alerts SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, "
            "snapshot_image_id = ? WHERE alert_id = ? AND status = 'open'",
            (alert.status.value, alert.decided_by,
             to_text(alert.decided_at) if alert.decided_at else None, alert.decision_reason,
             alert.snapshot_image_id, alert.alert_id),
        )
        if cursor.rowcount != 1:
            raise ConflictError(f"alert {alert.alert_id} was already decided")

    def stray_alert_snapshots(self) -> list[tuple[str, str]]:
        """(alert id, snapshot id) of snapshots whose entry is no longer active."""
        rows = self._db.execute(
            "SELECT a.alert_id, a.snapshot_image_id FROM alerts a "
            "LEFT JOIN entries e ON e.entry_id = a.entry_id "
            "WHERE a.snapshot_image_id IS NOT NULL AND (e.state IS NULL OR e.state != 'active') "
            "ORDER BY a.alert_id"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def clear_alert_snapshot(self, alert_id: str) -> None:
        self._db.execute("UPDATE alerts SET snapshot_image_id = NULL WHERE alert_id = ?",
                         (alert_id,))

    def alert_counts(self) -> list[tuple[str, AlertStatus, int]]:
        rows = self._db.execute(
            "SELECT device, status, count(*) FROM alerts GROUP BY device, status "
            "ORDER BY device, status"
        )
        return [(str(r[0]), AlertStatus(r[1]), int(r[2])) for r in rows]

    # web sessions and login lockout ---------------------------------------------
    def add_web_session(self, session: WebSession) -> None:
        self._db.execute(
            f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (session.session_id, session.user_id, to_text(session.created_at),
             to_text(session.last_seen_at), session.csrf_token, to_text(session.expires_at)),
        )

    def web_session(self, session_id: str) -> WebSession | None:
        row = self._one(
            f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE session_id = ?", (session_id,)
        )
        return _web_session(row) if row else None

    def touch_web_session(self, session_id: str, at: datetime) -> None:
        self._db.execute(
            "UPDATE web_sessions SET last_seen_at = ? WHERE session_id = ?",
            (to_text(at), session_id),
        )

    def delete_web_session(self, session_id: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE session_id = ?", (session_id,))

    def delete_stale_web_sessions(self, *, idle_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM web_sessions WHERE last_seen_at < ? OR expires_at <= ?",
            (to_text(idle_before), to_text(now)),
        )
        return int(cursor.rowcount)

    def delete_all_web_sessions(self) -> int:
        return int(self._db.execute("DELETE FROM web_sessions").rowcount)

    def login_failures(self, name_key: str) -> LoginFailures | None:
        row = self._one(
            "SELECT name_sha256, failures, last_failure_at, locked_until FROM login_failures "
            "WHERE name_sha256 = ?",
            (name_key,),
        )
        if row is None:
            return None
        return LoginFailures(row[0], int(row[1]), from_text(row[2]),
                             from_text(row[3]) if row[3] else None)

    def record_login_failure(self, name_key: str, at: datetime) -> int:
        self._db.execute(
            "INSERT INTO login_failures (name_sha256, failures, last_failure_at) "
            "VALUES (?, 1, ?) ON CONFLICT (name_sha256) DO UPDATE SET "
            "failures = failures + 1, last_failure_at = excluded.last_failure_at",
            (name_key, to_text(at)),
        )
        return int(self._one(
            "SELECT failures FROM login_failures WHERE name_sha256 = ?", (name_key,))[0])

    def lock_login(self, name_key: str, until: datetime) -> None:
        self._db.execute(
            "UPDATE login_failures SET locked_until = ? WHERE name_sha256 = ?",
            (to_text(until), name_key),
        )

    def clear_login_failures(self, name_key: str) -> None:
        self._db.execute("DELETE FROM login_failures WHERE name_sha256 = ?", (name_key,))

    def prune_login_failures(self, *, last_failure_before: datetime, now: datetime) -> int:
        cursor = self._db.execute(
            "DELETE FROM login_failures WHERE last_failure_at < ? "
            "AND (locked_until IS NULL OR locked_until <= ?)",
            (to_text(last_failure_before), to_text(now)),
        )
        return int(cursor.rowcount)

    # index version -------------------------------------------------------------
    def watchlist_version(self) -> int:
        return int(self._one("SELECT value FROM meta WHERE key = 'watchlist_version'")[0])

    def bump_watchlist_version(self) -> int:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'watchlist_version'"
        )
        return self.watchlist_version()

    def raise_watchlist_version(self, at_least: int) -> int:
        self._db.execute(
            "UPDATE meta SET value = max(CAST(value AS INTEGER), ?)"
            " WHERE key = 'watchlist_version'",
            (at_least,),
        )
        return self.watchlist_version()

    # joint use -------------------------------------------------------------------
    def add_adopted_scheme(self, sha256: str, at: datetime, content: bytes) -> None:
        self._db.execute(
            "INSERT INTO joint_use_schemes (sha256, adopted_at, content) VALUES (?, ?, ?)",
            (sha256, to_text(at), content),
        )

    def adopted_schemes(self) -> list[tuple[str, datetime, bytes]]:
        rows = self._db.execute(
            "SELECT sha256, adopted_at, content FROM joint_use_schemes ORDER BY seq")
        return [(str(r[0]), from_text(r[1]), bytes(r[2])) for r in rows]

    def current_scheme_sha256(self) -> str | None:
        row = self._one("SELECT sha256 FROM joint_use_schemes ORDER BY seq DESC LIMIT 1")
        return str(row[0]) if row else None

    def suspend_entry(self, entry_id: str, since: datetime, source: str) -> None:
        self._db.execute(
            "INSERT INTO entry_suspensions (entry_id, since, source) VALUES (?, ?, ?) "
            "ON CONFLICT (entry_id) DO NOTHING",
            (entry_id, to_text(since), source),
        )

    def unsuspend_entry(self, entry_id: str) -> None:
        self._db.execute("DELETE FROM entry_suspensions WHERE entry_id = ?", (entry_id,))

    def suspended_entries(self) -> dict[str, str]:
        return {str(r[0]): str(r[1])
                for r in self._db.execute("SELECT entry_id, source FROM entry_suspensions")}

    def add_sent_bundle(self, bundle: SentBundle) -> None:
        self._db.execute(
            "INSERT INTO joint_use_sent_bundles (member_id, bundle_sha256, sequence, created_at) "
            "VALUES (?, ?, ?, ?)",
            (bundle.member_id, bundle.bundle_sha256, bundle.sequence, to_text(bundle.created_at)),
        )
        self._db.executemany(
            "INSERT INTO joint_use_sent_items (member_id, bundle_sha256, entry_id, kind, revision) "
            "VALUES (?, ?, ?, ?, ?)",
            [(bundle.member_id, bundle.bundle_sha256, i.entry_id, i.kind, i.revision)
             for i in bundle.items],
        )

    def sent_bundles(self, member_id: str) -> list[SentBundle]:
        heads = self._db.execute(
            "SELECT bundle_sha256, sequence, created_at FROM joint_use_sent_bundles "
            "WHERE member_id = ? ORDER BY created_at, sequence", (member_id,),
        ).fetchall()
        bundles = []
        for sha, sequence, created_at in heads:
            items = tuple(SentItem(str(r[0]), str(r[1]), int(r[2])) for r in self._db.execute(
                "SELECT entry_id, kind, revision FROM joint_use_sent_items "
                "WHERE member_id = ? AND bundle_sha256 = ? ORDER BY rowid", (member_id, sha)))
            bundles.append(SentBundle(member_id, str(sha), int(sequence), from_text(created_at),
                                      items))
        return bundles

    def last_acked_sequence(self, member_id: str) -> int:
        row = self._one("SELECT last_acked_sequence FROM joint_use_outbound WHERE member_id = ?",
                        (member_id,))
        return int(row[0]) if row else 0

    def acknowledge_bundle(self, member_id: str, sequence: int, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO joint_use_outbound (member_id, last_acked_sequence, acked_at) "
            "VALUES (?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET "
            "last_acked_sequence = excluded.last_acked_sequence, acked_at = excluded.acked_at",
            (member_id, sequence, to_text(at)),
        )
        self._db.execute(
            "DELETE FROM joint_use_sent_items WHERE member_id = ? AND bundle_sha256 IN "
            "(SELECT bundle_sha256 FROM joint_use_sent_bundles WHERE member_id = ? "
            "AND sequence <= ?)", (member_id, member_id, sequence),
        )
        self._db.execute(
            "DELETE FROM joint_use_sent_bundles WHERE member_id = ? AND sequence <= ?",
            (member_id, sequence),
        )

    def held_copies(self, member_id: str) -> dict[str, HeldCopy]:
        rows = self._db.execute(
            "SELECT member_id, entry_id, revision, suspended, closed FROM joint_use_held "
            "WHERE member_id = ?", (member_id,),
        )
        return {str(r[1]): HeldCopy(str(r[0]), str(r[1]), int(r[2]), bool(r[3]), bool(r[4]))
                for r in rows}

    def set_held_copy(self, copy: HeldCopy) -> None:
        self._db.execute(
            "INSERT INTO joint_use_held (member_id, entry_id, revision, suspended, closed) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (member_id, entry_id) DO UPDATE SET "
            "revision = excluded.revision, suspended = excluded.suspended, "
            "closed = excluded.closed",
            (copy.member_id, copy.entry_id, copy.revision, int(copy.suspended), int(copy.closed)),
        )

    def add_erasure_confirmation(self, confirmation: ErasureConfirmation) -> None:
        c = confirmation
        self._db.execute(
            "INSERT INTO joint_use_erasure_confirmations "
            "(entry_id, member_id, sequence, confirmed_at, recorded_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (entry_id, member_id) DO NOTHING",
            (c.entry_id, c.member_id, c.sequence, to_text(c.confirmed_at), to_text(c.recorded_at)),
        )

    def erasure_confirmations(self, entry_id: str) -> list[ErasureConfirmation]:
        rows = self._db.execute(
            "SELECT entry_id, member_id, sequence, confirmed_at, recorded_at "
            "FROM joint_use_erasure_confirmations WHERE entry_id = ? ORDER BY member_id",
            (entry_id,),
        )
        return [ErasureConfirmation(str(r[0]), str(r[1]), int(r[2]), from_text(r[3]),
                                    from_text(r[4])) for r in rows]

    def add_imported_entry(self, imported: ImportedEntry) -> None:
        self._db.execute(
            f"INSERT INTO joint_use_imports ({_IMPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            _import_params(imported),
        )

    def update_imported_entry(self, imported: ImportedEntry) -> None:
        params = _import_params(imported)
        self._db.execute(
            "UPDATE joint_use_imports SET origin_revision = ?, origin_expires_at = ?, "
            "updated_at = ? WHERE entry_id = ?", (params[3], params[4], params[6], params[0]),
        )

    def supersede_imported_entry(self, entry_id: str) -> None:
        self._db.execute("UPDATE joint_use_imports SET superseded = 1 WHERE entry_id = ?",
                         (entry_id,))

    def imported_entry(self, entry_id: str) -> ImportedEntry | None:
        row = self._one(f"SELECT {_IMPORT_COLUMNS} FROM joint_use_imports WHERE entry_id = ?",
                        (entry_id,))
        return _imported(row) if row else None

    def imported_by_origin(self, origin_member: str, origin_entry_id: str
                           ) -> ImportedEntry | None:
        row = self._one(
            f"SELECT {_IMPORT_COLUMNS} FROM joint_use_imports WHERE origin_member = ? "
            "AND origin_entry_id = ? AND superseded = 0", (origin_member, origin_entry_id),
        )
        return _imported(row) if row else None

    def imported_entry_ids(self) -> set[str]:
        return {str(r[0]) for r in self._db.execute("SELECT entry_id FROM joint_use_imports")}

    def joint_use_intake_user(self, now: datetime) -> int:
        # The name breaks the user-name rule on purpose: nobody can create or log in as it.
        row = self._one("SELECT user_id FROM users WHERE username = ?", (_INTAKE_USER,))
        if row:
            return int(row[0])
        cursor = self._db.execute(
            "INSERT INTO users (username, role, password_hash, active, created_at) "
            "VALUES (?, 'staff', '!', 0, ?)", (_INTAKE_USER, to_text(now)),
        )
        return int(cursor.lastrowid or 0)

    def inbound_state(self, member_id: str) -> InboundState | None:
        row = self._one(
            "SELECT member_id, last_sequence, bundle_sha256, applied_at, receipt "
            "FROM joint_use_inbound WHERE member_id = ?", (member_id,),
        )
        return _inbound(row) if row else None

    def inbound_states(self) -> list[InboundState]:
        rows = self._db.execute(
            "SELECT member_id, last_sequence, bundle_sha256, applied_at, receipt "
            "FROM joint_use_inbound ORDER BY member_id")
        return [_inbound(r) for r in rows]

    def set_inbound_state(self, state: InboundState) -> None:
        self._db.execute(
            "INSERT INTO joint_use_inbound (member_id, last_sequence, bundle_sha256, applied_at, "
            "receipt) VALUES (?, ?, ?, ?, ?) ON CONFLICT (member_id) DO UPDATE SET "
            "last_sequence = excluded.last_sequence, bundle_sha256 = excluded.bundle_sha256, "
            "applied_at = excluded.applied_at, receipt = excluded.receipt",
            (state.member_id, state.last_sequence, state.bundle_sha256,
             to_text(state.applied_at), state.receipt),
        )

    def add_emergency_share(self, share: EmergencyShare) -> None:
        self._db.execute(
            "INSERT INTO emergency_shares (share_id, entry_id, recipient, requested_by, "
            "requested_at, state, provided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (share.share_id, share.entry_id, share.recipient, share.requested_by,
             to_text(share.requested_at), share.state,
             to_text(share.provided_at) if share.provided_at else None),
        )

    def emergency_share(self, share_id: str) -> EmergencyShare | None:
        row = self._one(
            "SELECT share_id, entry_id, recipient, requested_by, requested_at, state, provided_at "
            "FROM emergency_shares WHERE share_id = ?", (share_id,),
        )
        if row is None:
            return None
        return EmergencyShare(str(row[0]), str(row[1]), str(row[2]), int(row[3]),
                              from_text(row[4]), str(row[5]),
                              from_text(row[6]) if row[6] else None)

    def set_emergency_share_state(self, share_id: str, state: str, at: datetime | None) -> None:
        self._db.execute(
            "UPDATE emergency_shares SET state = ?, provided_at = ? WHERE share_id = ?",
            (state, to_text(at) if at else None, share_id),
        )

    def add_emergency_check(self, check: EmergencyCheck) -> None:
        self._db.execute(
            "INSERT INTO emergency_share_checks (share_id, user_id, role, present_danger, "
            "necessity, proportionality, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (check.share_id, check.user_id, check.role.value, check.present_danger,
             check.necessity, check.proportionality, to_text(check.checked_at)),
        )

    def emergency_checks(self, share_id: str) -> list[EmergencyCheck]:
        rows = self._db.execute(
            "SELECT share_id, user_id, role, present_danger, necessity, proportionality, "
            "checked_at FROM emergency_share_checks WHERE share_id = ? ORDER BY checked_at",
            (share_id,),
        )
        return [EmergencyCheck(str(r[0]), int(r[1]), Role(r[2]), str(r[3]), str(r[4]),
                               str(r[5]), from_text(r[6])) for r in rows]

    # audit trail -----------------------------------------------------------------
    def append_audit(
        self, at: str, actor: str, action: str, entry_id: str | None, details: str,
        prev_hash: str, hash_: str,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO audit.records (at, actor, action, entry_id, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, actor, action, entry_id, details, prev_hash, hash_),
        )
        return int(cursor.lastrowid or 0)

    def last_audit(self) -> tuple[int, str] | None:
        row = self._one("SELECT seq, hash FROM audit.records ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else None

    def last_audit_details(self, action: str) -> str | None:
        row = self._one("SELECT details FROM audit.records WHERE action = ? "
                        "ORDER BY seq DESC LIMIT 1", (action,))
        return str(row[0]) if row else None

    def audit_anchor(self) -> tuple[int, str] | None:
        row = self._one("SELECT seq, hash FROM audit.prune_anchors ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else None

    def prune_audit(self, through_seq: int, hash_: str, record_at: str, pruned_at: str,
                    records: int) -> None:
        # The anchor first: the delete trigger allows no record after the newest anchor.
        self._db.execute(
            "INSERT INTO audit.prune_anchors (seq, hash, record_at, pruned_at, records) "
            "VALUES (?, ?, ?, ?, ?)",
            (through_seq, hash_, record_at, pruned_at, records),
        )
        self._db.execute("DELETE FROM audit.records WHERE seq <= ?", (through_seq,))

    def audit_rows(self, since_seq: int = 0) -> Iterator[AuditRow]:
        rows = self._db.execute(
            "SELECT seq, at, actor, action, entry_id, details, prev_hash, hash "
            "FROM audit.records WHERE seq > ? ORDER BY seq",
            (since_seq,),
        )
        for row in rows:
            yield _AuditRow(*row)


_INTAKE_USER = "joint-use:intake"
_IMPORT_COLUMNS = (
    "entry_id, origin_member, origin_entry_id, origin_revision, origin_expires_at, imported_at, "
    "updated_at"
)


def _import_params(imported: ImportedEntry) -> tuple[Any, ...]:
    return (imported.entry_id, imported.origin_member, imported.origin_entry_id,
            imported.origin_revision, to_text(imported.origin_expires_at),
            to_text(imported.imported_at), to_text(imported.updated_at))


def _imported(row: Any) -> ImportedEntry:
    return ImportedEntry(str(row[0]), str(row[1]), str(row[2]), int(row[3]), from_text(row[4]),
                         from_text(row[5]), from_text(row[6]))


def _inbound(row: Any) -> InboundState:
    return InboundState(str(row[0]), int(row[1]), str(row[2]), from_text(row[3]), bytes(row[4]))


def _entry_params(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.entry_id, entry.state.value, entry.store_id, entry.features, entry.display_name,
        entry.proposed_by, to_text(entry.proposed_at), entry.decided_by,
        to_text(entry.decided_at) if entry.decided_at else None, entry.decision_reason,
        to_text(entry.expires_at) if entry.expires_at else None, entry.revision,
        to_text(entry.closed_at) if entry.closed_at else None, entry.closed_reason,
    )

"""Joint use (G-SHR-1..7) on SQLCipher: the scheme, both sides of the exchange, emergencies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from registry.clock import from_text, to_text
from registry.domain import (
    EmergencyCheck,
    EmergencyShare,
    ErasureConfirmation,
    HeldCopy,
    ImportedEntry,
    InboundState,
    Role,
    SentBundle,
    SentItem,
)
from registry.storage.sqlcipher.base import SqlCipherStore

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


class SqlCipherSchemes(SqlCipherStore):
    """`SchemeRepository`: the `joint_use_schemes` table."""

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


class SqlCipherOutbound(SqlCipherStore):
    """`OutboundRepository`: the origin's `joint_use_sent_*`, `joint_use_outbound`,
    `joint_use_held` and `joint_use_erasure_confirmations` tables."""

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


class SqlCipherInbound(SqlCipherStore):
    """`InboundRepository`: the receiver's `joint_use_imports` and `joint_use_inbound`
    tables, and the intake pseudo-user in `users`."""

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


class SqlCipherEmergencyShares(SqlCipherStore):
    """`EmergencyShareRepository`: the `emergency_shares` and `emergency_share_checks` tables."""

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

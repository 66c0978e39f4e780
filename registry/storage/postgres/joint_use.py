"""Joint use (G-SHR-1..7) on PostgreSQL: the scheme, both sides of the exchange, emergencies.

The same queries as `registry.storage.sqlcipher.joint_use`, with what a chain's
server database needs on top:

- **Sealed fields**: an emergency share's recipient and the three reasons of
  each check (G-SHR-6) are personal and leave the process only as
  `FieldSealer` ciphertext bound to their row (the share id; the share id and
  the checker). Their non-blank CHECKs moved here from the SQLCipher schema.
  A scheme's content and an inbound receipt are signed documents: stored
  byte-exact (`NOT_PERSONAL_BYTEA`), never re-encoded.
- **Several API workers**: on SQLCipher one file lock (`RegistryContext.writing`)
  serialises every writer, so a sequence read and then written cannot be
  overtaken. A chain runs several workers on several hosts, so the database
  keeps the per-member sequences straight itself: at most one sent bundle per
  member and sequence (schema step 2, a UNIQUE constraint), and the
  acknowledged and applied sequences only ever move forward (the upsert's
  WHERE is re-checked on the row locked by the other worker's transaction).
  The worker that loses such a race gets `ConflictError` and its whole unit
  of work rolls back, instead of a second bundle #n or a sequence moving back.
- Writes of several statements run in one transaction of their own (a
  savepoint inside a unit of work), so none is left half done outside one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from psycopg import errors

from kernel.errors import ConflictError
from registry.clock import checked
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
from registry.storage.postgres.base import PostgresStore, utc

_INTAKE_USER = "joint-use:intake"
_IMPORT_COLUMNS = (
    "entry_id, origin_member, origin_entry_id, origin_revision, origin_expires_at, imported_at, "
    "updated_at"
)
# Schema step 2: one sent bundle per member and sequence, whichever worker exported it.
SENT_SEQUENCE_UNIQUE = "joint_use_sent_bundles_sequence_unique"


def _at(moment: datetime) -> datetime:
    """A time to store: aware and within the registry's range, as SQLCipher's `to_text`
    refuses (`TimestampError`) anything else."""
    return checked(moment)


def _aware(moment: datetime) -> datetime:
    """A stored (NOT NULL) time as read back: aware UTC."""
    back = utc(moment)
    assert back is not None
    return back


def _import_params(imported: ImportedEntry) -> tuple[Any, ...]:
    return (imported.entry_id, imported.origin_member, imported.origin_entry_id,
            imported.origin_revision, _at(imported.origin_expires_at),
            _at(imported.imported_at), _at(imported.updated_at))


def _imported(row: Any) -> ImportedEntry:
    return ImportedEntry(str(row[0]), str(row[1]), str(row[2]), int(row[3]), _aware(row[4]),
                         _aware(row[5]), _aware(row[6]))


def _inbound(row: Any) -> InboundState:
    return InboundState(str(row[0]), int(row[1]), str(row[2]), _aware(row[3]), bytes(row[4]))


def _not_blank(table: str, column: str, value: str) -> str:
    """The SQLCipher schema's `CHECK (length(trim(column)) > 0)`, which a sealed column cannot
    carry: the same failure (an integrity error naming the column, never the value)."""
    if not value.strip():
        raise errors.CheckViolation(f"registry.{table}.{column} may not be blank")
    return value


class PostgresSchemes(PostgresStore):
    """`SchemeRepository`: the `joint_use_schemes` table; `seq` (identity) orders adoptions."""

    def add_adopted_scheme(self, sha256: str, at: datetime, content: bytes) -> None:
        self._db.execute(
            "INSERT INTO joint_use_schemes (sha256, adopted_at, content) VALUES (%s, %s, %s)",
            (sha256, _at(at), bytes(content)),
        )

    def adopted_schemes(self) -> list[tuple[str, datetime, bytes]]:
        rows = self._all("SELECT sha256, adopted_at, content FROM joint_use_schemes ORDER BY seq")
        return [(str(r[0]), _aware(r[1]), bytes(r[2])) for r in rows]

    def current_scheme_sha256(self) -> str | None:
        row = self._one("SELECT sha256 FROM joint_use_schemes ORDER BY seq DESC LIMIT 1")
        return str(row[0]) if row else None


class PostgresOutbound(PostgresStore):
    """`OutboundRepository`: the origin's `joint_use_sent_*`, `joint_use_outbound`,
    `joint_use_held` and `joint_use_erasure_confirmations` tables."""

    @contextmanager
    def _sent_once(self, bundle: SentBundle) -> Iterator[None]:
        """A second bundle with the same sequence for the same member (two workers exported
        at once) is a conflict for the later one, not a second bundle #n."""
        try:
            yield
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name != SENT_SEQUENCE_UNIQUE:
                raise
            raise ConflictError(
                f"bundle #{bundle.sequence} to {bundle.member_id} was recorded by another "
                "export at the same time; nothing was sent, export again") from None

    def add_sent_bundle(self, bundle: SentBundle) -> None:
        with self._sent_once(bundle), self._db.transaction():
            self._db.execute(
                "INSERT INTO joint_use_sent_bundles (member_id, bundle_sha256, sequence, "
                "created_at) VALUES (%s, %s, %s, %s)",
                (bundle.member_id, bundle.bundle_sha256, bundle.sequence,
                 _at(bundle.created_at)),
            )
            if bundle.items:
                with self._db.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO joint_use_sent_items (member_id, bundle_sha256, entry_id, "
                        "kind, revision) VALUES (%s, %s, %s, %s, %s)",
                        [(bundle.member_id, bundle.bundle_sha256, i.entry_id, i.kind, i.revision)
                         for i in bundle.items],
                    )

    def sent_bundles(self, member_id: str) -> list[SentBundle]:
        heads = self._all(
            "SELECT bundle_sha256, sequence, created_at FROM joint_use_sent_bundles "
            "WHERE member_id = %s ORDER BY created_at, sequence", (member_id,),
        )
        items: dict[str, list[SentItem]] = {str(h[0]): [] for h in heads}
        for sha, entry_id, kind, revision in self._all(
                "SELECT bundle_sha256, entry_id, kind, revision FROM joint_use_sent_items "
                "WHERE member_id = %s ORDER BY item_seq", (member_id,)):
            items[str(sha)].append(SentItem(str(entry_id), str(kind), int(revision)))
        return [SentBundle(member_id, str(sha), int(sequence), _aware(created_at),
                           tuple(items[str(sha)])) for sha, sequence, created_at in heads]

    def last_acked_sequence(self, member_id: str) -> int:
        row = self._one(
            "SELECT last_acked_sequence FROM joint_use_outbound WHERE member_id = %s",
            (member_id,))
        return int(row[0]) if row else 0

    def acknowledge_bundle(self, member_id: str, sequence: int, at: datetime) -> None:
        """Also refuses (`ConflictError`) to move the acknowledged sequence back or to repeat
        it: only a receipt applied by another worker meanwhile can do that."""
        with self._db.transaction():
            moved = self._db.execute(
                "INSERT INTO joint_use_outbound AS o (member_id, last_acked_sequence, acked_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (member_id) DO UPDATE SET "
                "last_acked_sequence = excluded.last_acked_sequence, "
                "acked_at = excluded.acked_at "
                "WHERE o.last_acked_sequence < excluded.last_acked_sequence",
                (member_id, sequence, _at(at)),
            ).rowcount
            if not moved:
                raise ConflictError(
                    f"{member_id} has acknowledged bundle #{sequence} or a later one already; "
                    "nothing changed")
            # The items go with their bundles (ON DELETE CASCADE).
            self._db.execute(
                "DELETE FROM joint_use_sent_bundles WHERE member_id = %s AND sequence <= %s",
                (member_id, sequence),
            )

    def held_copies(self, member_id: str) -> dict[str, HeldCopy]:
        rows = self._all(
            "SELECT member_id, entry_id, revision, suspended, closed FROM joint_use_held "
            "WHERE member_id = %s", (member_id,),
        )
        return {str(r[1]): HeldCopy(str(r[0]), str(r[1]), int(r[2]), bool(r[3]), bool(r[4]))
                for r in rows}

    def set_held_copy(self, copy: HeldCopy) -> None:
        self._db.execute(
            "INSERT INTO joint_use_held (member_id, entry_id, revision, suspended, closed) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (member_id, entry_id) DO UPDATE SET "
            "revision = excluded.revision, suspended = excluded.suspended, "
            "closed = excluded.closed",
            (copy.member_id, copy.entry_id, copy.revision, bool(copy.suspended),
             bool(copy.closed)),
        )

    def add_erasure_confirmation(self, confirmation: ErasureConfirmation) -> None:
        c = confirmation
        self._db.execute(
            "INSERT INTO joint_use_erasure_confirmations "
            "(entry_id, member_id, sequence, confirmed_at, recorded_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (entry_id, member_id) DO NOTHING",
            (c.entry_id, c.member_id, c.sequence, _at(c.confirmed_at), _at(c.recorded_at)),
        )

    def erasure_confirmations(self, entry_id: str) -> list[ErasureConfirmation]:
        rows = self._all(
            "SELECT entry_id, member_id, sequence, confirmed_at, recorded_at "
            "FROM joint_use_erasure_confirmations WHERE entry_id = %s ORDER BY member_id",
            (entry_id,),
        )
        return [ErasureConfirmation(str(r[0]), str(r[1]), int(r[2]), _aware(r[3]),
                                    _aware(r[4])) for r in rows]


class PostgresInbound(PostgresStore):
    """`InboundRepository`: the receiver's `joint_use_imports` and `joint_use_inbound`
    tables, and the intake pseudo-user in `users` (with its chain-wide role)."""

    def add_imported_entry(self, imported: ImportedEntry) -> None:
        self._db.execute(
            f"INSERT INTO joint_use_imports ({_IMPORT_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _import_params(imported),
        )

    def update_imported_entry(self, imported: ImportedEntry) -> None:
        params = _import_params(imported)
        self._db.execute(
            "UPDATE joint_use_imports SET origin_revision = %s, origin_expires_at = %s, "
            "updated_at = %s WHERE entry_id = %s", (params[3], params[4], params[6], params[0]),
        )

    def supersede_imported_entry(self, entry_id: str) -> None:
        self._db.execute("UPDATE joint_use_imports SET superseded = true WHERE entry_id = %s",
                         (entry_id,))

    def imported_entry(self, entry_id: str) -> ImportedEntry | None:
        row = self._one(f"SELECT {_IMPORT_COLUMNS} FROM joint_use_imports WHERE entry_id = %s",
                        (entry_id,))
        return _imported(row) if row else None

    def imported_by_origin(self, origin_member: str, origin_entry_id: str
                           ) -> ImportedEntry | None:
        row = self._one(
            f"SELECT {_IMPORT_COLUMNS} FROM joint_use_imports WHERE origin_member = %s "
            "AND origin_entry_id = %s AND NOT superseded", (origin_member, origin_entry_id),
        )
        return _imported(row) if row else None

    def imported_entry_ids(self) -> set[str]:
        return {str(r[0]) for r in self._all("SELECT entry_id FROM joint_use_imports")}

    def joint_use_intake_user(self, now: datetime) -> int:
        """Created once even when two workers import at the same moment: the later INSERT
        waits for the earlier one's commit and then finds the name taken."""
        # The name breaks the user-name rule on purpose: nobody can create or log in as it.
        with self._db.transaction():
            created = self._one(
                "INSERT INTO users (username, password_hash, active, created_at) "
                "VALUES (%s, '!', false, %s) ON CONFLICT (username) DO NOTHING "
                "RETURNING user_id", (_INTAKE_USER, _at(now)),
            )
            if created is None:
                row = self._one("SELECT user_id FROM users WHERE username = %s",
                                (_INTAKE_USER,))
                return int(row[0])
            # As on SQLCipher: a staff member of no store in particular (chain-wide), inactive.
            self._db.execute(
                "INSERT INTO user_roles (user_id, store_id, role) VALUES (%s, NULL, %s)",
                (created[0], Role.STAFF.value),
            )
            return int(created[0])

    def inbound_state(self, member_id: str) -> InboundState | None:
        row = self._one(
            "SELECT member_id, last_sequence, bundle_sha256, applied_at, receipt "
            "FROM joint_use_inbound WHERE member_id = %s", (member_id,),
        )
        return _inbound(row) if row else None

    def inbound_states(self) -> list[InboundState]:
        rows = self._all(
            "SELECT member_id, last_sequence, bundle_sha256, applied_at, receipt "
            "FROM joint_use_inbound ORDER BY member_id")
        return [_inbound(r) for r in rows]

    def set_inbound_state(self, state: InboundState) -> None:
        """Also refuses (`ConflictError`) to repeat or move back the applied sequence: two
        workers applying the same bundle at once, the later one rolls back (G-SHR-2: a
        bundle is applied once)."""
        moved = self._db.execute(
            "INSERT INTO joint_use_inbound AS i (member_id, last_sequence, bundle_sha256, "
            "applied_at, receipt) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (member_id) DO UPDATE "
            "SET last_sequence = excluded.last_sequence, bundle_sha256 = excluded.bundle_sha256, "
            "applied_at = excluded.applied_at, receipt = excluded.receipt "
            "WHERE i.last_sequence < excluded.last_sequence",
            (state.member_id, state.last_sequence, state.bundle_sha256, _at(state.applied_at),
             bytes(state.receipt)),
        ).rowcount
        if not moved:
            raise ConflictError(
                f"bundle #{state.last_sequence} from {state.member_id} or a later one was "
                "applied already; nothing changed")


class PostgresEmergencyShares(PostgresStore):
    """`EmergencyShareRepository`: the `emergency_shares` and `emergency_share_checks` tables,
    the recipient and the reasons sealed."""

    def add_emergency_share(self, share: EmergencyShare) -> None:
        recipient = _not_blank("emergency_shares", "recipient", share.recipient)
        self._db.execute(
            "INSERT INTO emergency_shares (share_id, entry_id, recipient, requested_by, "
            "requested_at, state, provided_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (share.share_id, share.entry_id,
             self._fields.seal_text("emergency_shares", "recipient", share.share_id, recipient),
             share.requested_by, _at(share.requested_at), share.state,
             _at(share.provided_at) if share.provided_at else None),
        )

    def emergency_share(self, share_id: str) -> EmergencyShare | None:
        row = self._one(
            "SELECT share_id, entry_id, recipient, requested_by, requested_at, state, provided_at "
            "FROM emergency_shares WHERE share_id = %s", (share_id,),
        )
        if row is None:
            return None
        recipient = self._fields.open_text("emergency_shares", "recipient", str(row[0]), row[2])
        return EmergencyShare(str(row[0]), str(row[1]), str(recipient), int(row[3]),
                              _aware(row[4]), str(row[5]), utc(row[6]))

    def set_emergency_share_state(self, share_id: str, state: str, at: datetime | None) -> None:
        self._db.execute(
            "UPDATE emergency_shares SET state = %s, provided_at = %s WHERE share_id = %s",
            (state, _at(at) if at else None, share_id),
        )

    @staticmethod
    def _check_row(share_id: str, user_id: int) -> str:
        """The row key the reasons are sealed to: the check's primary key."""
        return f"{share_id}/{user_id}"

    def _seal_check_reason(self, check: EmergencyCheck, column: str, value: str) -> bytes | None:
        return self._fields.seal_text(
            "emergency_share_checks", column, self._check_row(check.share_id, check.user_id),
            _not_blank("emergency_share_checks", column, value))

    def add_emergency_check(self, check: EmergencyCheck) -> None:
        self._db.execute(
            "INSERT INTO emergency_share_checks (share_id, user_id, role, present_danger, "
            "necessity, proportionality, checked_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (check.share_id, check.user_id, check.role.value,
             self._seal_check_reason(check, "present_danger", check.present_danger),
             self._seal_check_reason(check, "necessity", check.necessity),
             self._seal_check_reason(check, "proportionality", check.proportionality),
             _at(check.checked_at)),
        )

    def emergency_checks(self, share_id: str) -> list[EmergencyCheck]:
        rows = self._all(
            "SELECT share_id, user_id, role, present_danger, necessity, proportionality, "
            "checked_at FROM emergency_share_checks WHERE share_id = %s "
            "ORDER BY checked_at, user_id", (share_id,),
        )
        return [self._check(r) for r in rows]

    def _check(self, row: Any) -> EmergencyCheck:
        key = self._check_row(str(row[0]), int(row[1]))

        def reason(column: str, blob: bytes) -> str:
            return str(self._fields.open_text("emergency_share_checks", column, key, blob))

        return EmergencyCheck(str(row[0]), int(row[1]), Role(row[2]),
                              reason("present_danger", row[3]), reason("necessity", row[4]),
                              reason("proportionality", row[5]), _aware(row[6]))


"""Versioned schema migrations for the registry and audit databases.

Each database records its schema version in `PRAGMA user_version`. A
migration is applied in a transaction with the version bump, so a crash
leaves either the old schema or the new one. Never edit a released step:
append a new one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from registry.clock import to_text, utc_now
from registry.config import DEFAULT_STORE_ID

# Every time column of the registry database (the audit trail's `at` is the server's own
# clock and append-only; its `details` are hashed and stay as they were written).
_TIME_COLUMNS: tuple[tuple[str, str], ...] = (
    ("users", "trained_at"), ("users", "created_at"),
    ("entries", "proposed_at"), ("entries", "decided_at"), ("entries", "expires_at"),
    ("entries", "closed_at"),
    ("incidents", "occurred_at"), ("incidents", "recorded_at"),
    ("evidence", "added_at"),
    ("devices", "created_at"),
    ("alerts", "detected_at"), ("alerts", "received_at"), ("alerts", "decided_at"),
    ("web_sessions", "created_at"), ("web_sessions", "last_seen_at"),
    ("web_sessions", "expires_at"),
    ("login_failures", "last_failure_at"), ("login_failures", "locked_until"),
    ("joint_use_schemes", "adopted_at"),
    ("joint_use_sent_bundles", "created_at"),
    ("joint_use_outbound", "acked_at"),
    ("joint_use_erasure_confirmations", "confirmed_at"),
    ("joint_use_erasure_confirmations", "recorded_at"),
    ("joint_use_inbound", "applied_at"),
    ("joint_use_imports", "origin_expires_at"), ("joint_use_imports", "imported_at"),
    ("joint_use_imports", "updated_at"),
    ("entry_suspensions", "since"),
    ("emergency_shares", "requested_at"), ("emergency_shares", "provided_at"),
    ("emergency_share_checks", "checked_at"),
    ("registration_criteria", "first_used_at"),
    ("data_requests", "received_at"), ("data_requests", "due_at"),
    ("data_requests", "answered_at"),
    ("entry_reviews", "reviewed_at"),
)
# registry.clock.EARLIEST and LATEST as stored; written out because a released step never
# changes, even if the accepted range does one day.
_EARLIEST_TEXT = "2000-01-01T00:00:00.000000Z"
_LATEST_TEXT = "2199-12-31T23:59:59.999999Z"


def _repair_times(columns: tuple[tuple[str, str], ...]) -> str:
    """Migration 9: every stored time in the one canonical form and inside the accepted range.

    Before `registry.clock.Timestamp`, a year below 1000 was stored unpadded
    ("999-01-01T...Z": strftime does not pad), text that neither read back nor
    sorted like time, so one such alert or incident took every page listing it
    down. First the year is padded to four digits (lossless); then what lies
    outside 2000..2199 is clamped to the nearest end, so every reader, every
    conversion to the store's zone and every text comparison works on every
    row. The values as received stay in the audit trail's records.
    """
    statements = []
    for table, column in columns:
        statements.append(
            f"UPDATE main.{table} SET {column} = "
            f"substr('000', 1, 5 - instr({column}, '-')) || {column} "
            f"WHERE instr({column}, '-') BETWEEN 2 AND 4;"
        )
        statements.append(f"UPDATE main.{table} SET {column} = '{_EARLIEST_TEXT}' "
                          f"WHERE {column} < '{_EARLIEST_TEXT}';")
        statements.append(f"UPDATE main.{table} SET {column} = '{_LATEST_TEXT}' "
                          f"WHERE {column} > '{_LATEST_TEXT}';")
    return "\n".join(statements)


REGISTRY_MIGRATIONS: tuple[str, ...] = (
    # 1: users, entries, incidents, templates, evidence, meta
    """
    CREATE TABLE main.users (
        user_id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('staff', 'manager', 'admin', 'auditor')),
        password_hash TEXT NOT NULL,
        trained_at TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE main.entries (
        entry_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN
            ('proposed', 'active', 'rejected', 'withdrawn', 'expired', 'erased')),
        store_id TEXT NOT NULL,
        features TEXT NOT NULL DEFAULT '',
        display_name TEXT NOT NULL DEFAULT '',
        proposed_by INTEGER NOT NULL REFERENCES users (user_id),
        proposed_at TEXT NOT NULL,
        decided_by INTEGER REFERENCES users (user_id),
        decided_at TEXT,
        decision_reason TEXT NOT NULL DEFAULT '',
        expires_at TEXT,
        revision INTEGER NOT NULL DEFAULT 1,
        closed_at TEXT,
        closed_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX main.entries_by_state ON entries (state, expires_at);
    CREATE TABLE main.incidents (
        incident_id INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        store_id TEXT NOT NULL,
        category TEXT NOT NULL CHECK (category IN ('theft', 'voyeurism', 'property_damage',
            'assault', 'public_indecency', 'nuisance')),
        occurred_at TEXT NOT NULL,
        confirmation_kind TEXT NOT NULL,
        confirmation_ref TEXT NOT NULL CHECK (length(trim(confirmation_ref)) > 0),
        damage TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        recorded_by INTEGER NOT NULL REFERENCES users (user_id),
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX main.incidents_by_entry ON incidents (entry_id);
    CREATE TABLE main.templates (
        template_id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        pack TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        image_id TEXT NOT NULL,
        quality TEXT NOT NULL
    );
    CREATE INDEX main.templates_by_entry ON templates (entry_id);
    CREATE TABLE main.evidence (
        image_id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        sha256 TEXT NOT NULL,
        masked_faces INTEGER NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE INDEX main.evidence_by_entry ON evidence (entry_id);
    CREATE TABLE main.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO main.meta (key, value) VALUES ('watchlist_version', '0');
    """,
    # 2: edge devices (token hashes only) and the alerts they send
    """
    CREATE TABLE main.devices (
        device_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_sha256 TEXT NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE main.alerts (
        alert_id TEXT PRIMARY KEY,
        device TEXT NOT NULL REFERENCES devices (name),
        camera TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        score REAL NOT NULL,
        threshold REAL NOT NULL,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        index_version INTEGER NOT NULL,
        snapshot_image_id TEXT,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'dismissed')),
        decided_by INTEGER REFERENCES users (user_id),
        decided_at TEXT,
        decision_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX main.alerts_by_status ON alerts (status, received_at);
    CREATE INDEX main.alerts_by_entry ON alerts (entry_id);
    """,
    # 3: people's web sessions (token hashes only) and login failures for the lockout
    """
    CREATE TABLE main.web_sessions (
        session_id TEXT PRIMARY KEY CHECK (length(session_id) = 64),
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        csrf_token TEXT NOT NULL CHECK (length(csrf_token) >= 32),
        expires_at TEXT NOT NULL
    );
    CREATE INDEX main.web_sessions_by_user ON web_sessions (user_id);
    CREATE TABLE main.login_failures (
        name_sha256 TEXT PRIMARY KEY CHECK (length(name_sha256) = 64),
        failures INTEGER NOT NULL CHECK (failures > 0),
        last_failure_at TEXT NOT NULL,
        locked_until TEXT
    );
    """,
    # 4: joint use (G-SHR-1..7): adopted schemes; what was sent to each member and what each
    #    member acknowledged holding; erasure confirmations; entries imported from members;
    #    suspensions while an objection is decided; emergency one-off provisions (G-SHR-6)
    """
    CREATE TABLE main.joint_use_schemes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        adopted_at TEXT NOT NULL,
        content BLOB NOT NULL
    );
    CREATE TABLE main.joint_use_sent_bundles (
        member_id TEXT NOT NULL,
        bundle_sha256 TEXT NOT NULL CHECK (length(bundle_sha256) = 64),
        sequence INTEGER NOT NULL CHECK (sequence > 0),
        created_at TEXT NOT NULL,
        PRIMARY KEY (member_id, bundle_sha256)
    );
    CREATE TABLE main.joint_use_sent_items (
        member_id TEXT NOT NULL,
        bundle_sha256 TEXT NOT NULL,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        kind TEXT NOT NULL CHECK (kind IN
            ('entry', 'correction', 'tombstone', 'suspend', 'unsuspend')),
        revision INTEGER NOT NULL,
        FOREIGN KEY (member_id, bundle_sha256)
            REFERENCES joint_use_sent_bundles (member_id, bundle_sha256) ON DELETE CASCADE
    );
    CREATE INDEX main.joint_use_sent_items_by_bundle
        ON joint_use_sent_items (member_id, bundle_sha256);
    CREATE TABLE main.joint_use_outbound (
        member_id TEXT PRIMARY KEY,
        last_acked_sequence INTEGER NOT NULL CHECK (last_acked_sequence >= 0),
        acked_at TEXT
    );
    CREATE TABLE main.joint_use_held (
        member_id TEXT NOT NULL,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        revision INTEGER NOT NULL,
        suspended INTEGER NOT NULL DEFAULT 0,
        closed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (member_id, entry_id)
    );
    CREATE TABLE main.joint_use_erasure_confirmations (
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        member_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        confirmed_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (entry_id, member_id)
    );
    CREATE TABLE main.joint_use_inbound (
        member_id TEXT PRIMARY KEY,
        last_sequence INTEGER NOT NULL CHECK (last_sequence > 0),
        bundle_sha256 TEXT NOT NULL CHECK (length(bundle_sha256) = 64),
        applied_at TEXT NOT NULL,
        receipt BLOB NOT NULL
    );
    CREATE TABLE main.joint_use_imports (
        entry_id TEXT PRIMARY KEY REFERENCES entries (entry_id),
        origin_member TEXT NOT NULL,
        origin_entry_id TEXT NOT NULL,
        origin_revision INTEGER NOT NULL,
        origin_expires_at TEXT NOT NULL,
        imported_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        superseded INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX main.joint_use_imports_by_origin
        ON joint_use_imports (origin_member, origin_entry_id) WHERE superseded = 0;
    CREATE TABLE main.entry_suspensions (
        entry_id TEXT PRIMARY KEY REFERENCES entries (entry_id),
        since TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE main.emergency_shares (
        share_id TEXT PRIMARY KEY,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        recipient TEXT NOT NULL CHECK (length(trim(recipient)) > 0),
        requested_by INTEGER NOT NULL REFERENCES users (user_id),
        requested_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'provided', 'cancelled')),
        provided_at TEXT
    );
    CREATE TABLE main.emergency_share_checks (
        share_id TEXT NOT NULL REFERENCES emergency_shares (share_id),
        user_id INTEGER NOT NULL REFERENCES users (user_id),
        role TEXT NOT NULL,
        present_danger TEXT NOT NULL CHECK (length(trim(present_danger)) > 0),
        necessity TEXT NOT NULL CHECK (length(trim(necessity)) > 0),
        proportionality TEXT NOT NULL CHECK (length(trim(proportionality)) > 0),
        checked_at TEXT NOT NULL,
        PRIMARY KEY (share_id, user_id)
    );
    """,
    # 5: G-REG-2: the criteria version each proposal was judged under (SHA-256 on the entry
    # row), and each version's text, kept once, so the decision can be read back later
    """
    ALTER TABLE main.entries ADD COLUMN criteria_sha256 TEXT;
    CREATE TABLE main.registration_criteria (
        sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
        category TEXT NOT NULL,
        criteria TEXT NOT NULL CHECK (length(trim(criteria)) > 0),
        first_used_at TEXT NOT NULL
    );
    """,
    # 6: the request and complaint desk (G-DSR-1..4: disclosure, correction, stop-use,
    #    erasure, complaint, objection; forwarded to / from the origin member of an imported
    #    entry) and periodic review of active entries (G-REV-1). Self-contained: only new tables.
    """
    CREATE TABLE main.data_requests (
        request_id TEXT PRIMARY KEY CHECK (length(request_id) = 32),
        kind TEXT NOT NULL CHECK (kind IN
            ('disclosure', 'correction', 'stop-use', 'erasure', 'complaint', 'objection')),
        status TEXT NOT NULL CHECK (status IN ('open', 'forwarded', 'answered', 'refused')),
        received_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        identity_method TEXT NOT NULL,
        identity_checked_by INTEGER REFERENCES users (user_id),
        by_agent INTEGER NOT NULL DEFAULT 0,
        contact TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        opened_by INTEGER REFERENCES users (user_id),
        assigned_to INTEGER REFERENCES users (user_id),
        entry_id TEXT REFERENCES entries (entry_id),
        forwarded_to TEXT,
        forward_acked INTEGER NOT NULL DEFAULT 0,
        origin_member TEXT,
        origin_request_id TEXT,
        answered_by INTEGER REFERENCES users (user_id),
        answered_at TEXT,
        answer TEXT NOT NULL DEFAULT '',
        refusal_ground TEXT,
        answer_reason TEXT NOT NULL DEFAULT '',
        answer_acked INTEGER NOT NULL DEFAULT 0,
        CHECK (status != 'refused' OR (refusal_ground IS NOT NULL
                                       AND length(trim(answer_reason)) > 0)),
        CHECK ((origin_member IS NULL) = (origin_request_id IS NULL))
    );
    CREATE INDEX main.data_requests_by_status ON data_requests (status, due_at);
    CREATE UNIQUE INDEX main.data_requests_by_origin
        ON data_requests (origin_member, origin_request_id) WHERE origin_member IS NOT NULL;
    CREATE TABLE main.entry_reviews (
        review_id INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        decision TEXT NOT NULL CHECK (decision IN ('keep', 'withdraw')),
        reason TEXT NOT NULL CHECK (length(trim(reason)) > 0),
        reviewed_by INTEGER NOT NULL REFERENCES users (user_id),
        reviewed_at TEXT NOT NULL
    );
    CREATE INDEX main.entry_reviews_by_entry ON entry_reviews (entry_id, reviewed_at);
    """,
    # 7: G-RET-1: an alert nobody judges lapses (status 'lapsed', snapshot erased); SQLite
    #    cannot change a CHECK, so the table is rebuilt. Free text the audit trail holds only
    #    as a SHA-256 lives here, with its entry's lifetime.
    """
    CREATE TABLE main.alerts_v7 (
        alert_id TEXT PRIMARY KEY,
        device TEXT NOT NULL REFERENCES devices (name),
        camera TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        score REAL NOT NULL,
        threshold REAL NOT NULL,
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        index_version INTEGER NOT NULL,
        snapshot_image_id TEXT,
        status TEXT NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'confirmed', 'dismissed', 'lapsed')),
        decided_by INTEGER REFERENCES users (user_id),
        decided_at TEXT,
        decision_reason TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO main.alerts_v7 SELECT * FROM main.alerts;
    DROP TABLE main.alerts;
    ALTER TABLE main.alerts_v7 RENAME TO alerts;
    CREATE INDEX main.alerts_by_status ON alerts (status, received_at);
    CREATE INDEX main.alerts_by_entry ON alerts (entry_id);
    CREATE TABLE main.audit_texts (
        sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
        entry_id TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (entry_id, sha256)
    );
    """,
    # 8: personal-data breach incidents (G-BRE-1..4): the incident, its containment actions,
    # and the stop-use right of persons affected by a reportable leak (read by the request desk)
    """
    CREATE TABLE main.breach_incidents (
        incident_id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL,
        discovered_at TEXT NOT NULL,
        discovered_by TEXT NOT NULL CHECK (length(trim(discovered_by)) > 0),
        how TEXT NOT NULL CHECK (length(trim(how)) > 0),
        summary TEXT NOT NULL DEFAULT '',
        opened_by TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        counts TEXT NOT NULL,
        affected TEXT NOT NULL,
        triage TEXT,
        closed_at TEXT
    );
    CREATE TABLE main.breach_actions (
        action_id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL REFERENCES breach_incidents (incident_id),
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        at TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE TABLE main.entry_stop_use_rights (
        entry_id TEXT NOT NULL REFERENCES entries (entry_id),
        incident_id TEXT NOT NULL REFERENCES breach_incidents (incident_id),
        since TEXT NOT NULL,
        PRIMARY KEY (entry_id, incident_id)
    );
    """,
    # 9: times stored before the one timestamp type: four-digit years, clamped to
    #    2000-01-01..2199-12-31 UTC (see `_repair_times`)
    _repair_times(_TIME_COLUMNS),
    # 10: the index change log (issue 15, item 4): what each published version added and
    #     removed, by template id, so a box fetches a delta instead of the whole index. Ids
    #     only, never a vector: erasing a person's templates erases what a delta would carry.
    #     `index_members` is the newest logged version's template set, the base of the next
    #     delta. IF NOT EXISTS: tests re-run step 9 on a registry that has this one.
    """
    CREATE TABLE IF NOT EXISTS main.index_log_versions (
        version INTEGER PRIMARY KEY,
        logged_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS main.index_log_changes (
        version INTEGER NOT NULL REFERENCES index_log_versions (version),
        template_id INTEGER NOT NULL,
        entry_id TEXT NOT NULL,
        added INTEGER NOT NULL CHECK (added IN (0, 1)),
        PRIMARY KEY (version, template_id)
    );
    CREATE TABLE IF NOT EXISTS main.index_members (
        template_id INTEGER PRIMARY KEY,
        entry_id TEXT NOT NULL
    );
    """,
    # 11: each box's latest status report (issue 15, item 3): in the database, not in one API
    #     worker's memory, so the tablet served by any worker sees every box's report. Counts
    #     and states only, nothing about a person; one row per device, replaced by each report.
    #     Its time is not in `_TIME_COLUMNS`: step 9 ran before this table existed.
    """
    CREATE TABLE IF NOT EXISTS main.box_status (
        device TEXT PRIMARY KEY REFERENCES devices (name),
        reported_at TEXT NOT NULL,
        index_version INTEGER CHECK (index_version >= 0),
        index_state TEXT NOT NULL CHECK (index_state IN ('none', 'current', 'stale')),
        outbox_pending INTEGER NOT NULL CHECK (outbox_pending >= 0),
        cameras_live INTEGER NOT NULL CHECK (cameras_live >= 0),
        cameras_total INTEGER NOT NULL CHECK (cameras_total >= 0)
    ) WITHOUT ROWID;
    """,
    # 12: stores as a dimension (issue 15, item 1). A box stands in a store and its alerts
    #     are that store's; a user belongs to a store or (NULL) to the chain office, as every
    #     user before this step did: they keep seeing everything. Boxes and alerts from before
    #     go to the installation's own store (`registry.store_id`, the `:default_store`
    #     parameter), so a single-store registry works exactly as before. Idempotent, like
    #     10 and 11 (an ADD COLUMN already applied is kept, see `_apply`).
    """
    CREATE TABLE IF NOT EXISTS main.stores (
        store_id TEXT PRIMARY KEY CHECK (length(store_id) BETWEEN 1 AND 64),
        name TEXT NOT NULL CHECK (length(trim(name)) > 0),
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO main.stores (store_id, name, created_at)
        VALUES (:default_store, :default_store, :now);
    ALTER TABLE main.users ADD COLUMN store_id TEXT REFERENCES stores (store_id);
    ALTER TABLE main.devices ADD COLUMN store_id TEXT REFERENCES stores (store_id);
    ALTER TABLE main.alerts ADD COLUMN store_id TEXT REFERENCES stores (store_id);
    UPDATE main.devices SET store_id = :default_store WHERE store_id IS NULL;
    UPDATE main.alerts SET store_id = :default_store WHERE store_id IS NULL;
    CREATE INDEX IF NOT EXISTS main.alerts_by_store ON alerts (store_id, status, received_at);
    """,
)
# The step (1-based, = user_version after it) that repairs stored times (`_repair_times`).
TIME_REPAIR_STEP = 9

AUDIT_MIGRATIONS: tuple[str, ...] = (
    # 1: the hash-chained, append-only audit trail
    """
    CREATE TABLE audit.records (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        entry_id TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit.records_by_time ON records (at);
    CREATE TRIGGER audit.records_no_update BEFORE UPDATE ON records
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit.records_no_delete BEFORE DELETE ON records
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    """,
    # 2: G-RET-1 pruning. Records up to an anchored (seq, hash) may be deleted, nothing after
    #    it: the anchor is written first, in the same transaction, and is itself append-only.
    """
    CREATE TABLE audit.prune_anchors (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL CHECK (length(hash) = 64),
        record_at TEXT NOT NULL,
        pruned_at TEXT NOT NULL,
        records INTEGER NOT NULL CHECK (records > 0)
    );
    CREATE TRIGGER audit.prune_anchors_no_update BEFORE UPDATE ON prune_anchors
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit.prune_anchors_no_delete BEFORE DELETE ON prune_anchors
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    DROP TRIGGER audit.records_no_delete;
    CREATE TRIGGER audit.records_no_delete BEFORE DELETE ON records
        WHEN OLD.seq > (SELECT coalesce(max(seq), 0) FROM prune_anchors)
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    """,
)


def _apply(connection: Any, schema: str, steps: tuple[str, ...],
           params: Mapping[str, str] | None = None) -> None:
    """Run the steps after the database's version; a statement naming `:key` gets `params`."""
    current = connection.execute(f"PRAGMA {schema}.user_version").fetchone()[0]
    if current > len(steps):
        raise RuntimeError(
            f"the {schema} database has schema version {current}, newer than this mamoru "
            f"({len(steps)}): upgrade mamoru before opening it"
        )
    for version, script in enumerate(steps[current:], start=current + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                if not _column_already_added(connection, statement):
                    named = _NAMED_PARAMETER.search(statement) is not None
                    connection.execute(statement, dict(params or {}) if named else ())
            connection.execute(f"PRAGMA {schema}.user_version = {version}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


_NAMED_PARAMETER = re.compile(r":[a-z_]+\b")
_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+)\.(\w+) ADD COLUMN (\w+)", re.IGNORECASE)


def _column_already_added(connection: Any, statement: str) -> bool:
    """An `ALTER TABLE s.t ADD COLUMN c` whose column exists: SQLite has no IF NOT EXISTS
    for columns, and a step re-run (tests re-run step 9 and after) must not fail on it."""
    match = _ADD_COLUMN.match(statement.strip())
    if match is None:
        return False
    schema, table, column = match.groups()
    rows = connection.execute(f"PRAGMA {schema}.table_info({table})").fetchall()
    return any(row[1] == column for row in rows)


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements, buffer = [], []
    for line in script.strip().splitlines():
        buffer.append(line)
        joined = "\n".join(buffer).strip()
        upper = joined.upper()
        inside_trigger = upper.startswith("CREATE TRIGGER") and not upper.endswith("END;")
        if joined.endswith(";") and not inside_trigger:
            statements.append(joined)
            buffer = []
    if "".join(buffer).strip():
        statements.append("\n".join(buffer))
    return statements


def migrate(connection: Any, *, default_store: str = DEFAULT_STORE_ID) -> None:
    """Bring both databases to the newest schema this code knows.

    `default_store`: the installation's own store (`registry.store_id`), which step 12
    creates and gives the boxes and alerts from before stores existed.
    """
    _apply(connection, "main", REGISTRY_MIGRATIONS,
           {"default_store": default_store, "now": to_text(utc_now())})
    _apply(connection, "audit", AUDIT_MIGRATIONS)

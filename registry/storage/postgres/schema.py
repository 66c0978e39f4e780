"""The chain registry's PostgreSQL schema, its roles and their least privileges (issue 15).

The SQLCipher registry (`registry.storage.migrations`, 9 steps) and audit trail
(2 steps) translated into one PostgreSQL database with two schemas, `registry`
and `audit`, so the repository's queries keep their `audit.records` names.
Versions live in `registry.schema_migrations`; a step never changes once
released, new ones are appended.

What changes against SQLCipher, and why:

- **Personal columns are `bytea` ciphertext** (`PERSONAL_COLUMNS`): PostgreSQL
  never sees a face template, a listed person's name or features, a police
  reference, a requester's contact or any free-text reason in the clear; the
  application seals them with the registry's keys before they leave the
  process. CHECKs on their text (non-blank) move to the application. Staff
  usernames stay text: they are the login lookup key and the audit trail's
  `actor`, as in the SQLCipher trail.
- **Stores are first-class**: `stores`; devices and alerts carry `store_id`;
  staff belong to a store (`users.store_id`, NULL for the chain office) and
  hold a role per store or chain-wide (`user_roles`, store NULL). The
  watchlist, approvals, requests, retention, joint use and the audit trail are
  chain-wide and have no store column (entries and incidents keep the
  proposing store as SQLCipher does).
- **Times are `registry.instant`** (timestamptz inside 2000..2199 UTC, the
  accepted range of `registry.clock`), which is SQLCipher step 9 as a type.
  The audit trail keeps its times as text: each record's hash covers the
  exact text written.
- 0/1 flags are `boolean`; integer keys are identity columns.
- **Append-only in the database**: triggers refuse UPDATE, DELETE and
  TRUNCATE on the audit tables for every role, the owner included; only
  records up to a pruning anchor may be deleted (G-RET-1), through
  `audit.prune`, a SECURITY DEFINER function that writes the anchor first.
  The application role holds SELECT and INSERT on the audit tables and
  nothing more, SELECT/INSERT/UPDATE/DELETE on the registry tables, and can
  create, alter or drop nothing (`migrate` re-applies the grants after every
  run, so new tables are covered).

The roles (`provision`, run once by a database administrator): an owner that
owns the database and runs `migrate`, and the application role every API
worker logs in as. Both are members of `LOGIN_GROUP`, the only roles
`pg_hba.conf` lets in (hostssl, SCRAM-SHA-256).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

LOGIN_GROUP = "mamoru_login"
# pg_advisory_xact_lock key: migrations from several API hosts starting at once run one by one
_MIGRATION_LOCK = 0x6D616D6F7275  # "mamoru"

# Every column that holds personal data, as application-sealed ciphertext (bytea). The
# sealing layer reads this table; tests check that each is bytea and that no other bytea
# column exists outside `NOT_PERSONAL_BYTEA`, so a new column must be placed in one of them.
PERSONAL_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "registry.entries": ("features", "display_name", "decision_reason", "closed_reason"),
    "registry.incidents": ("confirmation_ref", "damage", "description"),
    "registry.templates": ("vector",),
    "registry.alerts": ("decision_reason",),
    "registry.emergency_shares": ("recipient",),
    "registry.emergency_share_checks": ("present_danger", "necessity", "proportionality"),
    "registry.data_requests": ("contact", "summary", "answer", "answer_reason"),
    "registry.entry_reviews": ("reason",),
    "registry.audit_texts": ("text",),
    "registry.breach_incidents": ("discovered_by", "how", "summary"),
    "registry.breach_actions": ("details",),
    "registry.evidence_images": ("png",),
}
# bytea columns that are not personal: signed joint-use documents (scheme, receipts) that
# carry pseudonymous entry ids only and must stay byte-exact for their signatures.
NOT_PERSONAL_BYTEA: Mapping[str, tuple[str, ...]] = {
    "registry.joint_use_schemes": ("content",),
    "registry.joint_use_inbound": ("receipt",),
    # a constant sealed under the master key at `registry init`: opening it proves the key
    "registry.key_canary": ("sealed",),
}


@dataclass(frozen=True)
class RoleNames:
    """One chain database and its two login roles."""

    database: str
    owner: str  # owns the database and its objects; runs `migrate`
    app: str  # what the API workers log in as


MIGRATIONS: tuple[str, ...] = (
    # 1: the registry as of SQLCipher step 9 and the audit trail as of its step 2, with stores
    """
    CREATE DOMAIN registry.instant AS timestamptz
        CHECK (VALUE BETWEEN '2000-01-01T00:00:00Z' AND '2199-12-31T23:59:59.999999Z');

    CREATE TABLE registry.stores (
        store_id text PRIMARY KEY CHECK (length(store_id) BETWEEN 1 AND 64),
        name text NOT NULL CHECK (length(trim(name)) > 0),
        created_at registry.instant NOT NULL,
        active boolean NOT NULL DEFAULT true
    );
    CREATE TABLE registry.users (
        user_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username text NOT NULL UNIQUE,
        store_id text REFERENCES registry.stores (store_id),  -- NULL: the chain office
        password_hash text NOT NULL,
        trained_at registry.instant,
        active boolean NOT NULL DEFAULT true,
        created_at registry.instant NOT NULL
    );
    CREATE TABLE registry.user_roles (
        user_id bigint NOT NULL REFERENCES registry.users (user_id),
        store_id text REFERENCES registry.stores (store_id),  -- NULL: chain-wide
        role text NOT NULL CHECK (role IN ('staff', 'manager', 'admin', 'auditor')),
        UNIQUE NULLS NOT DISTINCT (user_id, store_id)
    );
    CREATE TABLE registry.entries (
        entry_id text PRIMARY KEY,
        state text NOT NULL CHECK (state IN
            ('proposed', 'active', 'rejected', 'withdrawn', 'expired', 'erased')),
        store_id text NOT NULL,  -- the proposing store; the entry is chain-wide
        features bytea NOT NULL,
        display_name bytea NOT NULL,
        proposed_by bigint NOT NULL REFERENCES registry.users (user_id),
        proposed_at registry.instant NOT NULL,
        decided_by bigint REFERENCES registry.users (user_id),
        decided_at registry.instant,
        decision_reason bytea NOT NULL,
        expires_at registry.instant,
        revision integer NOT NULL DEFAULT 1,
        closed_at registry.instant,
        closed_reason bytea NOT NULL,
        criteria_sha256 text
    );
    CREATE INDEX entries_by_state ON registry.entries (state, expires_at);
    CREATE TABLE registry.incidents (
        incident_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        store_id text NOT NULL,
        category text NOT NULL CHECK (category IN ('theft', 'voyeurism', 'property_damage',
            'assault', 'public_indecency', 'nuisance')),
        occurred_at registry.instant NOT NULL,
        confirmation_kind text NOT NULL,
        confirmation_ref bytea NOT NULL,
        damage bytea NOT NULL,
        description bytea NOT NULL,
        recorded_by bigint NOT NULL REFERENCES registry.users (user_id),
        recorded_at registry.instant NOT NULL
    );
    CREATE INDEX incidents_by_entry ON registry.incidents (entry_id);
    CREATE TABLE registry.templates (
        template_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        pack text NOT NULL,
        dim integer NOT NULL,
        vector bytea NOT NULL,
        image_id text NOT NULL,
        quality text NOT NULL
    );
    CREATE INDEX templates_by_entry ON registry.templates (entry_id);
    CREATE TABLE registry.evidence (
        image_id text PRIMARY KEY,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        sha256 text NOT NULL,
        masked_faces integer NOT NULL,
        added_at registry.instant NOT NULL
    );
    CREATE INDEX evidence_by_entry ON registry.evidence (entry_id);
    CREATE TABLE registry.meta (key text PRIMARY KEY, value text NOT NULL);
    INSERT INTO registry.meta (key, value) VALUES ('watchlist_version', '0');

    CREATE TABLE registry.devices (
        device_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name text NOT NULL UNIQUE,
        store_id text NOT NULL REFERENCES registry.stores (store_id),
        token_sha256 text NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
        created_at registry.instant NOT NULL,
        active boolean NOT NULL DEFAULT true
    );
    CREATE TABLE registry.alerts (
        alert_id text PRIMARY KEY,
        store_id text NOT NULL REFERENCES registry.stores (store_id),
        device text NOT NULL REFERENCES registry.devices (name),
        camera text NOT NULL,
        detected_at registry.instant NOT NULL,
        received_at registry.instant NOT NULL,
        score double precision NOT NULL,
        threshold double precision NOT NULL,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        index_version bigint NOT NULL,
        snapshot_image_id text,
        status text NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'confirmed', 'dismissed', 'lapsed')),
        decided_by bigint REFERENCES registry.users (user_id),
        decided_at registry.instant,
        decision_reason bytea NOT NULL
    );
    CREATE INDEX alerts_by_store_status ON registry.alerts (store_id, status, received_at);
    CREATE INDEX alerts_by_status ON registry.alerts (status, received_at);
    CREATE INDEX alerts_by_entry ON registry.alerts (entry_id);

    CREATE TABLE registry.web_sessions (
        session_id text PRIMARY KEY CHECK (length(session_id) = 64),
        user_id bigint NOT NULL REFERENCES registry.users (user_id),
        created_at registry.instant NOT NULL,
        last_seen_at registry.instant NOT NULL,
        csrf_token text NOT NULL CHECK (length(csrf_token) >= 32),
        expires_at registry.instant NOT NULL
    );
    CREATE INDEX web_sessions_by_user ON registry.web_sessions (user_id);
    CREATE TABLE registry.login_failures (
        name_sha256 text PRIMARY KEY CHECK (length(name_sha256) = 64),
        failures integer NOT NULL CHECK (failures > 0),
        last_failure_at registry.instant NOT NULL,
        locked_until registry.instant
    );

    CREATE TABLE registry.joint_use_schemes (
        seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        sha256 text NOT NULL CHECK (length(sha256) = 64),
        adopted_at registry.instant NOT NULL,
        content bytea NOT NULL
    );
    CREATE TABLE registry.joint_use_sent_bundles (
        member_id text NOT NULL,
        bundle_sha256 text NOT NULL CHECK (length(bundle_sha256) = 64),
        sequence bigint NOT NULL CHECK (sequence > 0),
        created_at registry.instant NOT NULL,
        PRIMARY KEY (member_id, bundle_sha256)
    );
    CREATE TABLE registry.joint_use_sent_items (
        member_id text NOT NULL,
        bundle_sha256 text NOT NULL,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        kind text NOT NULL CHECK (kind IN
            ('entry', 'correction', 'tombstone', 'suspend', 'unsuspend')),
        revision integer NOT NULL,
        FOREIGN KEY (member_id, bundle_sha256)
            REFERENCES registry.joint_use_sent_bundles (member_id, bundle_sha256)
            ON DELETE CASCADE
    );
    CREATE INDEX joint_use_sent_items_by_bundle
        ON registry.joint_use_sent_items (member_id, bundle_sha256);
    CREATE TABLE registry.joint_use_outbound (
        member_id text PRIMARY KEY,
        last_acked_sequence bigint NOT NULL CHECK (last_acked_sequence >= 0),
        acked_at registry.instant
    );
    CREATE TABLE registry.joint_use_held (
        member_id text NOT NULL,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        revision integer NOT NULL,
        suspended boolean NOT NULL DEFAULT false,
        closed boolean NOT NULL DEFAULT false,
        PRIMARY KEY (member_id, entry_id)
    );
    CREATE TABLE registry.joint_use_erasure_confirmations (
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        member_id text NOT NULL,
        sequence bigint NOT NULL,
        confirmed_at registry.instant NOT NULL,
        recorded_at registry.instant NOT NULL,
        PRIMARY KEY (entry_id, member_id)
    );
    CREATE TABLE registry.joint_use_inbound (
        member_id text PRIMARY KEY,
        last_sequence bigint NOT NULL CHECK (last_sequence > 0),
        bundle_sha256 text NOT NULL CHECK (length(bundle_sha256) = 64),
        applied_at registry.instant NOT NULL,
        receipt bytea NOT NULL
    );
    CREATE TABLE registry.joint_use_imports (
        entry_id text PRIMARY KEY REFERENCES registry.entries (entry_id),
        origin_member text NOT NULL,
        origin_entry_id text NOT NULL,
        origin_revision integer NOT NULL,
        origin_expires_at registry.instant NOT NULL,
        imported_at registry.instant NOT NULL,
        updated_at registry.instant NOT NULL,
        superseded boolean NOT NULL DEFAULT false
    );
    CREATE UNIQUE INDEX joint_use_imports_by_origin
        ON registry.joint_use_imports (origin_member, origin_entry_id) WHERE NOT superseded;
    CREATE TABLE registry.entry_suspensions (
        entry_id text PRIMARY KEY REFERENCES registry.entries (entry_id),
        since registry.instant NOT NULL,
        source text NOT NULL
    );
    CREATE TABLE registry.emergency_shares (
        share_id text PRIMARY KEY,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        recipient bytea NOT NULL,
        requested_by bigint NOT NULL REFERENCES registry.users (user_id),
        requested_at registry.instant NOT NULL,
        state text NOT NULL CHECK (state IN ('open', 'provided', 'cancelled')),
        provided_at registry.instant
    );
    CREATE TABLE registry.emergency_share_checks (
        share_id text NOT NULL REFERENCES registry.emergency_shares (share_id),
        user_id bigint NOT NULL REFERENCES registry.users (user_id),
        role text NOT NULL,
        present_danger bytea NOT NULL,
        necessity bytea NOT NULL,
        proportionality bytea NOT NULL,
        checked_at registry.instant NOT NULL,
        PRIMARY KEY (share_id, user_id)
    );

    CREATE TABLE registry.registration_criteria (
        sha256 text PRIMARY KEY CHECK (length(sha256) = 64),
        category text NOT NULL,
        criteria text NOT NULL CHECK (length(trim(criteria)) > 0),
        first_used_at registry.instant NOT NULL
    );

    CREATE TABLE registry.data_requests (
        request_id text PRIMARY KEY CHECK (length(request_id) = 32),
        kind text NOT NULL CHECK (kind IN
            ('disclosure', 'correction', 'stop-use', 'erasure', 'complaint', 'objection')),
        status text NOT NULL CHECK (status IN ('open', 'forwarded', 'answered', 'refused')),
        received_at registry.instant NOT NULL,
        due_at registry.instant NOT NULL,
        identity_method text NOT NULL,
        identity_checked_by bigint REFERENCES registry.users (user_id),
        by_agent boolean NOT NULL DEFAULT false,
        contact bytea NOT NULL,
        summary bytea NOT NULL,
        opened_by bigint REFERENCES registry.users (user_id),
        assigned_to bigint REFERENCES registry.users (user_id),
        entry_id text REFERENCES registry.entries (entry_id),
        forwarded_to text,
        forward_acked boolean NOT NULL DEFAULT false,
        origin_member text,
        origin_request_id text,
        answered_by bigint REFERENCES registry.users (user_id),
        answered_at registry.instant,
        answer bytea NOT NULL,
        refusal_ground text,
        answer_reason bytea NOT NULL,
        answer_acked boolean NOT NULL DEFAULT false,
        CHECK (status != 'refused' OR refusal_ground IS NOT NULL),
        CHECK ((origin_member IS NULL) = (origin_request_id IS NULL))
    );
    CREATE INDEX data_requests_by_status ON registry.data_requests (status, due_at);
    CREATE UNIQUE INDEX data_requests_by_origin
        ON registry.data_requests (origin_member, origin_request_id)
        WHERE origin_member IS NOT NULL;
    CREATE TABLE registry.entry_reviews (
        review_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        decision text NOT NULL CHECK (decision IN ('keep', 'withdraw')),
        reason bytea NOT NULL,
        reviewed_by bigint NOT NULL REFERENCES registry.users (user_id),
        reviewed_at registry.instant NOT NULL
    );
    CREATE INDEX entry_reviews_by_entry ON registry.entry_reviews (entry_id, reviewed_at);
    CREATE TABLE registry.audit_texts (
        sha256 text NOT NULL CHECK (length(sha256) = 64),
        entry_id text NOT NULL,
        text bytea NOT NULL,
        PRIMARY KEY (entry_id, sha256)
    );

    CREATE TABLE registry.breach_incidents (
        incident_id text PRIMARY KEY,
        store_id text NOT NULL,
        discovered_at registry.instant NOT NULL,
        discovered_by bytea NOT NULL,
        how bytea NOT NULL,
        summary bytea NOT NULL,
        opened_by text NOT NULL,
        opened_at registry.instant NOT NULL,
        counts text NOT NULL,
        affected text NOT NULL,
        triage text,
        closed_at registry.instant
    );
    CREATE TABLE registry.breach_actions (
        action_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        incident_id text NOT NULL REFERENCES registry.breach_incidents (incident_id),
        kind text NOT NULL,
        actor text NOT NULL,
        at registry.instant NOT NULL,
        details bytea NOT NULL
    );
    CREATE TABLE registry.entry_stop_use_rights (
        entry_id text NOT NULL REFERENCES registry.entries (entry_id),
        incident_id text NOT NULL REFERENCES registry.breach_incidents (incident_id),
        since registry.instant NOT NULL,
        PRIMARY KEY (entry_id, incident_id)
    );

    CREATE SCHEMA audit;
    CREATE TABLE audit.records (
        seq bigint PRIMARY KEY,
        at text NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        entry_id text,
        details text NOT NULL,
        prev_hash text NOT NULL,
        hash text NOT NULL
    );
    CREATE INDEX records_by_time ON audit.records (at);
    CREATE TABLE audit.prune_anchors (
        seq bigint PRIMARY KEY,
        hash text NOT NULL CHECK (length(hash) = 64),
        record_at text NOT NULL,
        pruned_at text NOT NULL,
        records integer NOT NULL CHECK (records > 0)
    );
    -- Append-only for every role, the owner included: a record may only be deleted once a
    -- pruning anchor at or after it exists (SQLCipher audit step 2).
    CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'records' AND OLD.seq <=
                (SELECT coalesce(max(seq), 0) FROM audit.prune_anchors) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'the audit trail is append-only (% on audit.%)', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'raise_exception';
    END
    $$;
    CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON audit.records
        FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
    CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON audit.records
        FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
    CREATE TRIGGER prune_anchors_append_only BEFORE UPDATE OR DELETE ON audit.prune_anchors
        FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
    CREATE TRIGGER prune_anchors_no_truncate BEFORE TRUNCATE ON audit.prune_anchors
        FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
    -- G-RET-1 pruning, the one way the application role deletes audit records: the anchor
    -- must name an existing record by its hash, and is written before the delete.
    CREATE FUNCTION audit.prune(through_seq bigint, anchor_hash text, record_at text,
                                pruned_at text, pruned integer) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        deleted integer;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM audit.records WHERE seq = through_seq
                       AND hash = anchor_hash AND at = record_at) THEN
            RAISE EXCEPTION 'audit.prune: no record % with that hash and time', through_seq;
        END IF;
        INSERT INTO audit.prune_anchors (seq, hash, record_at, pruned_at, records)
            VALUES (through_seq, anchor_hash, record_at, pruned_at, pruned);
        DELETE FROM audit.records WHERE seq <= through_seq;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        IF deleted != pruned THEN
            RAISE EXCEPTION 'audit.prune: % records up to %, not %', deleted, through_seq, pruned;
        END IF;
    END
    $$;
    """,
    # ---- joint use (issue 15, group joint_use: PostgresOutbound) ---------------------------
    # 2: several API workers export at once. One sent bundle per member and sequence (two
    #    workers that picked the same next number: the later INSERT fails, not a second #n);
    #    the items of a bundle keep the order they were written in (SQLCipher's rowid).
    """
    ALTER TABLE registry.joint_use_sent_bundles
        ADD CONSTRAINT joint_use_sent_bundles_sequence_unique UNIQUE (member_id, sequence);
    ALTER TABLE registry.joint_use_sent_items
        ADD COLUMN item_seq bigint GENERATED ALWAYS AS IDENTITY;
    """,
    # ---- end of joint use -----------------------------------------------------------------
    # ---- API workers (issue 15, item 3: rate limits that hold across workers and hosts) ----
    # 3: per client and minute, the requests every API worker counted (`PostgresWindowCounters`).
    #    UNLOGGED: a counter is worth a minute; a crash that empties the table costs a fresh
    #    minute, and no WAL is written per request. Client addresses only, no personal data.
    """
    CREATE UNLOGGED TABLE registry.rate_limit_hits (
        bucket text NOT NULL CHECK (length(bucket) BETWEEN 1 AND 200),
        window_start bigint NOT NULL,
        count integer NOT NULL CHECK (count > 0),
        PRIMARY KEY (bucket, window_start)
    );
    """,
    # ---- index distribution (issue 15, item 4) ---------------------------------------------
    # 4: the index change log, SQLCipher step 10: what each published version added and
    #    removed, by template id and entry id (no vector, nothing personal: nothing sealed);
    #    `index_members` is the newest logged version's template set.
    """
    CREATE TABLE registry.index_log_versions (
        version bigint PRIMARY KEY,
        logged_at registry.instant NOT NULL
    );
    CREATE TABLE registry.index_log_changes (
        version bigint NOT NULL REFERENCES registry.index_log_versions (version),
        template_id bigint NOT NULL,
        entry_id text NOT NULL,
        added boolean NOT NULL,
        PRIMARY KEY (version, template_id)
    );
    CREATE TABLE registry.index_members (
        template_id bigint PRIMARY KEY,
        entry_id text NOT NULL
    );
    """,
    # ---- end of index distribution ---------------------------------------------------------
    # ---- the registry context on PostgreSQL (issue 15, h15-pgctx) --------------------------
    # 5: evidence images and alert snapshots as sealed bytea (kind EVIDENCE, bound to the
    #    image id, the same bytes as an evidence file); the key canary that tells a wrong
    #    master key at open, before anything is written; the audit trail's head anchors
    #    (what `audit.head` holds on one box), append-only like the records they anchor.
    """
    CREATE TABLE registry.evidence_images (
        image_id text PRIMARY KEY CHECK (image_id ~ '^[0-9a-f-]{8,64}$'),
        png bytea NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE registry.key_canary (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        sealed bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE audit.head_anchors (
        seq bigint PRIMARY KEY,
        hash text NOT NULL CHECK (length(hash) = 64),
        anchored_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TRIGGER head_anchors_append_only BEFORE UPDATE OR DELETE ON audit.head_anchors
        FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
    CREATE TRIGGER head_anchors_no_truncate BEFORE TRUNCATE ON audit.head_anchors
        FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
    """,
    # ---- API workers, continued (issue 15, item 3) -------------------------------------------
    # 6: each box's latest status report, SQLCipher step 11: in the database, so the tablet
    #    served by any worker on any host sees every box. Counts and states only (nothing
    #    sealed); one row per device, replaced by each report.
    """
    CREATE TABLE registry.box_status (
        device text PRIMARY KEY REFERENCES registry.devices (name),
        reported_at registry.instant NOT NULL,
        index_version bigint CHECK (index_version >= 0),
        index_state text NOT NULL CHECK (index_state IN ('none', 'current', 'stale')),
        outbox_pending integer NOT NULL CHECK (outbox_pending >= 0),
        cameras_live integer NOT NULL CHECK (cameras_live >= 0),
        cameras_total integer NOT NULL CHECK (cameras_total >= 0)
    );
    """,
    # ---- load (issue 15: 2,000 boxes, benchmarks/chain.py --only load) ---------------------
    # 7: an audit append in two round trips, not seven. `audit.locked_head` takes the trail's
    #    head lock (pg_advisory_xact_lock, "mamoruAT" = 7881701148304163156, the key of
    #    registry.storage.postgres.audit) and reads the newest record; `audit.append` takes
    #    the lock, re-reads the head (the newest record, else the newest prune anchor),
    #    refuses a record that does not follow it (SQLSTATE MA409) and inserts it. Each
    #    statement of a VOLATILE plpgsql function takes a fresh snapshot, so the head is read
    #    after the lock is held, as the separate statements did. SECURITY INVOKER: the
    #    application role's own SELECT/INSERT on the audit tables, nothing more.
    """
    CREATE FUNCTION audit.locked_head(OUT head_seq bigint, OUT head_hash text)
        LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(7881701148304163156);
        SELECT r.seq, r.hash INTO head_seq, head_hash
            FROM audit.records r ORDER BY r.seq DESC LIMIT 1;
    END
    $$;
    CREATE FUNCTION audit.append(rec_at text, rec_actor text, rec_action text,
                                 rec_entry_id text, rec_details text, rec_prev_hash text,
                                 rec_hash text) RETURNS bigint
        LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    DECLARE
        head_seq bigint;
        head_hash text;
    BEGIN
        PERFORM pg_advisory_xact_lock(7881701148304163156);
        SELECT r.seq, r.hash INTO head_seq, head_hash
            FROM audit.records r ORDER BY r.seq DESC LIMIT 1;
        IF NOT FOUND THEN
            SELECT a.seq, a.hash INTO head_seq, head_hash
                FROM audit.prune_anchors a ORDER BY a.seq DESC LIMIT 1;
        END IF;
        IF head_hash IS NOT NULL AND head_hash IS DISTINCT FROM rec_prev_hash THEN
            RAISE EXCEPTION 'the audit trail''s head moved' USING ERRCODE = 'MA409';
        END IF;
        INSERT INTO audit.records (seq, at, actor, action, entry_id, details, prev_hash, hash)
            VALUES (coalesce(head_seq, 0) + 1, rec_at, rec_actor, rec_action, rec_entry_id,
                    rec_details, rec_prev_hash, rec_hash);
        RETURN coalesce(head_seq, 0) + 1;
    END
    $$;
    """,
)


# Functions the application role may call, each from the step that creates it on.
_CALLABLE: tuple[tuple[int, str], ...] = (
    (7, "audit.locked_head()"),
    (7, "audit.append(text, text, text, text, text, text, text)"),
)


def _grants(app: str, version: int) -> sql.Composed:
    """The application role's privileges at schema `version`, re-applied after every
    migration (idempotent)."""
    role = sql.Identifier(app)
    callable_now = [sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {};").format(
        sql.SQL(function), role) for step, function in _CALLABLE if step <= version]
    return sql.Composed([sql.SQL("""
    REVOKE ALL ON SCHEMA public FROM PUBLIC;
    REVOKE ALL ON SCHEMA registry, audit FROM PUBLIC;
    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA registry, audit FROM PUBLIC;
    GRANT USAGE ON SCHEMA registry, audit TO {role};
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA registry TO {role};
    REVOKE INSERT, UPDATE, DELETE ON registry.schema_migrations FROM {role};
    GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA audit TO {role};
    GRANT EXECUTE ON FUNCTION audit.prune(bigint, text, text, text, integer) TO {role};
    """).format(role=role), *callable_now])


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The newest applied step, 0 on a database never migrated."""
    row = conn.execute("SELECT to_regclass('registry.schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM registry.schema_migrations"
                       ).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any], *, app_role: str) -> int:
    """Bring the database to the newest schema, as its owner; returns the steps applied.

    One transaction under an advisory lock: API hosts that start together
    migrate one after the other (the later ones find nothing to do), and a
    crash leaves the old schema or the new one. The grants to `app_role` are
    re-applied every time, so a new table is never left without them.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS registry")
        conn.execute("CREATE TABLE IF NOT EXISTS registry.schema_migrations ("
                     "version integer PRIMARY KEY CHECK (version > 0), "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        current = schema_version(conn)
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the chain database has schema version {current}, newer than this mamoru "
                f"({len(MIGRATIONS)}): upgrade mamoru before opening it")
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(script.encode())  # no parameters: several statements in one go
            conn.execute("INSERT INTO registry.schema_migrations (version) VALUES (%s)",
                         (version,))
        conn.execute(_grants(app_role, len(MIGRATIONS)))
    return len(MIGRATIONS) - current


def provision(conn: psycopg.Connection[Any], roles: RoleNames, *, owner_password: str,
              app_password: str) -> None:
    """Create the two login roles and their database (a superuser's autocommit connection).

    Passwords reach the server as SCRAM-SHA-256 verifiers computed by libpq,
    so they appear in no statement, log or `pg_stat_activity`. Nobody but the
    two roles may connect; neither may create roles, databases or temp tables.
    """
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN_GROUP,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(LOGIN_GROUP)))
    for role, password in ((roles.owner, owner_password), (roles.app, app_password)):
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(),
                                                b"scram-sha-256")
        conn.execute(sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS IN ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Identifier(LOGIN_GROUP),
                sql.Literal(verifier.decode())))
    database = sql.Identifier(roles.database)
    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
        database, sql.Identifier(roles.owner)))
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
        database, sql.Identifier(roles.app)))

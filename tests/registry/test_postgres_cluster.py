"""The chain database's foundation on a real PostgreSQL cluster (issue 15, items 2 and 5).

A throw-away cluster per session (`pg_cluster`), a fresh database per test:
the connection is TLS 1.3 only and verified, the application role cannot
rewrite or drop the audit trail (append-only in the database too, for the
owner as well), cannot change the schema, and the schema migrates once.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from registry.storage.postgres.cluster import (
    Database,
    ThrowawayCluster,
    _certificate,
    process_alive,
)
from registry.storage.postgres.schema import (
    MIGRATIONS,
    NOT_PERSONAL_BYTEA,
    PERSONAL_COLUMNS,
    migrate,
    schema_version,
)

Conn = psycopg.Connection[Any]
H = "ab" * 32  # a 64-hex hash


@pytest.fixture(scope="module")
def db(pg_cluster: ThrowawayCluster) -> Database:
    """A migrated database with its owner and app roles, shared by this module's tests."""
    database = pg_cluster.create_database(f"t{secrets.token_hex(6)}")
    with database.connect_owner() as conn:
        migrate(conn, app_role=database.app)
    return database


@pytest.fixture
def app(db: Database) -> Iterator[Conn]:
    """The application role, in one transaction rolled back after the test (DDL included),
    so every test starts from the freshly migrated database."""
    with db.connect_app() as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def owner(db: Database) -> Iterator[Conn]:
    """The owner role, in one transaction rolled back after the test."""
    with db.connect_owner() as conn:
        yield conn
        conn.rollback()


def refuse(conn: Conn, statement: str, error: type[Exception], match: str | None = None) -> None:
    """`statement` fails with `error`; a savepoint keeps the test's transaction usable."""
    with pytest.raises(error, match=match), conn.transaction():
        conn.execute(statement)


def add_record(conn: Conn, seq: int) -> None:
    conn.execute("INSERT INTO audit.records (seq, at, actor, action, entry_id, details, "
                 "prev_hash, hash) VALUES (%s, %s, 'mgr1', 'entry_approved', 'e1', '{}', %s, %s)",
                 (seq, f"2026-01-{seq:02d}T10:00:00.000000Z", H, f"{seq:064x}"))


def catalog(conn: Conn) -> list[tuple[Any, ...]]:
    """Every column, constraint, trigger and grant of the two schemas: what a re-run must keep."""
    return [
        *conn.execute("SELECT table_schema, table_name, column_name, data_type, is_nullable "
                      "FROM information_schema.columns WHERE table_schema IN "
                      "('registry', 'audit') ORDER BY 1, 2, 3").fetchall(),
        *conn.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                      "FROM pg_constraint WHERE connamespace IN "
                      "('registry'::regnamespace, 'audit'::regnamespace) ORDER BY 1, 2"
                      ).fetchall(),
        *conn.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                      "WHERE NOT tgisinternal ORDER BY 1, 2").fetchall(),
        *conn.execute("SELECT table_schema, table_name, grantee, privilege_type "
                      "FROM information_schema.role_table_grants WHERE table_schema IN "
                      "('registry', 'audit') ORDER BY 1, 2, 3, 4").fetchall(),
        *conn.execute("SELECT version FROM registry.schema_migrations ORDER BY 1").fetchall(),
    ]


# -- the cluster ------------------------------------------------------------------------------

@pytest.mark.slow  # its own initdb: 1.5 s on an idle machine, up to 6 s on a loaded one
def test_a_cluster_starts_and_stops_leaving_nothing_behind() -> None:
    with ThrowawayCluster() as cluster:
        root, port, pids = cluster.root, cluster.port, cluster.process_ids()
        assert root is not None and root.is_dir() and len(pids) > 1
        assert all(process_alive(pid) for pid in pids)
    assert not root.exists()
    assert not any(process_alive(pid) for pid in pids)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
    cluster.stop()  # a second stop is harmless


def test_it_listens_on_loopback_only_and_speaks_tls_1_3(pg_cluster: ThrowawayCluster,
                                                         app: Conn) -> None:
    row = app.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                      ).fetchone()
    assert row == (True, "TLSv1.3")
    with pg_cluster.connect_superuser() as su:
        assert su.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert su.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        hba = su.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
    assert ("local", "scram-sha-256") in hba and ("hostssl", "scram-sha-256") in hba
    assert not any(method == "trust" for _, method in hba)
    assert all(kind != "host" for kind, _ in hba)  # nothing over TCP without TLS


def test_a_plain_tcp_connection_is_refused(db: Database) -> None:
    info = db.conninfo(db.app, db.app_password, sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(info).close()


def test_tls_below_1_3_is_refused(db: Database) -> None:
    info = db.conninfo(db.app, db.app_password, ssl_max_protocol_version="TLSv1.2")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(info).close()


def test_a_server_certificate_the_client_does_not_trust_is_refused(db: Database,
                                                                   tmp_path: Path) -> None:
    """verify-full checks the certificate: another self-signed one for the same names fails."""
    other = tmp_path / "other.crt"
    other.write_bytes(_certificate(datetime.now(UTC))[0])
    info = db.conninfo(db.app, db.app_password, sslrootcert=str(other))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(info).close()


def test_a_wrong_password_is_refused(db: Database) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(db.conninfo(db.app, "not the password")).close()


def test_the_certificate_key_stays_private(pg_cluster: ThrowawayCluster) -> None:
    assert pg_cluster.root is not None
    key = pg_cluster.root / "server.key"
    assert key.stat().st_mode & 0o077 == 0
    serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert pg_cluster.root.stat().st_mode & 0o077 == 0
    assert not (pg_cluster.root / "superuser.pw").exists()


# -- schema and migrations --------------------------------------------------------------------

def test_the_schema_migrates_on_an_empty_database_and_a_rerun_changes_nothing(
        pg_cluster: ThrowawayCluster) -> None:
    database = pg_cluster.create_database(f"t{secrets.token_hex(6)}")
    with database.connect_owner() as conn:
        assert schema_version(conn) == 0
        assert migrate(conn, app_role=database.app) == len(MIGRATIONS)
        before = catalog(conn)
        assert migrate(conn, app_role=database.app) == 0
        assert catalog(conn) == before
        assert schema_version(conn) == len(MIGRATIONS)


def test_a_newer_schema_is_refused(owner: Conn, db: Database) -> None:
    owner.execute("INSERT INTO registry.schema_migrations (version) VALUES (%s)",
                  (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer than this mamoru"):
        migrate(owner, app_role=db.app)


def test_every_personal_column_is_ciphertext_and_every_bytea_column_is_listed(
        owner: Conn) -> None:
    """PostgreSQL never sees personal data in the clear: the sealing layer seals exactly
    PERSONAL_COLUMNS, so a new bytea column must be placed in it or in NOT_PERSONAL_BYTEA."""
    types = {(f"{schema}.{table}", column): kind for schema, table, column, kind in owner.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema IN ('registry', 'audit')").fetchall()}
    personal = {(t, c) for t, columns in PERSONAL_COLUMNS.items() for c in columns}
    exempt = {(t, c) for t, columns in NOT_PERSONAL_BYTEA.items() for c in columns}
    assert {key: types.get(key) for key in personal} == dict.fromkeys(personal, "bytea")
    assert {key for key, kind in types.items() if kind == "bytea"} == personal | exempt


def test_stores_scope_devices_alerts_and_roles_but_not_the_watchlist(owner: Conn) -> None:
    columns = set(owner.execute(
        "SELECT table_name FROM information_schema.columns "
        "WHERE table_schema = 'registry' AND column_name = 'store_id'").fetchall())
    assert {("devices",), ("alerts",), ("users",), ("user_roles",)} <= columns
    assert not {("templates",), ("data_requests",), ("entry_reviews",)} & columns


# -- least privilege and the append-only audit trail ------------------------------------------

def test_the_app_role_appends_to_and_reads_the_audit_trail(app: Conn) -> None:
    add_record(app, 1)
    assert app.execute("SELECT seq, actor FROM audit.records").fetchall() == [(1, "mgr1")]


@pytest.mark.parametrize("statement", [
    "UPDATE audit.records SET actor = 'someone else'",
    "DELETE FROM audit.records",
    "TRUNCATE audit.records",
    "UPDATE audit.prune_anchors SET hash = hash",
    "DELETE FROM audit.prune_anchors",
    "TRUNCATE audit.prune_anchors",
])
def test_the_app_role_cannot_rewrite_the_audit_trail(app: Conn, statement: str) -> None:
    add_record(app, 1)
    refuse(app, statement, psycopg.errors.InsufficientPrivilege)
    assert app.execute("SELECT count(*) FROM audit.records").fetchone() == (1,)


@pytest.mark.parametrize("statement", [
    "UPDATE audit.records SET actor = 'someone else'",
    "DELETE FROM audit.records",
    "TRUNCATE audit.records",
    "TRUNCATE audit.records CASCADE",
    "DELETE FROM audit.prune_anchors",
    "TRUNCATE audit.prune_anchors",
])
def test_even_the_owner_cannot_rewrite_the_audit_trail(owner: Conn, statement: str) -> None:
    """The table's owner holds every privilege: the triggers refuse it anyway, also after a
    prune (record 2 lies after the anchor)."""
    add_record(owner, 1)
    owner.execute("SELECT audit.prune(1, %s, %s, '2030-01-01T00:00:00.000000Z', 1)",
                  (f"{1:064x}", "2026-01-01T10:00:00.000000Z"))
    add_record(owner, 2)
    refuse(owner, statement, psycopg.errors.RaiseException, match="append-only")
    assert owner.execute("SELECT count(*) FROM audit.records").fetchone() == (1,)
    assert owner.execute("SELECT count(*) FROM audit.prune_anchors").fetchone() == (1,)


def test_pruning_deletes_only_up_to_an_anchor_naming_a_real_record(app: Conn) -> None:
    """G-RET-1: old records go only through audit.prune, which anchors the last one first."""
    for seq in (1, 2, 3):
        add_record(app, seq)
    with pytest.raises(psycopg.errors.RaiseException, match="no record 2"), app.transaction():
        app.execute("SELECT audit.prune(2, %s, %s, '2030-01-01T00:00:00.000000Z', 2)",
                    (H, "2026-01-02T10:00:00.000000Z"))  # not record 2's hash
    app.execute("SELECT audit.prune(2, %s, %s, '2030-01-01T00:00:00.000000Z', 2)",
                (f"{2:064x}", "2026-01-02T10:00:00.000000Z"))
    assert app.execute("SELECT seq FROM audit.records").fetchall() == [(3,)]
    assert app.execute("SELECT seq, records FROM audit.prune_anchors").fetchall() == [(2, 2)]


@pytest.mark.parametrize("statement", [
    "DROP TABLE audit.records",
    "DROP TABLE registry.entries",
    "ALTER TABLE audit.records DISABLE TRIGGER records_append_only",
    "DROP TRIGGER records_append_only ON audit.records",
    "ALTER TABLE registry.entries ADD COLUMN note text",
    "CREATE TABLE registry.mine (x int)",
    "CREATE TABLE public.mine (x int)",
    "CREATE TEMP TABLE mine (x int)",
    "CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN OLD; END $$",
    "UPDATE registry.schema_migrations SET version = 99",
    "DELETE FROM registry.schema_migrations",
])
def test_the_app_role_cannot_change_the_schema(app: Conn, statement: str) -> None:
    refuse(app, statement, psycopg.errors.InsufficientPrivilege)


def test_the_app_role_cannot_grant_itself_more(app: Conn) -> None:
    """GRANT by a role without the grant option only warns: what counts is that it took none."""
    app.execute("GRANT UPDATE, DELETE, TRUNCATE ON audit.records TO PUBLIC")
    app.execute(f"GRANT UPDATE ON audit.records TO {app.info.user}")
    add_record(app, 1)
    refuse(app, "UPDATE audit.records SET actor = 'someone else'",
           psycopg.errors.InsufficientPrivilege)


def test_the_app_role_reads_and_writes_the_registry(app: Conn) -> None:
    app.execute("INSERT INTO registry.stores (store_id, name, created_at) "
                "VALUES ('s1', 'Shinjuku', '2026-01-15T10:00:00Z')")
    app.execute("UPDATE registry.stores SET active = false WHERE store_id = 's1'")
    assert app.execute("SELECT active FROM registry.stores").fetchall() == [(False,)]
    app.execute("DELETE FROM registry.stores")
    assert app.execute("SELECT count(*) FROM registry.stores").fetchone() == (0,)


def test_times_outside_the_accepted_range_are_refused(app: Conn) -> None:
    """SQLCipher step 9 as a type: every stored time lies in 2000..2199 UTC."""
    refuse(app, "INSERT INTO registry.stores (store_id, name, created_at) "
           "VALUES ('s1', 'Shinjuku', '0999-01-01T00:00:00Z')", psycopg.errors.CheckViolation)

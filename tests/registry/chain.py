"""A registry on a chain's PostgreSQL database, set up the way an operator does (issue 15).

`chain_registry()` provisions a fresh database in the session's throw-away
cluster (TLS 1.3, SCRAM, owner and app roles), writes both roles' passwords
to 0600 files, configures `registry.storage = "postgres"` with only those
files' paths, runs `init_registry` as the owner (migrate + key canary +
REGISTRY_INIT) and adds the same users as the SQLCipher template. The result
is the same `Registry` helper the SQLCipher tests use, so a flow runs
unchanged on both back-ends.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.config import PostgresSettings, RegistrySettings
from registry.context import OwnerLogin, init_registry
from registry.storage.postgres.cluster import Database, ThrowawayCluster
from tests.registries import Registry, add_test_users


def password_file(folder: Path, name: str, password: str) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def chain_settings(database: Database, data_dir: Path, secrets_dir: Path,
                   **postgres: object) -> MamoruSettings:
    """Settings naming the database and the *files* holding the password; nothing secret."""
    values: dict[str, object] = {
        "host": "127.0.0.1", "port": database.port, "dbname": database.name,
        "user": database.app, "ca_file": database.ca_file,
        "password_file": password_file(secrets_dir, "app.pw", database.app_password),
        **postgres}
    policy = RegistrySettings(storage="postgres", postgres=PostgresSettings(**values))
    return get_settings(data_dir=data_dir, registry=policy)


def owner_login(database: Database, secrets_dir: Path) -> OwnerLogin:
    return OwnerLogin(database.owner,
                      password_file(secrets_dir, "owner.pw", database.owner_password))


def chain_registry(cluster: ThrowawayCluster, tmp_path: Path, engine: FaceEngine,
                   face_data: Path) -> tuple[Registry, Database]:
    """A new chain database, initialised, with the template's users; the `Registry` on it."""
    database = cluster.create_database(f"chain_{secrets.token_hex(5)}")
    secrets_dir = tmp_path / "secrets"
    settings = chain_settings(database, tmp_path / "data", secrets_dir)
    ctx = init_registry(registry_paths(settings), settings.registry, index_spec(settings),
                        owner=owner_login(database, secrets_dir))
    add_test_users(ctx)
    return Registry(settings, ctx, engine, face_data), database

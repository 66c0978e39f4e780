"""Where a chain benchmark's registry lives: SQLCipher files, or a throw-away PostgreSQL cluster.

`registry_backend` yields the settings the benchmark opens the registry with,
the environment a `mamoru serve` subprocess needs to open the same registry,
and (PostgreSQL) the owner login `init_registry` migrates with and the
cluster's process ids, so the server's CPU includes the database's. The
PostgreSQL set-up is the one tests/registry/chain.py uses, as an operator does
it: TLS 1.3 with `verify-full`, SCRAM, owner and app roles, and only the
*paths* of the 0600 password files in the settings and the environment. The
cluster is `durable` (fsync on), as a benchmark of PostgreSQL must be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mamoru.settings import MamoruSettings, get_settings
from registry.config import PostgresSettings, RegistrySettings
from registry.context import OwnerLogin
from registry.keys.custody import KeyCustodySettings
from registry.storage.postgres.cluster import ThrowawayCluster

BACKENDS = ("sqlcipher", "postgres")
DATABASE = "chain_bench"
PG_MAX_CONNECTIONS = 200  # several API workers, each with its own connections


@dataclass(frozen=True)
class Backend:
    """A registry's settings, the server's environment, and what else runs for it."""

    name: str
    settings: MamoruSettings
    env: dict[str, str]
    owner: OwnerLogin | None = None  # PostgreSQL: the role that creates the schema
    database_pids: Callable[[], list[int]] = field(default=list)


def _secret_file(folder: Path, name: str, secret: str) -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _key() -> KeyCustodySettings:
    """The master key in a plain file beside the data: throw-away, development setting."""
    return KeyCustodySettings(insecure_plain_key_file_on_data_disk=True)


def _common_env(settings: MamoruSettings) -> dict[str, str]:
    return {"MAMORU_DATA_DIR": str(settings.data_dir),
            "MAMORU_CACHE_DIR": str(settings.cache_dir),
            "MAMORU_KEY__INSECURE_PLAIN_KEY_FILE_ON_DATA_DISK": "true"}


@contextmanager
def registry_backend(name: str, tmp: Path) -> Iterator[Backend]:
    """The back-end `name` set up in `tmp` (and, for PostgreSQL, a cluster stopped on exit)."""
    if name == "sqlcipher":
        settings = get_settings(data_dir=tmp / "data", key=_key())
        yield Backend(name, settings, _common_env(settings))
        return
    if name != "postgres":
        raise ValueError(f"unknown back-end {name!r}; one of {', '.join(BACKENDS)}")
    with ThrowawayCluster(durable=True, max_connections=PG_MAX_CONNECTIONS) as cluster:
        database = cluster.create_database(DATABASE)
        secrets_dir = tmp / "secrets"
        app_password = _secret_file(secrets_dir, "app.pw", database.app_password)
        owner_password = _secret_file(secrets_dir, "owner.pw", database.owner_password)
        postgres = PostgresSettings(host="127.0.0.1", port=database.port, dbname=database.name,
                                    user=database.app, password_file=app_password,
                                    ca_file=database.ca_file)
        settings = get_settings(data_dir=tmp / "data", key=_key(),
                                registry=RegistrySettings(storage="postgres", postgres=postgres))
        env = {**_common_env(settings),
               "MAMORU_REGISTRY__STORAGE": "postgres",
               "MAMORU_REGISTRY__POSTGRES__HOST": postgres.host,
               "MAMORU_REGISTRY__POSTGRES__PORT": str(postgres.port),
               "MAMORU_REGISTRY__POSTGRES__DBNAME": postgres.dbname,
               "MAMORU_REGISTRY__POSTGRES__USER": postgres.user,
               "MAMORU_REGISTRY__POSTGRES__PASSWORD_FILE": str(postgres.password_file),
               "MAMORU_REGISTRY__POSTGRES__CA_FILE": str(postgres.ca_file)}
        yield Backend(name, settings, env, OwnerLogin(database.owner, owner_password),
                      cluster.process_ids)

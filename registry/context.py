"""An opened registry: key, encrypted databases, evidence store, index, audit trail.

Opening fails loudly and early (missing key, wrong key, unreadable database)
before anything is written. Every writing use case runs under one
process-wide lock and leaves behind a state that `recover()` can always
complete: orphaned evidence files are swept, a stale index is republished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from kernel.durable import make_private_dir
from kernel.errors import NotInitialisedError, RegistryError, WrongKeyError
from kernel.evidence import EvidenceImages, EvidenceStore
from kernel.watchlist_index import (
    IndexedTemplate,
    IndexIntegrityError,
    WatchlistIndex,
    publish_index,
    read_index_version,
)
from registry.audit.trail import Action, AuditTrail
from registry.clock import utc_now
from registry.config import PostgresSettings, RegistrySettings
from registry.index_log import log_published
from registry.keys.custody import KeyCustody
from registry.keys.master import MasterKey, new_master_key
from registry.repository import RegistryRepository
from registry.storage.database import OpenedDatabase, open_registry_database
from registry.storage.opened import OpenedStorage, SqlCipherStorage

if TYPE_CHECKING:
    from sqlite3 import Connection


class Reseal(Protocol):
    """Re-encrypts one file kept under the master key from `old` to `new`.

    Resumable: a file already under `new` is left as it is, so a rotation
    interrupted at any point is completed by running every step again.
    """

    def __call__(self, paths: RegistryPaths, old: MasterKey, new: MasterKey) -> None: ...


@dataclass(frozen=True)
class RegistryPaths:
    """Where each part of the registry lives under the data folder."""

    data_dir: Path
    custody: KeyCustody  # where the master key is kept (never in the clear on the data disk)
    # Files sealed under the master key by packages above the core (the joint-use key
    # file), each with the step that re-seals it on a key rotation. The wiring
    # (`mamoru.wiring.registry_paths`) lists them, so the core imports none of their owners.
    reseal: tuple[Reseal, ...]

    @property
    def key_file(self) -> Path:
        return self.custody.path

    @property
    def database(self) -> Path:
        return self.data_dir / "registry.db"

    @property
    def audit_database(self) -> Path:
        return self.data_dir / "audit.db"

    @property
    def audit_head(self) -> Path:
        return self.data_dir / "audit.head"

    @property
    def audit_base(self) -> Path:
        """The (seq, hash) the pruned trail verifies from; written before each prune."""
        return self.data_dir / "audit.base"

    @property
    def evidence(self) -> Path:
        return self.data_dir / "evidence"

    @property
    def index(self) -> Path:
        return self.data_dir / "index" / "watchlist.idx"

    @property
    def backups(self) -> Path:
        return self.data_dir / "backups"

    @property
    def lock(self) -> Path:
        return self.data_dir / ".write.lock"

    @property
    def joint_use_keys(self) -> Path:
        """This store's joint-use signing and encryption keys (encrypted, 0600)."""
        return self.data_dir / "joint-use" / "store.keys"


@dataclass(frozen=True)
class IndexSpec:
    """Which model pack's templates the published index holds."""

    pack: str
    dim: int


class RegistryContext:
    """The opened registry; use as a context manager so files are closed on every path.

    Storage-neutral (issue 15): `storage` is the SQLCipher files of one box or a
    chain's PostgreSQL database (`registry.storage.opened.OpenedStorage`);
    `paths` still names this host's own files (the key custody, the published
    index, backups, the joint-use keys).
    """

    def __init__(self, paths: RegistryPaths, key: MasterKey, storage: OpenedStorage,
                 policy: RegistrySettings, index_spec: IndexSpec) -> None:
        self.paths = paths
        self.policy = policy
        self.index_spec = index_spec
        self._key = key
        self._storage = storage
        self.audit = AuditTrail(self.repo, storage.anchors)

    @property
    def repo(self) -> RegistryRepository:
        return self._storage.repo

    @property
    def evidence(self) -> EvidenceImages:
        return self._storage.evidence

    @property
    def storage(self) -> OpenedStorage:
        return self._storage

    @property
    def backend(self) -> str:
        """"sqlcipher" or "postgres"."""
        return self._storage.backend

    def require_files(self, what: str) -> None:
        """Refuse, in one line, a use case that works on the SQLCipher files only (so far)."""
        if self._storage.backend != "sqlcipher":
            raise RegistryError(f"{what} is not supported on the {self._storage.backend} "
                                "registry yet; nothing was changed")

    def evidence_folder(self) -> EvidenceStore:
        """The evidence as files, for the use cases that copy them (backups, checks)."""
        evidence = self._storage.evidence
        if not isinstance(evidence, EvidenceStore):
            raise RegistryError(f"the evidence of the {self.backend} registry is not in files")
        return evidence

    def sqlcipher_connection(self) -> Connection:
        """The SQLCipher connection, for use cases still written in SQLite's SQL."""
        return self._storage.sqlcipher_connection()

    @property
    def master_key(self) -> MasterKey:
        return self._key

    def index_key(self) -> bytes:
        """The key the edge box needs to read the published index, and nothing else."""
        return self._key.derive("index")

    def forbid_writes(self) -> None:
        """Make this opening read-only for good: the database refuses any write on it."""
        self._storage.forbid_writes()

    def close(self) -> None:
        self._storage.close()

    def reconnect(self, while_closed: Callable[[], None]) -> None:
        """Close the databases, run `while_closed` (a restore swaps files), open them again."""
        self._storage.reconnect(while_closed)

    def switch_key(self, new_key: MasterKey) -> None:
        """Re-encrypt databases and evidence under `new_key` and use it from now on.

        Resumable: a database already under the new key is left alone, and the
        evidence store skips files that already open under the new key.
        """
        self._storage.switch_key(new_key)
        for reseal in self.paths.reseal:
            reseal(self.paths, self._key, new_key)
        self._key = new_key

    def __enter__(self) -> RegistryContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Serialise writers across processes (on PostgreSQL across hosts too); the audit
        trail's head is anchored after each write."""
        with self._storage.writer_lock():
            try:
                yield
            finally:
                self.audit.anchor_head()

    def recover(self) -> None:
        """Finish whatever a crash interrupted: sweep orphan evidence, republish the index."""
        with self.writing():
            self.sweep_orphan_evidence()
            self.publish_index_if_stale()

    def sweep_orphan_evidence(self) -> int:
        """Delete encrypted images no row refers to (left by a crash between commit and delete)."""
        orphans = self.evidence.ids() - self.repo.all_evidence_ids()
        for image_id in orphans:
            self.evidence.delete(image_id)
        return len(orphans)

    def publish_index_if_stale(self) -> int:
        """Publish the active templates when the file is older than the database's version.

        An index whose clear header is damaged is published again too: it is
        derived from the database, so rebuilding it loses nothing.
        """
        version = self.repo.watchlist_version()
        try:
            published = read_index_version(self.paths.index)
        except IndexIntegrityError:
            published = None
        if published == version:
            return version
        if published is not None and published > version and not self._index_authentic():
            # A damaged version field, not a newer index: drop it, it is rebuilt below.
            self.paths.index.unlink()
        templates = [
            IndexedTemplate(t.template_id, t.entry_id, np.frombuffer(t.vector, dtype=np.float32))
            for t in self.repo.active_templates(self.index_spec.pack)
        ]
        log_published(self.repo, version, templates, utc_now())  # the deltas boxes fetch
        make_private_dir(self.paths.index.parent)
        publish_index(self.paths.index, key=self.index_key(), version=version,
                      pack=self.index_spec.pack, dim=self.index_spec.dim, templates=templates)
        return version

    def _index_authentic(self) -> bool:
        """Whether the published index decrypts and authenticates under our index key."""
        try:
            WatchlistIndex.load(self.paths.index, key=self.index_key())
        except IndexIntegrityError:
            return False
        return True


def open_registry(
    paths: RegistryPaths, policy: RegistrySettings, index_spec: IndexSpec
) -> RegistryContext:
    """Open an existing registry; nothing is created or changed if the key is wrong."""
    if policy.storage == "postgres":
        return _open_postgres(paths, policy, index_spec)
    if not paths.database.is_file():
        raise NotInitialisedError(
            f"no registry in {paths.data_dir}: run `mamoru registry init` first"
        )
    key = paths.custody.load()
    pending = paths.custody.pending()
    candidates = [key, pending.load()] if pending is not None and pending.exists() else [key]
    try:
        opened = open_registry_database(paths.database, paths.audit_database, candidates,
                                        default_store=policy.store_id)
    except WrongKeyError as exc:
        raise WrongKeyError(f"{paths.custody}: {exc}") from None  # name the key's custody too
    context = RegistryContext(paths, key, _sqlcipher_storage(paths, key, opened, policy),
                              policy, index_spec)
    if len(candidates) > 1:
        finish_rotation(context, candidates[-1], resumed=True)
    return context


def pending_custody(paths: RegistryPaths) -> KeyCustody:
    """Where a key rotation parks the new key until every file is re-encrypted."""
    pending = paths.custody.pending()
    if pending is None:
        raise RegistryError(f"{paths.custody} is read-only: rotate the key with `mamoru key "
                            "rotate` outside the unit")
    return pending


def finish_rotation(context: RegistryContext, new_key: MasterKey, *, resumed: bool,
                    actor: str = "system") -> None:
    """Move every encrypted file to `new_key`, then make it the key file's content.

    The same steps run for a fresh rotation and after a crash in one, so a
    rotation killed at any point is completed by the next open.
    """
    with context.writing():
        context.switch_key(new_key)
        with context.repo.unit_of_work():
            version = context.repo.bump_watchlist_version()
            context.audit.record(actor=actor, action=Action.KEY_ROTATE, at=utc_now(),
                                 details={"watchlist_version": version,
                                          "resumed_after_interruption": resumed})
        context.publish_index_if_stale()
        context.paths.custody.promote(pending_custody(context.paths))


@dataclass(frozen=True)
class OwnerLogin:
    """The PostgreSQL role that owns the chain database (it migrates it), and the file that
    holds its password. Only `registry init` uses it; the API logs in as the app role."""

    user: str
    password_file: Path


def _sqlcipher_storage(paths: RegistryPaths, key: MasterKey, opened: OpenedDatabase,
                       policy: RegistrySettings) -> SqlCipherStorage:
    return SqlCipherStorage(opened, database=paths.database,
                            audit_database=paths.audit_database, evidence_dir=paths.evidence,
                            head_file=paths.audit_head, base_file=paths.audit_base,
                            lock_file=paths.lock, key=key, default_store=policy.store_id)


def _postgres_settings(policy: RegistrySettings) -> PostgresSettings:
    if policy.postgres is None:  # the settings' validator already refuses this
        raise RegistryError("storage is postgres but [registry.postgres] is not set")
    return policy.postgres


def _open_postgres(paths: RegistryPaths, policy: RegistrySettings,
                   index_spec: IndexSpec) -> RegistryContext:
    """Connect, check schema and key canary; this host keeps only its index (and key custody)."""
    # Imported here: a single-store box never loads the PostgreSQL driver.
    from registry.storage.postgres.opened import open_postgres_storage

    key = paths.custody.load()
    custody = paths.custody.pending()
    pending = custody.load() if custody is not None and custody.exists() else None
    storage = open_postgres_storage(_postgres_settings(policy), key, pending)
    make_private_dir(paths.data_dir)
    context = RegistryContext(paths, key, storage, policy, index_spec)
    if pending is not None:  # a rotation was interrupted: finish it, as on SQLCipher
        finish_rotation(context, pending, resumed=True)
    return context


def _init_postgres(paths: RegistryPaths, policy: RegistrySettings, index_spec: IndexSpec,
                   owner: OwnerLogin | None) -> RegistryContext:
    """Migrate as the owner, record the key canary and the init; refuse an existing registry."""
    from registry.storage.postgres.base import prepare_session
    from registry.storage.postgres.opened import (
        PostgresStorage,
        check_schema,
        connect,
        migrate_as_owner,
        write_canary,
    )

    settings = _postgres_settings(policy)
    if owner is None:
        raise RegistryError("a PostgreSQL registry is created by its owner role: give "
                            "--pg-owner and --pg-owner-password-file")
    paths.custody.check_allowed()
    make_private_dir(paths.data_dir)
    os.chmod(paths.data_dir, 0o700)
    key = paths.custody.load() if paths.custody.exists() else None
    migrate_as_owner(settings, owner=owner.user, owner_password_file=owner.password_file)
    connection = prepare_session(connect(settings))
    try:
        check_schema(connection, settings)
        if connection.execute("SELECT 1 FROM key_canary").fetchone() is not None:
            raise RegistryError(f"a registry already exists in PostgreSQL {settings.host}/"
                                f"{settings.dbname} (its schema is up to date now); nothing "
                                "else was changed")
        if key is None:
            key = new_master_key()
            paths.custody.store(key)
        write_canary(connection, key)
    except BaseException:
        connection.close()
        raise
    context = RegistryContext(paths, key, PostgresStorage(settings, connection, key), policy,
                              index_spec)
    return _record_init(context)


def init_registry(
    paths: RegistryPaths, policy: RegistrySettings, index_spec: IndexSpec,
    *, owner: OwnerLogin | None = None,
) -> RegistryContext:
    """Create key file, databases and folders for a new registry; refuse to touch an old one.

    On PostgreSQL (`policy.storage`), `owner` migrates the chain database first.
    """
    if policy.storage == "postgres":
        return _init_postgres(paths, policy, index_spec, owner)
    if paths.database.exists() or paths.audit_database.exists():
        raise RegistryError(f"a registry already exists in {paths.data_dir}")
    paths.custody.check_allowed()  # before anything is created
    make_private_dir(paths.data_dir)
    os.chmod(paths.data_dir, 0o700)
    custody = paths.custody
    if custody.exists():
        key = custody.load()
    else:
        key = new_master_key()
        custody.store(key)
    opened = open_registry_database(paths.database, paths.audit_database, [key], create=True,
                                    default_store=policy.store_id)
    for path in (paths.database, paths.audit_database):
        os.chmod(path, 0o600)
    context = RegistryContext(paths, key, _sqlcipher_storage(paths, key, opened, policy),
                              policy, index_spec)
    return _record_init(context)


def _record_init(context: RegistryContext) -> RegistryContext:
    policy = context.policy
    with context.writing(), context.repo.unit_of_work():
        context.audit.record(actor="system", action=Action.REGISTRY_INIT, at=utc_now(),
                             details={"store_id": policy.store_id,
                                      "retention_years": policy.retention_years})
    context.recover()
    return context

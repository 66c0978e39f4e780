"""Builds configured objects from settings: the only place that knows both sides."""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edge.archive import SnapshotArchive
from edge.index_source import RemoteIndexSource
from edge.matcher import WatchlistMatcher
from edge.metrics import EdgeMetrics
from edge.outbox import Delivery, Outbox
from kernel.durable import make_private_dir, wipe_file
from kernel.errors import KeyFileError, StoreDamagedError
from kernel.evidence import EvidenceStore
from mamoru import __version__
from mamoru.settings import ConfigError, MamoruSettings
from models.engine import FaceEngine
from models.packs import PackCatalogue
from registry.api.host import ApiHost
from registry.clock import utc_now
from registry.config import PostgresSettings
from registry.context import IndexSpec, RegistryContext, RegistryPaths, open_registry
from registry.jobs import FileJobLock, PostgresJobLock, exclusive_job, job_lock_file
from registry.joint_use.keys import rekey_store_keys
from registry.keys.custody import (
    CredentialKey,
    KeyCustody,
    PlainKeyFile,
    SystemdCredential,
    WrappedKeyFile,
    resolve_custody,
)
from registry.keys.master import MasterKey, new_master_key
from registry.rate_limits import (
    MemoryRateLimitStore,
    RateLimitStore,
    SharedRateLimitStore,
    SqliteFileCounters,
    WindowCounters,
)


def open_engine(
    settings: MamoruSettings, *, pack: str | None = None, accept_licence: bool = False
) -> FaceEngine:
    """The face engine for the configured (or named) pack, verified and ready."""
    catalogue = PackCatalogue(settings.resolved_models_dir, settings.engine.drop_in_pack_dirs)
    return FaceEngine.open(
        catalogue.get(pack or settings.engine.pack),
        settings.runtime,
        accept_licence=accept_licence or settings.engine.accept_noncommercial_licence,
        threshold=settings.engine.match_threshold,
    )


def api_host(settings: MamoruSettings, *, engine: FaceEngine | None = None,
             clock: Callable[[], datetime] = utc_now, several_workers: bool = False) -> ApiHost:
    """What `create_app` needs from this installation: its settings and how to open things.

    `engine`: an already opened face engine (the caller owns it); by default the
    configured one is opened when the app starts. `clock`: tests pass one they can move.
    `several_workers`: this app is one of `mamoru serve --workers N` (see `rate_limit_store`).
    """

    def engine_factory() -> FaceEngine:
        return engine if engine is not None else open_engine(settings)

    return ApiHost(registry=settings.registry, web=settings.web,
                   registration_quality=settings.quality.registration,
                   open_registry=lambda: open_registry_from(settings),
                   open_engine=engine_factory, version=__version__, clock=clock,
                   rate_limits=rate_limit_store(settings, several_workers=several_workers))


# --- what must hold across API workers and hosts: decided here, by `registry.storage` -------

RATE_LIMIT_FILE = "ratelimit.db"  # in the data folder: one host's workers' shared counts


def _chain_database(settings: MamoruSettings) -> PostgresSettings | None:
    """The chain's PostgreSQL database when the registry is on one, else None (SQLCipher)."""
    policy = settings.registry
    if policy.storage != "postgres":
        return None
    if policy.postgres is None:  # the settings' validator already refuses this
        raise ConfigError("storage is postgres but [registry.postgres] is not set")
    return policy.postgres


def rate_limit_store(settings: MamoruSettings, *,
                     several_workers: bool = False) -> Callable[[], RateLimitStore]:
    """Where the API's rate limits count (issue 15, item 3; G-SEC-2).

    On a chain's PostgreSQL database: in its counters (`PostgresWindowCounters`,
    one new app-role connection per worker), for one worker as for N, since
    the chain's other API hosts count there too. On SQLCipher: in the data
    folder's `ratelimit.db` when several workers of this host serve, else in
    this process (`MemoryRateLimitStore`).
    """
    chain = _chain_database(settings)
    if chain is not None:
        from registry.storage.postgres.opened import connect_app
        from registry.storage.postgres.rate_limits import PostgresWindowCounters

        def counters() -> WindowCounters:
            return PostgresWindowCounters(lambda: connect_app(chain))

        return lambda: SharedRateLimitStore(counters)
    if several_workers:
        counts = settings.data_dir / RATE_LIMIT_FILE
        return lambda: SharedRateLimitStore(lambda: SqliteFileCounters(counts))
    return MemoryRateLimitStore


@contextmanager
def job_lock(settings: MamoruSettings, job: str) -> Iterator[bool]:
    """True while this run holds `job` (a `registry.jobs` name); False if another run does.

    On a chain's PostgreSQL database: `PostgresJobLock`, an advisory lock on a
    new app-role connection held for the run (every host's timer meets the
    same lock). On SQLCipher: `FileJobLock`, a file next to the registry
    database. A SQLCipher registry not initialised yet takes no lock: opening
    it then says what is missing.
    """
    chain = _chain_database(settings)
    if chain is not None:
        from registry.storage.postgres.opened import connect_app

        with closing(connect_app(chain)) as connection, \
                exclusive_job(PostgresJobLock(connection, job)) as held:
            yield held
        return
    database = registry_paths(settings).database
    if not database.parent.is_dir():
        yield True
        return
    with exclusive_job(FileJobLock(job_lock_file(database, job))) as held:
        yield held


def key_passphrase() -> str:
    """The passphrase of a wrapped key file: MAMORU_KEY_PASSPHRASE, else a prompt on a terminal."""
    from_env = os.environ.get("MAMORU_KEY_PASSPHRASE")
    if from_env is not None:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass("Master key passphrase: ")
    return ""


def key_custody(settings: MamoruSettings) -> KeyCustody:
    """Where the configured master key is kept (systemd credential, wrapped file, plain file)."""
    return resolve_custody(settings.key, data_dir=settings.data_dir,
                           key_file=settings.resolved_key_file, passphrase=key_passphrase)


def seal_plain_key(settings: MamoruSettings, *, credential: Path | None, with_key: str,
                   wrapped: Path | None) -> KeyCustody:
    """Copy the plain key file into a sealed custody, check the copy, then wipe the plain file."""
    if (credential is None) == (wrapped is None):
        raise ConfigError("give exactly one of --systemd-credential or --wrapped")
    if with_key not in ("auto", "host", "tpm2", "host+tpm2"):
        raise ConfigError(f"--with-key must be auto, host, tpm2 or host+tpm2, not {with_key}")
    plain = PlainKeyFile(settings.resolved_key_file, settings.data_dir, allow_on_data_disk=True)
    key = plain.load()  # reading it to seal it is the one use allowed anywhere
    target: KeyCustody
    if credential is not None:
        mode: CredentialKey = with_key  # type: ignore[assignment]  # checked above
        target = SystemdCredential(credential, settings.key.credential_name, mode)
    else:
        assert wrapped is not None
        target = WrappedKeyFile(wrapped, key_passphrase)
    target.store(key)
    if target.load().derive("database") != key.derive("database"):
        raise KeyFileError(f"{target} does not read back the same key; the plain file is kept")
    wipe_file(plain.path)
    return target


def registry_paths(settings: MamoruSettings, data_dir: Path | None = None) -> RegistryPaths:
    """The configured registry's files (or a copy's, in `data_dir`), with every file a key
    rotation must re-seal besides the core's own."""
    return RegistryPaths(data_dir or settings.data_dir, key_custody(settings),
                         reseal=(reseal_joint_use_keys,))


def reseal_joint_use_keys(paths: RegistryPaths, old: MasterKey, new: MasterKey) -> None:
    """The joint-use key file is sealed under the master key: it follows a rotation."""
    rekey_store_keys(paths.joint_use_keys, old, new)


def index_spec(settings: MamoruSettings) -> IndexSpec:
    """The index holds templates of the configured pack, at that pack's dimension."""
    catalogue = PackCatalogue(settings.resolved_models_dir, settings.engine.drop_in_pack_dirs)
    manifest = catalogue.get(settings.engine.pack).manifest
    return IndexSpec(manifest.name, manifest.recognizer.embedding_dim)


def open_registry_from(settings: MamoruSettings) -> RegistryContext:
    """The configured registry, opened and recovered from any interrupted write."""
    context = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    context.recover()
    return context


@dataclass(frozen=True)
class EdgeParts:
    """Everything the edge loop needs besides its cameras, checked at start-up."""

    engine: FaceEngine
    matcher: WatchlistMatcher
    outbox: Outbox
    archive: SnapshotArchive
    metrics: EdgeMetrics


def read_device_token(path: Path) -> str:
    """The box's device token; refused if others can read the file (like the key file)."""
    if not path.is_file():
        raise ConfigError(f"device token file {path} does not exist (`mamoru device add`)")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"device token file {path} is readable by others; run `chmod 600 {path}`")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"device token file {path} is empty")
    return token


BOX_KEY_FILE = "box.key"  # in `<data_dir>/edge`: a chain's box's own key, never the master key


def box_key_custody(settings: MamoruSettings) -> KeyCustody:
    """Where a chain's box keeps its own key: `<data_dir>/edge/box.key`, 0600.

    On the box's own disk by design: it opens only this box's copies (outbox,
    snapshots, index cache, the index key it was given), nothing of the chain.
    """
    edge_dir = settings.data_dir / "edge"
    return PlainKeyFile(edge_dir / BOX_KEY_FILE, settings.data_dir, allow_on_data_disk=True)


def load_box_key(settings: MamoruSettings) -> MasterKey:
    """The box key, generated on the box's first run; unreadable: one clear error, no start."""
    custody = box_key_custody(settings)
    if not custody.exists():
        make_private_dir(custody.path.parent)
        custody.store(new_master_key())
    try:
        return custody.load()
    except StoreDamagedError as exc:
        raise KeyFileError(
            f"the box key {custody.path} is damaged ({exc.problem}); put it back, or remove "
            f"{custody.path.parent} to start this box afresh (it fetches the index again; "
            "alerts waiting in its outbox are lost)") from None


def open_edge_parts(settings: MamoruSettings) -> EdgeParts:
    """Engine, watchlist, outbox and archive for a box.

    A single-box install (`index_source = "local"`, the registry on the same
    box) uses the registry's master key as it always did. A chain's box
    (`index_source = "registry"`) never loads a master key (issue 15): its own
    box key seals its copies, and the index key comes from the registry.
    """
    edge_dir = settings.data_dir / "edge"
    delivery = None
    if settings.edge.registry_url:
        if settings.edge.device_token_file is None:
            raise ConfigError("edge.registry_url is set but edge.device_token_file is not")
        delivery = Delivery(settings.edge.registry_url,
                            read_device_token(settings.edge.device_token_file),
                            settings.edge.registry_ca_file)
    if settings.edge.index_source == "registry":
        if delivery is None:
            raise ConfigError("edge.index_source is 'registry' but edge.registry_url is not set")
        box_key = load_box_key(settings)
        engine = open_engine(settings)
        source = RemoteIndexSource(delivery, box_key.derive("index"), pack=engine.info.pack,
                                   cache=edge_dir / "index" / "watchlist.idx")
        matcher = WatchlistMatcher(None, None, pack=engine.info.pack,
                                   poll_s=settings.edge.index_poll_s, source=source)
        edge_key = box_key.derive("edge")
    else:
        key = key_custody(settings).load()
        engine = open_engine(settings)
        matcher = WatchlistMatcher(registry_paths(settings).index, key.derive("index"),
                                   pack=engine.info.pack, poll_s=settings.edge.index_poll_s)
        edge_key = key.derive("edge")
    archive = SnapshotArchive(EvidenceStore(edge_dir / "snapshots", edge_key))
    return EdgeParts(
        engine=engine,
        matcher=matcher,
        outbox=Outbox(edge_dir / "outbox", edge_key, delivery,
                      lifetimes=settings.edge.outbox_lifetimes(), snapshots=archive),
        archive=archive,
        metrics=EdgeMetrics(),
    )


def rekey_edge_copies(settings: MamoruSettings, old_key: MasterKey, new_key: MasterKey) -> bool:
    """After `mamoru key rotate`: this box's alert copies (outbox, snapshots) follow the key.

    False when the data directory holds no edge box, or a chain's box (its
    copies are sealed under its own box key, which a rotation leaves alone).
    Copies readable under neither key are wiped: nothing is kept that nobody can read.
    """
    edge_dir = settings.data_dir / "edge"
    if not edge_dir.is_dir() or box_key_custody(settings).exists():
        return False  # no box, or a chain's box: its copies are under its own key
    old = old_key.derive("edge")
    outbox = Outbox(edge_dir / "outbox", old, None, lifetimes=settings.edge.outbox_lifetimes(),
                    snapshots=SnapshotArchive(EvidenceStore(edge_dir / "snapshots", old)))
    outbox.rekey(new_key.derive("edge"))
    return True

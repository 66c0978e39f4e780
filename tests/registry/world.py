"""Three real joint-use stores (G-SHR-1..7): what the `world` fixture builds, and its parts.

Three registries, each initialised on its own (separate SQLCipher files,
separate master keys, separate joint-use keys): A and B in region "kanto",
C in "kansai", all members of one adopted scheme, Obama registered at A from a
real photo by two people. `build_world` makes them once per session
(tests/registry/conftest.py); each test gets a byte copy (`copy_world`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from kernel.watchlist_index import WatchlistIndex
from mamoru.settings import MamoruSettings, get_settings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts import users
from registry.config import RegistrySettings
from registry.context import RegistryContext, init_registry, open_registry
from registry.domain import ConfirmationKind, IncidentInput, OffenceCategory, Role, User
from registry.joint_use.keys import load_store_keys
from registry.joint_use.scheme import LoadedScheme, adopt_scheme, scheme_in_force
from registry.joint_use.sync import init_keys
from registry.notice.publication import publish_notice
from registry.scheme import SHARED_ITEMS
from registry.watchlist import approval
from tests.faces import image
from tests.registries import OBAMA, T0

PASSWORD = "correct horse battery"
NAME = "山田太郎"
FEATURES = "紺のジャンパー、身長170cm位"
REF = "被害届-2026-0042"
NOTE = "店員メモ: 常習の疑いあり"
A_USERS = ("tanaka.staff", "suzuki.mgr", "sato.mgr", "kimura.admin")
REGIONS = {"store-a": "kanto", "store-b": "kanto", "store-c": "kansai"}
ADMINS = {"store-a": "kimura.admin", "store-b": "ito.admin", "store-c": "kato.admin"}
DAY = timedelta(days=1)


@dataclass
class Store:
    member_id: str
    settings: MamoruSettings
    ctx: RegistryContext

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def user(self, name: str) -> User:
        found = self.ctx.repo.user_by_name(name)
        assert found is not None, name
        return found

    def scheme(self) -> LoadedScheme:
        return scheme_in_force(self.ctx)

    def index(self) -> WatchlistIndex:
        return WatchlistIndex.load(self.ctx.paths.index, key=self.ctx.index_key(),
                                   expected_pack=self.ctx.index_spec.pack)


@dataclass
class World:
    root: Path
    stores: dict[str, Store] = field(default_factory=dict)
    obama_at_a: str = ""

    def __getitem__(self, member: str) -> Store:
        return self.stores[member]


def store_settings(root: Path, member: str) -> MamoruSettings:
    return get_settings(data_dir=root / member, registry=RegistrySettings(
        store_id=member, joint_use_scheme=root / "scheme.json"))


def open_store(root: Path, member: str) -> Store:
    settings = store_settings(root, member)
    ctx = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    ctx.recover()
    return Store(member, settings, ctx)


def scheme_json(members: list[dict[str, str]]) -> dict[str, object]:
    return {
        "format": 1,
        "name": "関東・関西 万引き防止 共同利用（試験）",
        "joint_use": "加盟店は、確実に犯罪を行った者の情報を以下のとおり共同利用します。",
        "data_items": list(SHARED_ITEMS),
        "purpose": "万引き等の再発防止のため、加盟店間で確実な犯罪者の情報を共有する",
        "managing_party": {"name": "小売防犯協議会事務局", "address": "東京都千代田区1-1",
                           "representative": "事務局長 防犯太郎", "contact": "03-0000-0000"},
        "region_rule": "same_region",
        "members": members,
    }


def member_of(store: Store) -> dict[str, str]:
    keys = load_store_keys(store.ctx.paths.joint_use_keys, store.ctx.master_key)
    return {"member_id": store.member_id, "store_name": f"{store.member_id} 店",
            "region": REGIONS[store.member_id], "signing_key": keys.signing_public,
            "encryption_key": keys.encryption_public}


def write_scheme(path: Path, members: list[dict[str, str]]) -> None:
    path.write_text(json.dumps(scheme_json(members), ensure_ascii=False, indent=2),
                    encoding="utf-8")


def build_world(root: Path, engine: FaceEngine, face_data: Path) -> World:
    """The three stores in `root`, in one adopted scheme, Obama registered at A; closed."""
    world = World(root)
    for member in REGIONS:
        settings = store_settings(root, member)
        ctx = init_registry(registry_paths(settings), settings.registry, index_spec(settings))
        names = A_USERS if member == "store-a" else (ADMINS[member],)
        for name in names:
            role = Role.ADMIN if name.endswith("admin") else (
                Role.MANAGER if name.endswith("mgr") else Role.STAFF)
            users.add_user(ctx.repo, ctx.audit, actor="test", username=name, role=role,
                           password=PASSWORD, now=T0)
        admin = ctx.repo.user_by_name(ADMINS[member])
        assert admin is not None
        for name in names:
            users.record_training(ctx.repo, ctx.audit, admin=admin, username=name, now=T0)
        init_keys(ctx, actor=admin, now=T0)
        world.stores[member] = Store(member, settings, ctx)
    write_scheme(root / "scheme.json", [member_of(s) for s in world.stores.values()])
    for store in world.stores.values():
        adopt_scheme(store.ctx, actor=store.user(ADMINS[store.member_id]),
                     path=root / "scheme.json",
                     now=T0)
        publish_notice(store.ctx, now=T0, actor="test")  # G-NOT-2: exports need it
    a = world["store-a"]
    proposal = approval.propose(
        a.ctx, engine, a.settings.quality.registration,
        actor=a.user("tanaka.staff"),
        photos=[approval.Photo("obama", image(face_data, OBAMA))],
        incident=IncidentInput(OffenceCategory.THEFT, T0, ConfirmationKind.POLICE_REPORT, REF,
                               damage="3 items, 4,200 yen", description=NOTE),
        features=FEATURES, display_name=NAME, now=T0,
    )
    approval.approve(a.ctx, actor=a.user("suzuki.mgr"), entry_id=proposal.entry_id,
                     reason="police damage report checked", now=T0)
    world.obama_at_a = proposal.entry_id
    for store in world.stores.values():
        store.ctx.close()
    return world


def copy_world(template: World, root: Path) -> World:
    """A byte copy of `template`'s stores in `root`, opened: every test starts fresh."""
    shutil.copytree(template.root, root)
    copy = World(root, obama_at_a=template.obama_at_a)
    for member in REGIONS:
        copy.stores[member] = open_store(root, member)
    return copy

"""The joint-use scheme (共同利用, G-SHR-1): one validated file, adopted by an admin.

The file's typed form and its one reader are `registry.scheme`; this module
adopts it and says which scheme is in force.

The managing party publishes one file (TOML or JSON) with the five items
that must be public before any sharing: that joint use happens, the data
items, the members, the purpose, and the party responsible for management;
and for each member its id, store name, region and public keys (Ed25519 to
verify its signatures, X25519 to encrypt bundles for it), plus the region
rule (G-SHR-3). The notice page is generated from the same file
(`Scheme.published_items()`), so what is published cannot drift from what
the system does, and `data_items` must list exactly the allow-list of
`export_schema` (the file is refused otherwise).

Membership is what decides who may send and receive, so it changes only by
an audited admin action: `adopt_scheme` records the file's SHA-256 and one
audit record per member added or removed. A scheme file edited afterwards
is refused (`SchemeNotAdoptedError`) until an admin adopts it: nobody can
add a member by editing a file on disk without it showing in the trail.

Example (TOML)::

    format = 1
    name = "関東地区 万引き防止 共同利用"
    joint_use = "当社グループ各店舗は、以下のとおり個人データを共同利用します。"
    data_items = ["offence_datetime", "offence_category", "damage", "features",
                  "camera_images", "face_templates", "expiry"]
    purpose = "万引き等の再発防止のため、確実に犯罪を行った者の情報を共有する"
    region_rule = "same_region"

    [managing_party]
    name = "関東小売防犯協議会事務局"
    address = "東京都千代田区..."
    representative = "事務局長 ..."
    contact = "03-0000-0000"

    [[members]]
    member_id = "store-a"
    store_name = "A店"
    region = "kanto"
    signing_key = "<base64, from `mamoru joint-use keys init`>"
    encryption_key = "<base64>"
    url = "https://store-a.example:8443"   # optional: where `mamoru joint-use push` sends
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kernel.durable import write_private_file
from registry.accounts.users import require_role
from registry.audit.trail import Action
from registry.context import RegistryContext
from registry.domain import Role, User
from registry.joint_use.errors import SchemeNotAdoptedError
from registry.scheme import Member, Scheme, SchemeError, parse_scheme


@dataclass(frozen=True)
class LoadedScheme:
    """A validated scheme file and the SHA-256 of its bytes (what the audit trail records)."""

    scheme: Scheme
    sha256: str
    path: Path

    def member(self, member_id: str) -> Member | None:
        return self.scheme.member(member_id)


def load_scheme(path: Path) -> LoadedScheme:
    """Read and validate a scheme file (TOML if it ends in .toml, JSON otherwise)."""
    if not path.is_file():
        raise SchemeError(f"no joint-use scheme file at {path}")
    data = path.read_bytes()
    return LoadedScheme(parse_scheme(data, path), hashlib.sha256(data).hexdigest(), path)


def configured_scheme_path(ctx: RegistryContext) -> Path:
    path = ctx.policy.joint_use_scheme
    if path is None:
        raise SchemeError("no joint-use scheme configured: set registry.joint_use_scheme "
                          "(MAMORU_REGISTRY__JOINT_USE_SCHEME)")
    return path


def scheme_in_force(ctx: RegistryContext, path: Path | None = None) -> LoadedScheme:
    """The configured scheme, refused unless it is the very file an admin adopted last."""
    loaded = load_scheme(path or configured_scheme_path(ctx))
    adopted = ctx.repo.current_scheme_sha256()
    if adopted is None:
        raise SchemeNotAdoptedError(
            f"the scheme {loaded.path} was never adopted here: an admin runs "
            "`mamoru joint-use scheme adopt`"
        )
    if adopted != loaded.sha256:
        raise SchemeNotAdoptedError(
            f"the scheme file {loaded.path} changed since it was adopted (sha256 "
            f"{loaded.sha256[:12]}, adopted {adopted[:12]}): membership changes only through "
            "`mamoru joint-use scheme adopt --as ADMIN`, which records them"
        )
    if loaded.member(ctx.policy.store_id) is None:
        raise SchemeError(f"this store ({ctx.policy.store_id}) is not a member of the scheme")
    return loaded


def former_members(ctx: RegistryContext, scheme: LoadedScheme) -> set[str]:
    """Members of any scheme adopted here before that are not members now."""
    earlier = {m.member_id for _, _, content in ctx.repo.adopted_schemes()
               for m in parse_scheme(content, Path("adopted.json")).members}
    return earlier - set(scheme.scheme.member_ids())


@dataclass(frozen=True)
class Adoption:
    sha256: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    keys_changed: tuple[str, ...]


def adopt_scheme(ctx: RegistryContext, *, actor: User, path: Path, now: datetime) -> Adoption:
    """Make a scheme file the one in force; record each membership change (admin only)."""
    require_role(actor, Role.ADMIN, trained=True)
    loaded = load_scheme(path)
    if loaded.member(ctx.policy.store_id) is None:
        raise SchemeError(f"this store ({ctx.policy.store_id}) is not a member of {path}; "
                          "adopting it would share with a scheme the store is not part of")
    with ctx.writing():
        previous = ctx.repo.current_scheme_sha256()
        if previous == loaded.sha256:
            raise SchemeError(
                f"the scheme {path} (sha256 {loaded.sha256[:12]}) is already in force")
        before = {m.member_id: m for m in _previous_members(ctx)}
        after = {m.member_id: m for m in loaded.scheme.members}
        added = tuple(sorted(set(after) - set(before)))
        removed = tuple(sorted(set(before) - set(after)))
        changed = tuple(sorted(
            m for m in set(after) & set(before)
            if (after[m].signing_key, after[m].encryption_key, after[m].region)
            != (before[m].signing_key, before[m].encryption_key, before[m].region)
        ))
        with ctx.repo.unit_of_work():
            ctx.repo.add_adopted_scheme(loaded.sha256, now,
                                        loaded.scheme.model_dump_json().encode("utf-8"))
            for member_id in added:
                member = after[member_id]
                ctx.audit.record(actor=actor.username, action=Action.JOINT_USE_MEMBER_ADDED,
                                 at=now, details={"member": member_id, "region": member.region,
                                                  "scheme_sha256": loaded.sha256,
                                                  "signing_key": member.signing_key})
            for member_id in removed:
                ctx.audit.record(actor=actor.username, action=Action.JOINT_USE_MEMBER_REMOVED,
                                 at=now, details={"member": member_id,
                                                  "scheme_sha256": loaded.sha256})
            ctx.audit.record(actor=actor.username, action=Action.JOINT_USE_SCHEME_ADOPTED, at=now,
                             details={"scheme_sha256": loaded.sha256,
                                      "previous_sha256": previous,
                                      "members": loaded.scheme.member_ids(),
                                      "region_rule": loaded.scheme.region_rule,
                                      "members_changed": list(changed)})
    return Adoption(loaded.sha256, added, removed, changed)


def _previous_members(ctx: RegistryContext) -> Sequence[Member]:
    adopted = ctx.repo.adopted_schemes()
    return parse_scheme(adopted[-1][2], Path("adopted.json")).members if adopted else ()


def add_member(ctx: RegistryContext, *, actor: User, path: Path, member: Member,
               now: datetime) -> Adoption:
    """Add a member to a JSON scheme file and adopt the result (one audited admin action)."""
    scheme = _editable(path)
    if scheme.member(member.member_id) is not None:
        raise SchemeError(f"{member.member_id} is already a member")
    _write_scheme(path, scheme.model_copy(update={"members": (*scheme.members, member)}))
    return adopt_scheme(ctx, actor=actor, path=path, now=now)


def remove_member(ctx: RegistryContext, *, actor: User, path: Path, member_id: str,
                  now: datetime) -> Adoption:
    """Remove a member: it receives nothing more, and its later bundles are refused."""
    scheme = _editable(path)
    if scheme.member(member_id) is None:
        raise SchemeError(f"{member_id} is not a member")
    remaining = tuple(m for m in scheme.members if m.member_id != member_id)
    _write_scheme(path, Scheme.model_validate({**scheme.model_dump(), "members": [
        m.model_dump() for m in remaining]}))
    return adopt_scheme(ctx, actor=actor, path=path, now=now)


def _editable(path: Path) -> Scheme:
    if path.suffix == ".toml":
        raise SchemeError("a TOML scheme is edited by hand (or by the managing party); "
                          "then run `mamoru joint-use scheme adopt`")
    return load_scheme(path).scheme


def _write_scheme(path: Path, scheme: Scheme) -> None:
    text = json.dumps(scheme.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
    write_private_file(path, text.encode("utf-8"))

"""The joint-use scheme document (共同利用, G-SHR-1): what the members agreed and publish.

One file, written by the managing party, holds the five items that must be
public before any sharing (that joint use happens, the data items, the
members, the purpose, the party responsible for management), and for each
member its id, store name, region and public keys, plus the region rule
(G-SHR-3). This module is the file's one reader (`parse_scheme`) and its
typed form (`Scheme`); it sits in the registry core because three packages
read the adopted scheme: the notice publishes its five items, a breach
incident counts the partners, and `registry.joint_use` shares with its
members (adoption, the scheme in force, bundles). `SHARED_ITEMS` names the
data items; `registry.joint_use.export_schema` enforces exactly these.
"""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kernel.errors import RegistryError

MEMBER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

# What the scheme publishes as its "data items" (G-SHR-1): one id per allow-listed
# item, with the wording of the notice page. The scheme file must list exactly these.
SHARED_ITEMS: dict[str, tuple[str, str]] = {
    "offence_datetime": ("犯行日時", "date and time of the offence"),
    "offence_category": ("犯行の種類", "offence category"),
    "damage": ("被害の内容", "damage"),
    "features": ("人物の特徴", "the person's features (clothes, build)"),
    "camera_images": ("防犯カメラ画像（本人以外の顔はマスク済み）",
                      "camera images, every other person's face masked"),
    "face_templates": ("顔識別データ（特徴量）", "face identification data (templates)"),
    "expiry": ("保存期限", "the date the entry is erased"),
}


class SchemeError(RegistryError):
    """The joint-use scheme file is missing, invalid, or not the one adopted here."""


RegionRule = Literal["same_region", "nationwide"]


def _raw_key(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not standard base64") from None
    if len(raw) != 32:
        raise ValueError("a public key has 32 bytes")
    return raw


class _SchemeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ManagingParty(_SchemeModel):
    """The party responsible for managing the shared data (APPI 27(5)(iii))."""

    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=300)
    representative: str = Field(min_length=1, max_length=200)
    contact: str = Field(min_length=1, max_length=200)


class Member(_SchemeModel):
    """One member store, with the public halves of its keys."""

    member_id: str = Field(pattern=MEMBER_ID_PATTERN)
    store_name: str = Field(min_length=1, max_length=200)
    region: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    signing_key: str = Field(description="Ed25519 public key, 32 bytes, base64")
    encryption_key: str = Field(description="X25519 public key, 32 bytes, base64")
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://[^\s]+$",
                            description="its registry API (https://host:port), where bundles "
                                        "are pushed; absent: bundles travel as files")

    @field_validator("signing_key", "encryption_key")
    @classmethod
    def _key(cls, value: str) -> str:
        _raw_key(value)
        return value

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(_raw_key(self.signing_key))

    def encryption_public(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(_raw_key(self.encryption_key))


class Scheme(_SchemeModel):
    """The published joint-use scheme: the five items of G-SHR-1, the members, the region rule."""

    format: Literal[1] = 1
    name: str = Field(min_length=1, max_length=200)
    joint_use: str = Field(min_length=1, max_length=2000,
                           description="the statement that joint use happens")
    data_items: tuple[str, ...] = Field(description="exactly the allow-listed items")
    purpose: str = Field(min_length=1, max_length=2000)
    managing_party: ManagingParty
    region_rule: RegionRule = Field(
        default="same_region",
        description="G-SHR-3: 'same_region' shares only between members of one region; "
                    "'nationwide' is a published decision that regional sharing does not suffice",
    )
    members: tuple[Member, ...] = Field(min_length=2)

    @field_validator("data_items")
    @classmethod
    def _items_are_the_allow_list(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if sorted(value) != sorted(SHARED_ITEMS) or len(set(value)) != len(value):
            raise ValueError(
                "data_items must list exactly what the system shares: "
                f"{', '.join(SHARED_ITEMS)} (G-SHR-2); the published scheme may not "
                "differ from the export schema"
            )
        return value

    @model_validator(mode="after")
    def _unique_members(self) -> Scheme:
        for attribute in ("member_id", "signing_key", "encryption_key"):
            values = [getattr(m, attribute) for m in self.members]
            if len(set(values)) != len(values):
                raise ValueError(f"two members share one {attribute}")
        return self

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.member_id == member_id), None)

    def member_ids(self) -> list[str]:
        return [m.member_id for m in self.members]

    def published_items(self) -> dict[str, Any]:
        """The five items of G-SHR-1, as the notice page shows them."""
        party = self.managing_party
        return {
            "joint_use": self.joint_use,
            "data_items": [{"id": i, "ja": SHARED_ITEMS[i][0], "en": SHARED_ITEMS[i][1]}
                           for i in self.data_items],
            "members": [{"store_name": m.store_name, "region": m.region} for m in self.members],
            "purpose": self.purpose,
            "managing_party": party.model_dump(),
            "region_rule": self.region_rule,
        }


def parse_scheme(data: bytes, path: Path) -> Scheme:
    try:
        raw = tomllib.loads(data.decode("utf-8")) if path.suffix == ".toml" else json.loads(data)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SchemeError(f"the scheme file {path} cannot be parsed: {exc}") from None
    try:
        return Scheme.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SchemeError(f"the scheme file {path} is invalid at {where}: {first['msg']}") from None

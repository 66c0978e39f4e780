"""What the public notice says, built only from the configuration in force.

Sources: `registry.notice` (operator, contacts, where face identification runs,
how long the recorder keeps footage), `registry.retention_years`, the written
criteria (`registry.criteria`), and the joint-use scheme an admin adopted last
(when `registry.joint_use_scheme` is set). Fixed texts state what the code
itself does (purposes in the words of G-NOT-1, security measures of G-SEC-3),
so they change only with the code. Nothing here reads an entry, an incident or
a user: the notice holds no personal data of visitors or staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.config import NoticeSettings
from registry.context import RegistryContext
from registry.i18n import EN, JA
from registry.scheme import Scheme, parse_scheme
from registry.watchlist.criteria import all_criteria

# The accredited personal-information protection body of the guideline (ch. 1 §4 (8),
# ch. 2 §5 記載例): its name and the contact the guideline itself gives.
ACCREDITED_BODY_JA = "特定非営利活動法人 全国万引犯罪防止機構"
ACCREDITED_BODY_EN = "National Shoplifting Prevention Organization (NPO), accredited " \
                     "personal information protection organization"
ACCREDITED_BODY_CONTACT = "03-5244-5612"

# G-NOT-1 in substance: specific, not just "for crime prevention".
PURPOSE_JA = ("過去に万引き等の犯罪または迷惑行為を行ったことが確実な者の情報を"
              "顔識別システムに登録し、来店者を撮影した防犯カメラ画像とリアルタイムに照合することで、当該人物の来店を確認・"
              "警戒し、犯罪を防止するため。")
PURPOSE_EN = ("Information on persons who have certainly committed shoplifting or other crimes "
              "or nuisance acts is registered in a face identification system and matched in "
              "real time against camera images of visitors, to confirm and watch for their "
              "visit and to prevent crime.")
NON_MATCH_JA = ("登録された人物と一致しない来店者の顔の特徴量は照合の直後に破棄し、保存しません。"
                "一致の通知は従業員が確認するまで判断に用いません。")
NON_MATCH_EN = ("Face features of visitors who match no registered person are discarded at "
                "once and never stored. A match is checked by a member of staff before anyone "
                "acts on it.")

# G-SEC-3: the measures the code enforces (each one is tested).
SECURITY_MEASURES: tuple[tuple[str, str], ...] = (
    ("登録データ・証拠画像・照合用データは保存時に暗号化しています（SQLCipher、AES-256-GCM）。",
     "Registered data, evidence images and matching data are encrypted at rest "
     "(SQLCipher, AES-256-GCM)."),
    ("登録は提案者とは別の責任者が確認して承認した時点で有効になります（二者承認）。",
     "A registration takes effect only when a responsible person other than the proposer "
     "has checked and approved it (two-person approval)."),
    ("システムは研修を受けた指名従業員だけが、役割（従業員・責任者・管理者・監査者）に応じた"
     "権限で利用します。",
     "Only named, trained staff use the system, each with the rights of their role "
     "(staff, manager, administrator, auditor)."),
    ("登録・承認・訂正・消去・提供などの操作はすべて改ざん検知可能な監査記録に残します。",
     "Every registration, approval, correction, erasure and provision is kept in a "
     "tamper-evident audit trail."),
    ("登録に使う画像では、本人以外の顔をマスクしてから保存します。",
     "In registration images every face other than the registered person's is masked "
     "before storage."),
    ("店舗の端末との通信は暗号化し（HTTPS）、端末ごとの認証を行います。",
     "Communication with the store's devices is encrypted (HTTPS) and each device "
     "is authenticated."),
)


@dataclass(frozen=True)
class CategoryCriteria:
    value: str
    label_ja: str
    label_en: str
    criteria: str
    version: str  # first 12 hex digits of the criteria version (SHA-256)


@dataclass(frozen=True)
class JointUse:
    """The five items of G-SHR-1 from the adopted scheme, plus its name and region rule."""

    name: str
    statement: str
    data_items: list[dict[str, str]]
    members: list[dict[str, str]]
    purpose: str
    managing_party: dict[str, Any]
    region_rule: str


@dataclass(frozen=True)
class NoticeContent:
    """Everything the notice page and the sign show."""

    operator: NoticeSettings
    retention_years: int
    categories: list[CategoryCriteria]
    joint_use: JointUse | None


def adopted_scheme(ctx: RegistryContext) -> Scheme | None:
    """The scheme in force for the notice: the last one adopted, if joint use is configured.

    Exports need the configured file to be exactly the adopted one
    (`scheme_in_force`), so describing the adopted content describes what is shared.
    """
    if ctx.policy.joint_use_scheme is None:
        return None
    adopted = ctx.repo.adopted_schemes()
    if not adopted:
        return None
    return parse_scheme(adopted[-1][2], Path("adopted.json"))


def _joint_use(scheme: Scheme) -> JointUse:
    items = scheme.published_items()
    return JointUse(name=scheme.name, statement=items["joint_use"],
                    data_items=items["data_items"], members=items["members"],
                    purpose=items["purpose"], managing_party=items["managing_party"],
                    region_rule=items["region_rule"])


def notice_content(ctx: RegistryContext) -> NoticeContent:
    """The notice for the registry `ctx` as configured and adopted right now."""
    categories = [
        CategoryCriteria(c.category.value, JA[f"cat_{c.category.value}"],
                         EN[f"cat_{c.category.value}"], c.text, c.short)
        for c in all_criteria(ctx.policy.criteria)
    ]
    scheme = adopted_scheme(ctx)
    return NoticeContent(
        operator=ctx.policy.notice,
        retention_years=ctx.policy.retention_years,
        categories=categories,
        joint_use=_joint_use(scheme) if scheme is not None else None,
    )

"""Drafts for a breach (G-BRE-2, G-BRE-4): the Commission's report, the notice, the publication.

Each draft has every item of the Commission's form (規則8: overview, data
items, number of persons, cause, secondary harm, response to the persons,
publication, prevention, other). What the registry knows is filled in, from
the counts taken when the incident was opened; every judgement is left as
`【要記入】` for a person to write, never guessed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from registry.breach import incident as breach
from registry.context import RegistryContext
from registry.domain import BreachIncident, Containment, Ground, User

TODO = "【要記入】"
ReportKind = Literal["preliminary", "final"]
DEFAULT_BODY = "全国万引犯罪防止機構（認定個人情報保護団体）"
DEFAULT_INQUIRY_DESK = "【要記入：窓口名・電話番号・受付時間】"


class Draft(StrEnum):
    """The drafts a responder can make for an incident (CLI `incident report`, tablet page)."""

    PRELIMINARY = "preliminary"
    FINAL = "final"
    NOTICE = "notice"
    PUBLICATION = "publication"
    ACCREDITED_BODY = "accredited-body"

    @property
    def to_commission(self) -> bool:
        """A report to the Commission (速報, 確報): drafting it is recorded against the incident."""
        return self in (Draft.PRELIMINARY, Draft.FINAL)

FORM_ITEMS: tuple[str, ...] = (
    "(1) 事態の概要",
    "(2) 漏えい等が発生し、又は発生したおそれがある個人データの項目",
    "(3) 漏えい等が発生し、又は発生したおそれがある個人データに係る本人の数",
    "(4) 原因",
    "(5) 二次被害又はそのおそれの有無及びその内容",
    "(6) 本人への対応の実施状況",
    "(7) 公表の実施状況",
    "(8) 再発防止のための措置",
    "(9) その他参考となる事項",
)

_STEP_LABELS = {
    Containment.DISABLE_DEVICES: "エッジ端末のトークンを無効化",
    Containment.ROTATE_KEY: "マスター鍵を更新し全データを再暗号化（旧鍵のバックアップを消去）",
    Containment.STOP_EDGE: "エッジ（顔照合）サービスを停止",
    Containment.PRESERVE_EVIDENCE: "監査証跡とログを封印して保存（現状保存）",
    Containment.REPORT_DRAFTED: "報告書を起案",
    Containment.REPORT_SUBMITTED: "報告書を提出",
}


def _grounds(incident: BreachIncident) -> str:
    if incident.triage is None:
        return f"{TODO}（規則第7条各号該当性は未判定）"
    marks = [("☒ " if g in incident.triage.grounds else "□ ") + g.label for g in Ground]
    marks.append(("□ " if incident.triage.reportable else "☒ ") + "非該当")
    return " ".join(marks) + f"\n判断理由（{incident.triage.by}）：{incident.triage.reason}"


def _timeline(incident: BreachIncident) -> str:
    lines = [f"- {incident.discovered_at:%Y-%m-%d %H:%M} UTC 発覚（{incident.discovered_by}、"
             f"{incident.how}）"]
    for action in incident.actions:
        if action.kind in (Containment.REPORT_DRAFTED, Containment.REPORT_SUBMITTED):
            continue
        lines.append(f"- {action.at:%Y-%m-%d %H:%M} UTC {_STEP_LABELS[action.kind]}"
                     f"（{action.actor}）")
    return "\n".join(lines)


def draft_report(incident: BreachIncident, kind: ReportKind, *, key_custody: str) -> str:
    """The report to the Personal Information Protection Commission (速報 or 確報)."""
    c, d = incident.counts, incident.deadlines
    title = "速報" if kind == "preliminary" else "確報"
    due = d.preliminary if kind == "preliminary" else d.final
    items = [
        f"事案番号：{incident.incident_id}（店舗 {incident.store_id}）\n"
        f"発生日：{TODO}\n発覚日：{d.discovered_on}\n"
        f"発生事案：{TODO}（漏えい／漏えいのおそれ／滅失／毀損 から選択）\n"
        f"発見者：{incident.discovered_by}\n発覚の経緯：{incident.how}\n"
        f"規則第7条各号該当性：{_grounds(incident)}\n"
        f"概要：{incident.summary or TODO}\n発覚の経緯・発覚後の事実経過（時系列）：\n"
        f"{_timeline(incident)}",
        f"媒体：☒ 電子媒体（暗号化された顔認証登録データベース）\n"
        f"種類：☒ 顧客情報（万引き等の被害に係る登録者）\n"
        f"項目：顔画像 {c.images} 件、顔特徴量 {c.templates} 件、事案記録（被害届番号・被害内容等、"
        f"犯罪の経歴を推知させうる要配慮個人情報）{c.entries} 件、氏名 {c.named_entries} 件、"
        f"身体的特徴の記述",
        f"登録者 {c.entries} 人（発覚時点の登録件数：状態別 "
        + "、".join(f"{k} {v}" for k, v in sorted(c.by_state.items()))
        + f"）\n共同利用先 {c.partners} 事業者が同一人物の写しを保有しうる",
        f"{TODO}",
        f"{TODO}",
        f"{TODO}（本人への通知案：`mamoru incident report --notice` で作成）",
        f"{TODO}（通知困難な場合の公表案：`mamoru incident report --publication` で作成）",
        "実施済みの措置：\n"
        + ("\n".join(f"- {_STEP_LABELS[a.kind]}（{a.at:%Y-%m-%d}）" for a in incident.actions
                     if a.kind not in (Containment.REPORT_DRAFTED,
                                       Containment.REPORT_SUBMITTED)) or "- なし")
        + f"\n今後の措置：{TODO}",
        f"暗号化の状況：登録データは AES-256（SQLCipher／AES-GCM）で暗号化、鍵の保管：{key_custody}"
        f"\n鍵の漏えいの有無：{TODO}\n外部機関による調査の実施状況（第3号の場合）：{TODO}\n"
        f"警察への届出：{TODO}",
    ]
    body = "\n\n".join(f"## {heading}\n{text}" for heading, text in zip(FORM_ITEMS, items,
                                                                         strict=True))
    return (f"# 個人情報の保護に関する法律第26条第1項に基づく報告（{title}）\n"
            f"報告期限：{due}（発覚日を1日目として数える）\n\n{body}\n")


def draft_notice(incident: BreachIncident, *, inquiry_desk: str) -> str:
    """The notice to each person (法26②): what happened, what data, what we do, whom to ask."""
    return (
        "# 個人データの漏えい等に関するお知らせ\n\n"
        f"当店が防犯目的で管理する顔認証登録データについて、{incident.discovered_at:%Y年%m月%d日}、"
        f"漏えい等のおそれがある事態が判明しました（{incident.summary or TODO}）。\n\n"
        "## 対象となる情報\n顔画像、顔特徴量、事案の記録（被害届の番号・被害内容等）。\n\n"
        f"## 原因\n{TODO}\n\n## 二次被害又はそのおそれ\n{TODO}\n\n"
        "## 当店の対応\n"
        + "\n".join(f"- {_STEP_LABELS[a.kind]}" for a in incident.actions
                    if a.kind not in (Containment.REPORT_DRAFTED, Containment.REPORT_SUBMITTED))
        + "\n\n## ご本人の権利\nご本人は、ご自身の情報の利用停止又は消去を請求できます"
        "（個人情報保護法第35条第5項）。\n\n"
        f"## お問い合わせ窓口\n{inquiry_desk}\n"
    )


def draft_publication(incident: BreachIncident, *, inquiry_desk: str) -> str:
    """Where persons cannot be reached: the public notice, naming no one (規則10, 通則GL)."""
    return (
        "# 個人データの漏えい等に関するお知らせ（公表）\n\n"
        f"当店が防犯目的で管理する顔認証登録データ（登録 {incident.counts.entries} 件）について、"
        f"{incident.discovered_at:%Y年%m月%d日}、漏えい等のおそれがある事態が判明しました。"
        "ご本人への個別の通知が困難なため、本公表をもって通知に代えます。\n\n"
        f"## 事案の概要\n{incident.summary or TODO}\n\n## 原因\n{TODO}\n\n"
        f"## 再発防止策\n{TODO}\n\n"
        "## ご自身の情報が対象か確認したい方へ\n下記窓口にお問い合わせください。本人確認のうえ"
        "回答し、ご希望により利用停止又は消去に応じます。\n\n"
        f"## お問い合わせ窓口\n{inquiry_desk}\n"
    )


def draft_accredited_body_report(incident: BreachIncident, *, body: str) -> str:
    """The report to the accredited personal-information protection body (G-BRE-4)."""
    c = incident.counts
    return (
        f"# {body} への漏えい等事案報告\n\n"
        f"事案番号：{incident.incident_id}（店舗 {incident.store_id}）\n"
        f"発覚日：{incident.deadlines.discovered_on}\n発見者：{incident.discovered_by}\n"
        f"規則第7条各号該当性：{_grounds(incident)}\n"
        f"対象：登録者 {c.entries} 人、顔画像 {c.images} 件、顔特徴量 {c.templates} 件、"
        f"共同利用先 {c.partners} 事業者\n"
        f"実施済みの措置：\n{_timeline(incident)}\n\n"
        f"個人情報保護委員会への報告：速報期限 {incident.deadlines.preliminary}、"
        f"確報期限 {incident.deadlines.final}\n警察への届出の検討：{TODO}\n"
    )


def make_draft(ctx: RegistryContext, incident_id: str, draft: Draft, *, actor: User,
               inquiry_desk: str = DEFAULT_INQUIRY_DESK, body: str = DEFAULT_BODY,
               submitted: bool = False, now: datetime) -> str:
    """One draft for a responder (manager, admin); 速報 and 確報 are recorded as drafted (or sent).

    The CLI and the tablet page both make drafts here, so both record the same steps.
    """
    breach.require_responder(actor)
    incident = breach.get_incident(ctx, incident_id)
    if draft.to_commission:
        kind: ReportKind = "preliminary" if draft is Draft.PRELIMINARY else "final"
        text = draft_report(incident, kind, key_custody=str(ctx.paths.custody.kind))
        breach.record_report(ctx, actor=actor, incident_id=incident.incident_id, report=kind,
                             submitted=submitted, now=now)
        return text
    if draft is Draft.NOTICE:
        return draft_notice(incident, inquiry_desk=inquiry_desk)
    if draft is Draft.PUBLICATION:
        return draft_publication(incident, inquiry_desk=inquiry_desk)
    return draft_accredited_body_report(incident, body=body)

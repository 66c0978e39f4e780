"""Every word the tablet pages and the public notice show, in Japanese (first) and English.

In the registry core, not in `registry.api`, because the notice (`registry.notice`)
names the offence categories in the same words as the pages.

Pages are Japanese by default; `?lang=en` switches a browser to English (the
choice is kept in a cookie). In Japanese mode, headings, labels and buttons
carry the English beneath in small type, so a colleague who reads no
Japanese can still work the tablet:

    t = Translator("ja")
    t("confirm")         # '確認'
    t.pair("confirm")    # 確認 with "Confirm" beneath, as Markup

Both dictionaries must hold the same keys (`missing_keys()` is empty; a test
checks it). Messages from the registry itself (why a decision was refused)
are English sentences from the domain layer and are shown as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Final, Literal

from markupsafe import Markup

Lang = Literal["ja", "en"]
LANGS: Final[tuple[Lang, ...]] = ("ja", "en")
DEFAULT_LANG: Final[Lang] = "ja"
LANG_COOKIE: Final = "mamoru_lang"

# The store's clock: Japan has one zone and no daylight saving time.
STORE_TZ: Final = timezone(timedelta(hours=9), "JST")

JA: Final[Mapping[str, str]] = {
    # layout
    "app_name": "まもる 顔識別システム",
    "skip_to_content": "本文へ移動",
    "nav_alerts": "アラート",
    "nav_propose": "登録の提案",
    "nav_approvals": "承認待ち",
    "nav_watchlist": "登録者一覧",
    "nav_audit": "監査",
    "logout": "ログアウト",
    "signed_in_as": "ログイン中",
    "switch_language": "English",
    "error": "エラー",
    "notice": "お知らせ",
    "privacy_note": (
        "このシステムは店舗の顔識別による防犯のためにのみ使用します。画面の撮影・"
        "持ち出しは禁止です。"
    ),
    # login
    "login_title": "ログイン",
    "username": "ユーザー名",
    "password": "パスワード",
    "login": "ログイン",
    "login_help": "氏名で登録された担当者のみ利用できます。",
    # roles
    "role_staff": "店舗スタッフ",
    "role_manager": "責任者",
    "role_admin": "管理者",
    "role_auditor": "監査担当",
    # alerts
    "alerts_title": "アラート",
    "alerts_help": "一致は疑いであり、断定ではありません。必ず本人かどうかを目で確認してください。",
    "precision": "この店舗の適合率",
    "precision_help": "確認済み ÷（確認済み＋人違い）",
    "precision_none": "まだ判定されたアラートはありません",
    "confirmed_count": "確認済み",
    "dismissed_count": "人違い",
    "open_count": "未判定",
    "no_alerts": "アラートはありません。",
    "box_stale": (
        "最新のウォッチリストを読み込めません。このボックスは復旧するまでアラートを出しません。"
        "ボックスと登録サービスを確認してください。"
    ),
    "box_silent": (
        "このボックスから状態の報告が届いていません。電源とネットワークを確認してください。"
    ),
    "box_last_report": "最終報告",
    "snapshot": "カメラの画像（他の人の顔は隠されています）",
    "registered_image": "登録時の証拠画像",
    "image_erased": "画像は消去されました",
    "score": "スコア",
    "threshold": "しきい値",
    "camera": "カメラ",
    "store": "店舗",
    "store_picker": "表示する店舗",
    "all_stores": "全店舗",
    "show_store": "表示",
    "device": "機器",
    "detected_at": "検知時刻",
    "status": "状態",
    "alert_open": "未判定",
    "alert_confirmed": "確認済み",
    "alert_dismissed": "人違い",
    "confirm": "確認",
    "confirm_help": "本人と確認しました",
    "dismiss": "人違い",
    "dismiss_reason": "人違いの理由",
    "dismiss_reason_placeholder": "例：顔が似ているが別人（身長・年齢が違う）",
    "reason": "理由",
    "decided_by": "判定者",
    "propose_from_alert": "この画像から登録を提案",
    "entry": "登録",
    "auto_refresh": "新しいアラートは自動で表示されます",
    # propose
    "propose_title": "登録の提案",
    "propose_help": (
        "客観的に確認された事案（被害届など）に限り提案できます。別の責任者が承認"
        "するまで照合には使われません。"
    ),
    "source_alert": "アラートの画像から",
    "source_upload": "写真をアップロード",
    "photos": "写真（複数可）",
    "incident": "事案",
    "category": "事案の種類",
    "occurred_at": "発生日時",
    "confirmation_kind": "確認方法",
    "confirmation_ref": "証拠の番号（被害届番号など）",
    "damage": "被害の内容",
    "description": "事案の説明",
    "features": "特徴（服装など）",
    "display_name": "呼び名（任意・店舗内のみ）",
    "check_quality": "画像の品質を確認",
    "quality_verdict": "品質チェックの結果",
    "quality_passed": "合格",
    "quality_failed": "不合格",
    "quality_none": "顔が見つかりません",
    "quality_needed": "提出の前に品質を確認してください。",
    "quality_ok_to_submit": "合格した画像で提案できます。",
    "face_px": "顔の大きさ(px)",
    "detector_score": "検出の確からしさ",
    "sharpness": "鮮明さ",
    "yaw": "左右の向き(°)",
    "pitch": "上下の向き(°)",
    "bystanders_masked": "写り込んだ他の人の顔は保存前に隠されます。",
    "submit_proposal": "提案を提出",
    "proposal_submitted": "提案を提出しました。別の責任者の承認を待っています。",
    # approvals
    "approvals_title": "承認待ちの提案",
    "approvals_help": "提案者とは別の責任者が、必要性と正確性を確認して承認します（二者承認）。",
    "no_pending": "承認待ちの提案はありません。",
    "proposer": "提案者",
    "proposed_at": "提案日時",
    "evidence": "証拠画像",
    "templates": "照合用データ",
    "approve": "承認",
    "reject": "却下",
    "approve_reason": "承認の理由",
    "reject_reason": "却下の理由",
    "own_proposal": "ご自身の提案です。別の責任者が承認します。",
    "manager_only": "承認・却下は責任者のみができます。",
    "approved_notice": "承認しました。登録が有効になりました。",
    "rejected_notice": "却下しました。画像と照合用データは消去されました。",
    # watchlist
    "watchlist_title": "登録者一覧",
    "watchlist_help": (
        "登録は最後の事案から一定期間で自動的に消去されます。再犯があれば期間が延"
        "びます。"
    ),
    "show_all": "終了した登録も表示",
    "show_current": "有効・提案中のみ表示",
    "no_entries": "登録はありません。",
    "state": "状態",
    "expires_at": "消去予定日",
    "incidents": "事案",
    "state_proposed": "提案中",
    "state_active": "有効",
    "state_rejected": "却下",
    "state_withdrawn": "取り下げ",
    "state_expired": "期限切れ",
    "state_erased": "消去済み",
    "correct": "訂正",
    "correct_reason": "訂正の理由",
    "withdraw": "取り下げ",
    "withdraw_reason": "取り下げの理由",
    "withdraw_help": "誤った登録を取り下げます。画像と照合用データは消去されます。",
    "add_reoffence": "再犯を追加",
    "closed_reason": "終了の理由",
    "corrected_notice": "訂正しました。",
    "withdrawn_notice": "取り下げました。画像と照合用データは消去されました。",
    "reoffence_notice": "再犯を追加しました。消去予定日が更新されました。",
    "confirmed_notice": "確認として記録しました。",
    "dismissed_notice": "人違いとして記録しました。",
    # breach incidents (G-BRE-1..4)
    "nav_incidents": "漏えい等事案",
    "incidents_title": "漏えい等事案の対応",
    "incidents_help": ("発覚から報告までの記録です。速報は発覚日を1日目として3〜5日以内、確報は30日"
                       "（不正の目的によるものは60日）以内。期限まで1日以内または過ぎたものを警告します。"
                       "該当性の判断は人が行い、理由を記録します。"),
    "no_incidents": "記録された事案はありません。",
    "incident_open_title": "事案を記録する",
    "discovered_at": "発覚日時",
    "discovered_by": "発見者",
    "how_discovered": "発覚の経緯",
    "incident_summary": "概要（わかっていること）",
    "open_incident": "事案を記録",
    "incident_opened_notice": "事案を記録しました。封じ込めと該当性の判断を進めてください。",
    "istate_untriaged": "該当性 未判断",
    "istate_not-reportable": "報告対象外",
    "istate_reporting": "報告対象（未提出あり）",
    "istate_reported": "報告済み",
    "deadlines": "報告期限",
    "deadline_preliminary": "速報",
    "deadline_final": "確報",
    "days_left": "残り日数",
    "days_overdue": "日超過",
    "submitted": "提出済み",
    "mark_submitted": "提出済みとして記録",
    "report_submitted_notice": "提出を記録しました。",
    "held_at_discovery": "発覚時の保有データ",
    "entries_held": "登録者",
    "images_held": "顔画像",
    "templates_held": "顔特徴量",
    "partners_held": "共同利用先",
    "steps_recorded": "記録された対応",
    "containment_title": "封じ込め",
    "disable_devices": "エッジ端末のトークンを無効化",
    "disable_devices_help": "すべてのボックスが登録サービスに接続できなくなります（管理者のみ）。",
    "devices_disabled_notice": "エッジ端末のトークンを無効化しました。",
    "admin_only": "管理者のみが実行できます。",
    "preserve_evidence": "現状保存（監査証跡を封印してダウンロード）",
    "preserve_evidence_help": ("監査証跡の封印コピーをダウンロードします。"
                               "SHA-256 は事案と監査証跡に記録されます。"
                               "事案ファイルとともに端末外で保管してください。"
                               "ログも含める場合はコマンドで実行します。"),
    "cli_only_title": "コマンドでのみ実行する対応",
    "cli_only_help": "鍵の更新とエッジの停止は登録サーバーのコマンドで実行します：",
    "sealed_copies": "封印コピー",
    "triage_title": "該当性の判断（規則第7条）",
    "triage_help": "該当する号をすべて選びます。いずれにも該当しない場合は、その理由を記録します。",
    "rule7_sensitive": "第1号 要配慮個人情報（犯罪の経歴を推知させうる記録）",
    "rule7_property": "第2号 財産的被害が生じるおそれ",
    "rule7_malicious": "第3号 不正の目的（盗難・攻撃・内部不正）",
    "rule7_over-1000": "第4号 本人の数が1,000人を超える",
    "triage_reason": "判断の理由",
    "record_triage": "判断を記録",
    "triaged_by": "判断者",
    "triage_recorded_notice": ("判断を記録しました。報告対象の場合、本人に利用停止等の"
                               "請求権があることを記録しました。"),
    "drafts_title": "報告書等の案（テキスト）",
    "draft_preliminary": "委員会への報告（速報）",
    "draft_final": "委員会への報告（確報）",
    "draft_notice": "本人への通知",
    "draft_publication": "公表文",
    "draft_accredited-body": "認定個人情報保護団体への報告",
    "download_draft": "ダウンロード",
    "inquiry_desk": "お問い合わせ窓口（通知・公表に記載）",
    "accredited_body": "認定個人情報保護団体の名称",
    "stop_use_right": "利用停止等の請求権あり（漏えい等事案）",
    "stop_use_title": "漏えい等による利用停止等の請求権",
    "stop_use_help": ("報告対象の漏えい等により、本人は利用停止・消去を請求できます"
                      "（法第35条第5項）。請求があれば窓口で受け付けてください。"),
    "no_stop_use": "漏えい等による利用停止等の請求権が生じた登録はありません。",
    # audit
    "audit_title": "監査",
    "audit_help": "件数と改ざん検知の状態のみを表示します。顔画像や氏名は表示しません。",
    "chain_status": "監査記録の連鎖",
    "chain_ok": "正常（改ざんなし）",
    "chain_broken": "異常",
    "records": "記録数",
    "period": "期間",
    "counts": "件数",
    "action": "操作",
    "count": "件数",
    "registrations_proposed": "登録の提案",
    "approvals": "承認",
    "rejections": "却下",
    "corrections": "訂正",
    "reoffences": "再犯の追加",
    "withdrawals": "取り下げ",
    "expiries": "期限切れ消去",
    "erasures": "消去",
    "erasures_reapplied_after_restore": "復元後の再消去",
    "alerts_received": "受信したアラート",
    "alert_outcomes": "アラートの判定",
    # request desk and review (G-DSR-1..4, G-REV-1)
    "nav_requests": "窓口・見直し",
    "requests_title": "開示等の請求・苦情窓口",
    "requests_help": ("本人確認の上で受け付けた請求と苦情です。連絡先は表示しません。"
                      "期限を過ぎたものは赤で示します。"),
    "no_requests": "請求・苦情はありません。",
    "request_id": "請求番号",
    "request_kind": "種類",
    "request_member": "転送先・転送元",
    "due_on": "回答期限",
    "overdue": "期限超過",
    "reviews_title": "見直し期限を過ぎた登録",
    "reviews_help": ("承認または前回の見直しから一定期間が過ぎた登録です。"
                     "提案者以外の管理者が継続（理由を記録）か取り下げを決めます。"),
    "no_reviews_due": "見直し期限を過ぎた登録はありません。",
    "review_keep": "継続",
    "review_kept_notice": "見直しの結果（継続）を記録しました。",
    "request_answered_notice": "回答を記録しました。",
    "request_open": "請求・苦情を受け付ける",
    "request_open_help": ("本人確認書類を確認してから受け付けます（書類の写しは保存しません）。"
                          "連絡先は回答のためだけに保存し、完了後一定期間で消去します。"),
    "identity_method": "本人確認の方法",
    "by_agent": "代理人による請求",
    "requester_contact": "請求者の連絡先",
    "request_summary": "請求・苦情の内容",
    "requester_photo": "請求者の写真",
    "request_search": "写真で照会",
    "photo_not_kept": "写真は照会にのみ使い、保存しません。",
    "request_subject": "該当する登録",
    "request_answer": "回答する",
    "request_refuse": "不開示・拒否",
    "refusal_ground": "法令上の根拠",
    "harm_justification": "具体的な支障（迷惑行為のみの登録の場合は必須）",
    "harm_justification_help": ("迷惑行為のみによる登録は、それだけでは不開示の理由になりません"
                                "（G-DSR-1）。この件で開示が生じさせる具体的な支障を記入してください。"),
    "disclosure_document": "開示書面",
    "disclosure_custody": ("印刷した書面と画像は本システムの管理外になります。"
                           "請求者に手渡し、控えを残さないでください。"),
    "back_to_requests": "窓口へ戻る",
    "request_opened_notice": "請求を受け付けました。",
    "request_found_notice": ("照会の結果、該当する登録がありました"
                             "（記録済み・写真は保存していません）。"),
    "request_not_found_notice": ("照会の結果、該当する登録はありません"
                                 "（記録済み・写真は保存していません）。"),
    "request_no_face_notice": ("写真に顔が見つかりませんでした"
                               "（記録済み・写真は保存していません）。"),
    "request_refused_notice": "拒否を記録しました。理由を遅滞なく請求者に通知してください。",
    "kind_disclosure": "開示",
    "kind_correction": "訂正",
    "kind_stop-use": "利用停止",
    "kind_erasure": "消去",
    "kind_complaint": "苦情",
    "kind_objection": "反論",
    "idm_drivers_licence": "運転免許証",
    "idm_passport": "旅券",
    "idm_my_number_card": "マイナンバーカード",
    "idm_residence_card": "在留カード",
    "idm_health_insurance_card": "健康保険証",
    "idm_other_official": "その他の公的書類",
    "ground_appi_33_2_i": ("本人又は第三者の生命・身体・財産その他の権利利益を害するおそれ"
                           "（33条2項1号）"),
    "ground_appi_33_2_ii": "業務の適正な実施に著しい支障（33条2項2号）",
    "ground_appi_33_2_iii": "他の法令に違反（33条2項3号）",
    "ground_appi_34_facts_correct": "内容は事実である（34条）",
    "ground_appi_35_use_lawful": "利用は適法である（35条）",
    # enumerations
    "criteria_title": "登録基準",
    "criteria_help": (
        "事案の種類ごとの登録基準です。提案は、この基準（版）で判断したものとして記録されます。"
    ),
    "criteria_version": "基準版",
    "cat_theft": "万引き",
    "cat_voyeurism": "盗撮",
    "cat_property_damage": "器物損壊",
    "cat_assault": "暴行・傷害",
    "cat_public_indecency": "公然わいせつ",
    "cat_nuisance": "迷惑行為",
    "conf_police_report": "被害届",
    "conf_other": "その他の客観的記録",
    # errors
    "err_session": "ログインしてください。",
    "err_forbidden": "この操作の権限がありません。",
    "err_csrf": "フォームの有効期限が切れました。もう一度お試しください。",
    "err_not_found": "見つかりません。",
    "err_internal": "システムエラーが発生しました。管理者に連絡してください。",
    "err_bad_input": "入力内容を確認してください。",
    "back_home": "最初の画面へ",
    "no_pages": "この役割で店舗の端末から開ける画面はありません。監査記録は本部で閲覧します。",
    "logged_out_notice": "ログアウトしました。",
    "why_not": "理由",
}

EN: Final[Mapping[str, str]] = {
    "app_name": "mamoru face identification",
    "skip_to_content": "Skip to content",
    "nav_alerts": "Alerts",
    "nav_propose": "Propose",
    "nav_approvals": "Approvals",
    "nav_watchlist": "Watchlist",
    "nav_audit": "Audit",
    "logout": "Log out",
    "signed_in_as": "Signed in as",
    "switch_language": "日本語",
    "error": "Error",
    "notice": "Notice",
    "privacy_note": (
        "This system is used only for crime prevention by face identification in "
        "this store. Do not photograph or copy the screen."
    ),
    "login_title": "Log in",
    "username": "User name",
    "password": "Password",
    "login": "Log in",
    "login_help": "Only named, registered staff may use this system.",
    "role_staff": "Staff",
    "role_manager": "Manager",
    "role_admin": "Administrator",
    "role_auditor": "Auditor",
    "alerts_title": "Alerts",
    "alerts_help": (
        "A match is a lead, not a verdict. Always check with your own eyes "
        "whether it is the person."
    ),
    "precision": "Precision in this store",
    "precision_help": "confirmed ÷ (confirmed + wrong person)",
    "precision_none": "No alert has been decided yet",
    "confirmed_count": "Confirmed",
    "dismissed_count": "Wrong person",
    "open_count": "Open",
    "no_alerts": "No alerts.",
    "box_stale": (
        "cannot load the latest watchlist; this box raises no alerts until it can. "
        "Check the box and the registry."
    ),
    "box_silent": "this box has stopped reporting. Check its power and network.",
    "box_last_report": "last report",
    "snapshot": "Camera image (other faces masked)",
    "registered_image": "Registered evidence image",
    "image_erased": "The image was erased",
    "score": "Score",
    "threshold": "Threshold",
    "camera": "Camera",
    "store": "Store",
    "store_picker": "Store shown",
    "all_stores": "All stores",
    "show_store": "Show",
    "device": "Device",
    "detected_at": "Detected at",
    "status": "Status",
    "alert_open": "Open",
    "alert_confirmed": "Confirmed",
    "alert_dismissed": "Wrong person",
    "confirm": "Confirm",
    "confirm_help": "I checked: it is the person",
    "dismiss": "Wrong person",
    "dismiss_reason": "Why it is the wrong person",
    "dismiss_reason_placeholder": "e.g. similar face but a different person (height, age)",
    "reason": "Reason",
    "decided_by": "Decided by",
    "propose_from_alert": "Propose a registration from this image",
    "entry": "Entry",
    "auto_refresh": "New alerts appear automatically",
    "propose_title": "Propose a registration",
    "propose_help": (
        "Only objectively confirmed incidents (e.g. a police damage report). "
        "Nothing is matched until another manager approves."
    ),
    "source_alert": "From the alert image",
    "source_upload": "Upload photos",
    "photos": "Photos (one or more)",
    "incident": "Incident",
    "category": "Offence category",
    "occurred_at": "Occurred at",
    "confirmation_kind": "Confirmed by",
    "confirmation_ref": "Evidence reference (e.g. damage report no.)",
    "damage": "Damage",
    "description": "Description",
    "features": "Features (clothing etc.)",
    "display_name": "Name used in the store (optional)",
    "check_quality": "Check image quality",
    "quality_verdict": "Quality gate verdict",
    "quality_passed": "Passed",
    "quality_failed": "Failed",
    "quality_none": "No face found",
    "quality_needed": "Check the image quality before submitting.",
    "quality_ok_to_submit": "You can propose with the photos that passed.",
    "face_px": "Face size (px)",
    "detector_score": "Detector confidence",
    "sharpness": "Sharpness",
    "yaw": "Yaw (°)",
    "pitch": "Pitch (°)",
    "bystanders_masked": "Other people's faces in the photos are masked before anything is stored.",
    "submit_proposal": "Submit proposal",
    "proposal_submitted": "Proposal submitted. It waits for another manager's approval.",
    "approvals_title": "Pending approvals",
    "approvals_help": (
        "A responsible person other than the proposer checks necessity and "
        "accuracy and approves (two-person approval)."
    ),
    "no_pending": "No proposals are waiting.",
    "proposer": "Proposer",
    "proposed_at": "Proposed at",
    "evidence": "Evidence",
    "templates": "Templates",
    "approve": "Approve",
    "reject": "Reject",
    "approve_reason": "Reason for approval",
    "reject_reason": "Reason for rejection",
    "own_proposal": "Your own proposal: another manager must approve it.",
    "manager_only": "Only a manager can approve or reject.",
    "approved_notice": "Approved. The entry is now active.",
    "rejected_notice": "Rejected. Its images and templates were erased.",
    "watchlist_title": "Watchlist",
    "watchlist_help": (
        "Entries are erased a fixed period after the latest incident; "
        "a re-offence extends it."
    ),
    "show_all": "Show closed entries too",
    "show_current": "Show active and proposed only",
    "no_entries": "No entries.",
    "state": "State",
    "expires_at": "Erased on",
    "incidents": "Incidents",
    "state_proposed": "Proposed",
    "state_active": "Active",
    "state_rejected": "Rejected",
    "state_withdrawn": "Withdrawn",
    "state_expired": "Expired",
    "state_erased": "Erased",
    "correct": "Correct",
    "correct_reason": "Reason for the correction",
    "withdraw": "Withdraw",
    "withdraw_reason": "Reason for withdrawal",
    "withdraw_help": "Take back a wrong entry. Its images and templates are erased.",
    "add_reoffence": "Add re-offence",
    "closed_reason": "Why it was closed",
    "corrected_notice": "Corrected.",
    "withdrawn_notice": "Withdrawn. Its images and templates were erased.",
    "reoffence_notice": "Re-offence added. The erasure date was updated.",
    "confirmed_notice": "Recorded as confirmed.",
    "dismissed_notice": "Recorded as the wrong person.",
    "nav_incidents": "Breach incidents",
    "incidents_title": "Breach response",
    "incidents_help": ("From discovery to the reports. The preliminary report (速報) is due in 3-5 "
                       "days counting the day of discovery as day 1, the final one (確報) in 30 "
                       "days (60 when malicious). Deadlines within a day or past are flagged. "
                       "People decide whether a leak is reportable, and record why."),
    "no_incidents": "No incidents recorded.",
    "incident_open_title": "Record an incident",
    "discovered_at": "Discovered at",
    "discovered_by": "Discovered by",
    "how_discovered": "How it was discovered",
    "incident_summary": "Summary (what is known)",
    "open_incident": "Record the incident",
    "incident_opened_notice": "Incident recorded. Contain it and record the rule-7 test.",
    "istate_untriaged": "Not triaged yet",
    "istate_not-reportable": "Not reportable",
    "istate_reporting": "Reportable (reports due)",
    "istate_reported": "Reported",
    "deadlines": "Deadlines",
    "deadline_preliminary": "Preliminary report",
    "deadline_final": "Final report",
    "days_left": "Days left",
    "days_overdue": "day(s) overdue",
    "submitted": "Submitted",
    "mark_submitted": "Record as submitted",
    "report_submitted_notice": "The submission was recorded.",
    "held_at_discovery": "Held at discovery",
    "entries_held": "Persons",
    "images_held": "Face images",
    "templates_held": "Face templates",
    "partners_held": "Joint-use partners",
    "steps_recorded": "Steps recorded",
    "containment_title": "Containment",
    "disable_devices": "Disable the edge boxes' tokens",
    "disable_devices_help": "No box can talk to the registry any more (admins only).",
    "devices_disabled_notice": "The edge boxes' tokens were disabled.",
    "admin_only": "Only an administrator can do this.",
    "preserve_evidence": "Preserve evidence (download the sealed audit trail)",
    "preserve_evidence_help": ("Downloads a sealed copy of the audit trail; its SHA-256 is "
                               "recorded in the incident and the audit trail. Keep it with the "
                               "incident file, off the box. Use the command to include logs."),
    "cli_only_title": "Steps run from the command line only",
    "cli_only_help": "Rotating the key and stopping the edge are run on the registry server:",
    "sealed_copies": "Sealed copies",
    "triage_title": "Rule-7 test",
    "triage_help": "Tick every ground that applies. If none does, record why.",
    "rule7_sensitive": "(1) Sensitive data (records that may show a criminal past)",
    "rule7_property": "(2) Risk of financial harm",
    "rule7_malicious": "(3) Malicious purpose (theft, attack, insider)",
    "rule7_over-1000": "(4) More than 1,000 persons",
    "triage_reason": "Why",
    "record_triage": "Record the test",
    "triaged_by": "Decided by",
    "triage_recorded_notice": ("The test was recorded. If reportable, the persons' stop-use "
                               "right was recorded."),
    "drafts_title": "Drafts (text)",
    "draft_preliminary": "Report to the Commission (preliminary)",
    "draft_final": "Report to the Commission (final)",
    "draft_notice": "Notice to each person",
    "draft_publication": "Public notice",
    "draft_accredited-body": "Report to the accredited body",
    "download_draft": "Download",
    "inquiry_desk": "Inquiry desk (named in notices)",
    "accredited_body": "Accredited body's name",
    "stop_use_right": "Stop-use right (after a reportable leak)",
    "stop_use_title": "Stop-use rights after a reportable leak",
    "stop_use_help": ("After a reportable leak the person may ask for use to stop or for erasure "
                      "(APPI 35(5)). Accept such a request at the desk."),
    "no_stop_use": "No entry carries a stop-use right from a leak.",
    "audit_title": "Audit",
    "audit_help": "Counts and tamper-evidence status only. No face images or names are shown.",
    "chain_status": "Audit chain",
    "chain_ok": "Intact (no tampering)",
    "chain_broken": "Broken",
    "records": "Records",
    "period": "Period",
    "counts": "Counts",
    "action": "Action",
    "count": "Count",
    "registrations_proposed": "Registrations proposed",
    "approvals": "Approvals",
    "rejections": "Rejections",
    "corrections": "Corrections",
    "reoffences": "Re-offences added",
    "withdrawals": "Withdrawals",
    "expiries": "Expiries",
    "erasures": "Erasures",
    "erasures_reapplied_after_restore": "Erasures re-applied after restore",
    "alerts_received": "Alerts received",
    "alert_outcomes": "Alert outcomes",
    "criteria_title": "Registration criteria",
    "criteria_help": (
        "The written criteria per offence category. A proposal is recorded as judged under "
        "this version of its category's criteria."
    ),
    "criteria_version": "criteria version",
    "cat_theft": "Theft (shoplifting)",
    "cat_voyeurism": "Voyeurism",
    "cat_property_damage": "Property damage",
    "cat_assault": "Assault / injury",
    "cat_public_indecency": "Public indecency",
    "cat_nuisance": "Nuisance act",
    "conf_police_report": "Police damage report",
    "conf_other": "Other objective record",
    "err_session": "Please log in.",
    "err_forbidden": "You are not allowed to do this.",
    "err_csrf": "The form expired. Please try again.",
    "err_not_found": "Not found.",
    "err_internal": "A system error occurred. Please tell the administrator.",
    "err_bad_input": "Please check what you entered.",
    "back_home": "Back to the start",
    "no_pages": ("There is no tablet page for this role in a store. "
                 "The audit trail is read at the chain office."),
    "logged_out_notice": "You have logged out.",
    "why_not": "Why",
    "nav_requests": "Requests & reviews",
    "requests_title": "Requests and complaints desk",
    "requests_help": ("Requests and complaints accepted after an identity check. Contact "
                      "details are not shown. Overdue ones are marked in red."),
    "no_requests": "No requests or complaints.",
    "request_id": "Request",
    "request_kind": "Kind",
    "request_member": "Forwarded to / from",
    "due_on": "Due",
    "overdue": "Overdue",
    "reviews_title": "Entries past their review date",
    "reviews_help": ("Entries approved or last reviewed longer ago than the review period. A "
                     "manager other than the proposer keeps them (with the reason) or "
                     "withdraws them."),
    "no_reviews_due": "No entries are past their review date.",
    "review_keep": "Keep",
    "review_kept_notice": "The review (keep) was recorded.",
    "request_answered_notice": "The answer was recorded.",
    "request_open": "Accept a request or complaint",
    "request_open_help": ("Check an identity document first (no copy is kept). The contact is "
                          "kept only to answer, and wiped a fixed period after closing."),
    "identity_method": "Identity checked with",
    "by_agent": "Asked by an agent",
    "requester_contact": "Requester's contact",
    "request_summary": "What is asked or complained about",
    "requester_photo": "Requester's photo",
    "request_search": "Search with the photo",
    "photo_not_kept": "The photo is used for this search only and never kept.",
    "request_subject": "Matching entry",
    "request_answer": "Answer",
    "request_refuse": "Refuse",
    "refusal_ground": "Legal ground",
    "harm_justification": "Concrete harm (required for nuisance-only entries)",
    "harm_justification_help": ("An entry held for nuisance acts only is no reason to refuse by "
                                "itself (G-DSR-1): state the concrete harm disclosure would "
                                "cause in this case."),
    "disclosure_document": "Disclosure document",
    "disclosure_custody": ("Once printed, the document and images are outside mamoru's custody: "
                           "hand them to the requester and keep no copy."),
    "back_to_requests": "Back to the desk",
    "request_opened_notice": "The request was accepted.",
    "request_found_notice": "Search done: a matching entry was found (recorded; photo not kept).",
    "request_not_found_notice": "Search done: no matching entry (recorded; photo not kept).",
    "request_no_face_notice": "No face was found in the photo (recorded; photo not kept).",
    "request_refused_notice": ("The refusal was recorded. Tell the requester the reason "
                               "without delay."),
    "kind_disclosure": "Disclosure",
    "kind_correction": "Correction",
    "kind_stop-use": "Stop use",
    "kind_erasure": "Erasure",
    "kind_complaint": "Complaint",
    "kind_objection": "Objection",
    "idm_drivers_licence": "Driver's licence",
    "idm_passport": "Passport",
    "idm_my_number_card": "My Number card",
    "idm_residence_card": "Residence card",
    "idm_health_insurance_card": "Health insurance card",
    "idm_other_official": "Other official document",
    "ground_appi_33_2_i": "Harm to the life, body, property or rights of anyone (APPI 33(2)(i))",
    "ground_appi_33_2_ii": "Serious hindrance to the business (APPI 33(2)(ii))",
    "ground_appi_33_2_iii": "Would violate another law (APPI 33(2)(iii))",
    "ground_appi_34_facts_correct": "The recorded facts are correct (APPI 34)",
    "ground_appi_35_use_lawful": "The use is lawful (APPI 35)",
}

MESSAGES: Final[Mapping[Lang, Mapping[str, str]]] = {"ja": JA, "en": EN}


def missing_keys() -> dict[Lang, set[str]]:
    """Keys one language has and another lacks; empty when the dictionaries agree."""
    every = set().union(*(m.keys() for m in MESSAGES.values()))
    return {lang: every - set(m) for lang, m in MESSAGES.items() if every - set(m)}


def pick_lang(query: str | None, cookie: str | None) -> Lang:
    """`?lang=` first, then the cookie, then Japanese."""
    for candidate in (query, cookie):
        if candidate in LANGS:
            return candidate
    return DEFAULT_LANG


class Translator:
    """Looks words up in one language; unknown keys fail loudly in tests, not silently."""

    def __init__(self, lang: Lang) -> None:
        if lang not in MESSAGES:
            raise ValueError(f"no translations for {lang!r}")
        self.lang = lang
        self._messages = MESSAGES[lang]

    def __call__(self, key: str) -> str:
        return self._messages[key]

    def pair(self, key: str) -> Markup:
        """Japanese with the English beneath (Japanese mode); English alone otherwise."""
        if self.lang == "en":
            return Markup('<span class="en-only">{}</span>').format(EN[key])
        return Markup('<span class="ja">{}</span><span class="en" lang="en">{}</span>').format(
            JA[key], EN[key]
        )

    def enum(self, prefix: str, value: str) -> str:
        """A role, state or category value in words, e.g. `enum("state", "active")`."""
        return self._messages.get(f"{prefix}_{value}", value)

    def when(self, moment: datetime | None) -> str:
        """A registry time (UTC) as the store's local time, e.g. '2026-01-15 19:00 JST'."""
        if moment is None:
            return "—"
        return moment.astimezone(STORE_TZ).strftime("%Y-%m-%d %H:%M JST")

    def day(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(STORE_TZ).strftime("%Y-%m-%d")


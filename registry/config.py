"""Registry settings: one section of the validated configuration tree."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# G-REG-2: the written internal criteria, one text per offence category (G-REG-5). Each
# proposal records the SHA-256 of the text it was judged under (registry/watchlist/criteria.py).
_OBJECTIVE = ("疑い・未遂・目撃証言のみでは登録しません。提案者以外の責任者が必要性と正確性を"
              "確認して承認した時点で登録が有効になります。")
DEFAULT_CRITERIA: dict[str, str] = {
    "theft": "店内で商品を窃取した（万引き）ことが、警察への被害届の提出（受理番号）により、"
             "または防犯カメラ映像と本人の認める書面により客観的に確認された場合に限り登録します。"
             + _OBJECTIVE,
    "voyeurism": "店内で盗撮を行ったことが、警察への届出（受理番号）または警察による検挙の"
                 "記録により客観的に確認された場合に限り登録します。" + _OBJECTIVE,
    "property_damage": "店舗の設備・商品を故意に損壊したことが、警察への被害届の提出（受理番号）"
                       "により客観的に確認された場合に限り登録します。" + _OBJECTIVE,
    "assault": "従業員または来店客に対する暴行・傷害が、警察への被害届の提出（受理番号）または"
               "警察による検挙の記録により客観的に確認された場合に限り登録します。" + _OBJECTIVE,
    "public_indecency": "店内での公然わいせつ行為が、警察への届出（受理番号）または警察による検挙の"
                        "記録により客観的に確認された場合に限り登録します。" + _OBJECTIVE,
    "nuisance": "従業員または来店客の安全を害する迷惑行為（暴言・威迫・業務妨害等）が繰り返され、"
                "各回の日時と内容の記録および警察への相談記録により客観的に確認された場合に限り"
                "登録します。一度の口論や苦情の申出だけでは登録しません。" + _OBJECTIVE,
}


class RegistrationCriteria(BaseModel):
    """G-REG-2: the written registration criteria per offence category (G-REG-5).

    Shown on the proposal page and in the public notice; every proposal records
    the SHA-256 of the text of its category, so it is known which version it
    was judged under.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    theft: str = Field(default=DEFAULT_CRITERIA["theft"], min_length=20, max_length=2000)
    voyeurism: str = Field(default=DEFAULT_CRITERIA["voyeurism"], min_length=20, max_length=2000)
    property_damage: str = Field(default=DEFAULT_CRITERIA["property_damage"], min_length=20,
                                 max_length=2000)
    assault: str = Field(default=DEFAULT_CRITERIA["assault"], min_length=20, max_length=2000)
    public_indecency: str = Field(default=DEFAULT_CRITERIA["public_indecency"], min_length=20,
                                  max_length=2000)
    nuisance: str = Field(default=DEFAULT_CRITERIA["nuisance"], min_length=20, max_length=2000)

    def text_for(self, category: str) -> str:
        """The criteria text of one offence category (its `OffenceCategory` value)."""
        text = getattr(self, category, None)
        if not isinstance(text, str) or category not in type(self).model_fields:
            raise KeyError(category)
        return text


_UNSET = "（設定してください）"


class NoticeSettings(BaseModel):
    """What the public notice (G-NOT-1..4) states that the system cannot know by itself.

    Everything else on the notice (purposes, retention of entries, criteria,
    security measures, joint use) comes from the rest of the configuration and
    the adopted scheme. Texts are Japanese, as the store writes them; the
    notice shows them on the English half too. No member of staff is named.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    operator_name: str = Field(default=f"事業者名{_UNSET}", min_length=1, max_length=200,
                               description="the business that operates the cameras (G-NOT-2)")
    operator_address: str = Field(default=f"所在地{_UNSET}", min_length=1, max_length=300)
    operator_contact: str = Field(default=f"電話番号{_UNSET}", min_length=1, max_length=200,
                                  description="the store's contact point (phone, hours)")
    face_identification_areas: tuple[str, ...] = Field(
        default=("店舗出入口",), min_length=1, max_length=20,
        description="where cameras feed face identification (G-NOT-2: where it is used)",
    )
    recorder_retention_days: int = Field(
        default=30, ge=1, le=365,
        description="G-NOT-3/G-RET-1: the camera recorder overwrites its footage after this "
                    "many days. mamoru does not hold that footage; the notice states it",
    )
    request_contact: str = Field(
        default=f"開示等の請求の窓口{_UNSET}", min_length=1, max_length=300,
        description="where a person asks for disclosure, correction or erasure (G-DSR-1/2)",
    )
    complaint_contact: str = Field(default=f"苦情・相談の窓口{_UNSET}", min_length=1,
                                   max_length=300, description="the complaint desk (G-DSR-3)")
    public_url: str | None = Field(
        default=None, max_length=500, pattern=r"^https?://[^\s]+$",
        description="where visitors read the notice; the QR code on the printed sign points "
                    "here (e.g. https://store.example/notice)",
    )


class PostgresSettings(BaseModel):
    """Where a chain's registry database is and how the API logs in (issue 15).

    Only the *path* of the application role's password file is a setting: the
    password itself never appears in the configuration, the environment, a
    URL, a log line or an exception. TLS is not optional: every connection
    uses `sslmode=verify-full` against `ca_file`, so a server that cannot
    prove its name with a certificate from that CA is refused (G-SEC-2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$",
                      description="the database server's name as its certificate states it")
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = Field(default="mamoru", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    user: str = Field(default="mamoru_app", pattern=r"^[a-z][a-z0-9_]{0,62}$",
                      description="the application role every API worker logs in as")
    password_file: Path = Field(
        description="a file (0600, owned by the service) holding the application role's "
                    "password on its first line",
    )
    ca_file: Path = Field(
        description="the CA certificate(s) the server's certificate must chain to "
                    "(sslmode=verify-full; there is no setting to turn TLS off)",
    )
    connect_timeout_s: int = Field(default=10, ge=1, le=120,
                                   description="give up connecting after this many seconds")


# The store a registry stands for when its settings name none (`registry.store_id`).
DEFAULT_STORE_ID = "store-001"
STORE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class RegistrySettings(BaseModel):
    """Store policy for the watchlist. Safe defaults; unsafe values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(
        default=DEFAULT_STORE_ID, pattern=STORE_ID_PATTERN,
        description="this store's id, recorded on every incident",
    )
    retention_years: int = Field(
        default=3, ge=3, le=5,
        description="G-REG-4: entries are erased this long after the latest incident",
    )
    backup_retention_days: int = Field(
        default=30, ge=1, le=90,
        description="backups are deleted on their own, shorter schedule (G-REG-4)",
    )
    open_alert_days: int = Field(
        default=7, ge=1, le=30,
        description="G-RET-1: an alert nobody confirms or dismisses lapses this long after it "
                    "arrived; its snapshot is erased, the row keeps ids and counts only. A week "
                    "covers a weekend and a short absence of the person on duty; a match left "
                    "unjudged longer is no lead any more, only a stored face",
    )
    audit_retention_years: int = Field(
        default=6, ge=3, le=10,
        description="G-RET-1, G-SHR-7: audit records (ids and hashes only) are pruned this long "
                    "after they were written, never while their entry is still on the watchlist "
                    "or a kept backup needs them. At least 3 years (APPI 29/30 keep provision "
                    "records that long) and longer than retention_years, so every erasure stays "
                    "provable after its entry is gone",
    )
    joint_use_scheme: Path | None = Field(
        default=None,
        description="G-SHR-1: the published joint-use scheme file (TOML or JSON) this store "
                    "shares under; none = no joint use",
    )
    joint_use_bundle_max_items: int = Field(
        default=500, ge=1, le=10_000,
        description="a sync larger than this many items (entries, corrections, tombstones, "
                    "objections) is sent as several bundles, applied in order",
    )
    joint_use_bundle_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024 * 1024, le=256 * 1024 * 1024,
        description="the largest bundle this store sends, and accepts over HTTPS; a larger "
                    "sync is split into several bundles",
    )
    criteria: RegistrationCriteria = Field(
        default=RegistrationCriteria(),
        description="G-REG-2: the written registration criteria per offence category",
    )
    notice: NoticeSettings = Field(
        default=NoticeSettings(), description="G-NOT-1..4: what the public notice states",
    )
    request_response_days: int = Field(
        default=14, ge=1, le=30,
        description="G-DSR-2/4: a request or complaint is due this many days after it was "
                    "received (APPI: without delay); later ones are listed as overdue",
    )
    review_interval_days: int = Field(
        default=365, ge=90, le=730,
        description="G-REV-1: each active entry comes up for review this long after its "
                    "approval or its last review (見直しの機会)",
    )
    request_record_days: int = Field(
        default=90, ge=30, le=365,
        description="issue 10 / G-DSR-4: a closed request's contact, summary and answer text "
                    "are wiped this many days after it was answered or refused (the nightly "
                    "`mamoru expire`); kind, dates and outcome stay for the auditor's counts. "
                    "At least 30 days: the answer must reach the requester, who may follow it "
                    "up or complain about it (APPI 40); at most a year: nothing after that "
                    "needs their address",
    )

    storage: Literal["sqlcipher", "postgres"] = Field(
        default="sqlcipher",
        description="sqlcipher: the encrypted files in data_dir (one store, one box); "
                    "postgres: a chain's central database (issue 15), see `postgres`",
    )
    postgres: PostgresSettings | None = Field(
        default=None, description="the chain database; required when storage is postgres",
    )

    @model_validator(mode="after")
    def _postgres_storage_names_its_database(self) -> RegistrySettings:
        if self.storage == "postgres" and self.postgres is None:
            raise ValueError("storage is postgres but [registry.postgres] is not set "
                             "(host, password_file, ca_file)")
        return self

    @model_validator(mode="after")
    def _the_audit_trail_outlives_entries_and_backups(self) -> RegistrySettings:
        # G-REG-4: a restore re-applies every erasure recorded after the backup was taken, so
        # the trail must reach further back than the oldest backup kept; and an entry's whole
        # history must stay verifiable after it is erased. Both are checked, not assumed.
        if self.audit_retention_years <= self.retention_years:
            raise ValueError(
                f"audit_retention_years ({self.audit_retention_years}) must be longer than "
                f"retention_years ({self.retention_years}): the audit trail must outlive entries"
            )
        if self.audit_retention_years * 365 <= self.backup_retention_days:
            raise ValueError("audit_retention_years must be longer than backup_retention_days")
        return self


class LogSettings(BaseModel):
    """JSON logs (G-RET-1): ids and counts only, and deleted after a fixed number of days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path | None = Field(
        default=None,
        description="also write the JSON lines to this file, rotated at midnight UTC; none = "
                    "stderr only (journald; deploy/journald sets the same retention there)",
    )
    retention_days: int = Field(
        default=14, ge=1, le=90,
        description="rotated log files older than this many days are deleted (one file a day)",
    )


class WebSettings(BaseModel):
    """People on the tablet pages and the API: sessions, lockout, rate limits (G-SEC-2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_idle_minutes: int = Field(
        default=15, ge=1, le=120,
        description="a session not used for this long ends (the tablet is left unattended)",
    )
    session_absolute_hours: int = Field(
        default=8, ge=1, le=24,
        description="a session ends this long after login however busy it is (one shift)",
    )
    lockout_failures: int = Field(
        default=5, ge=3, le=20,
        description="consecutive failed logins for one user name before it is locked",
    )
    lockout_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="how long a locked user name refuses every login, even the right password",
    )
    login_rate_limit_per_minute: int = Field(
        default=60, ge=1, le=10_000,
        description="login attempts accepted per client address and minute",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, le=1_000_000,
        description="other requests accepted per client address and minute",
    )

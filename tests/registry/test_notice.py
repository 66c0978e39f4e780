"""The public notice is generated from the configuration in force (G-NOT-1..4, G-SHR-1, G-SEC-3).

Real registries (SQLCipher files), the real joint-use world (tests/registry/world.py)
(three stores, one adopted scheme), the real `mamoru notice render` command,
its real PDF rendered by poppler and its QR code decoded by OpenCV. Also the
written registration criteria (G-REG-2): every proposal records the version
of its category's criteria.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from mamoru.wiring import index_spec, registry_paths
from registry.audit.trail import Action
from registry.config import RegistrationCriteria, RegistrySettings
from registry.context import open_registry
from registry.domain import ConfirmationKind, IncidentInput, OffenceCategory
from registry.joint_use.errors import NoticeOutdatedError
from registry.joint_use.keys import public_b64
from registry.joint_use.scheme import adopt_scheme
from registry.joint_use.sync import ensure_notice_current, export_bundle
from registry.notice.page import current_page
from registry.notice.publication import last_published_sha256
from registry.notice.sign import SignError, find_cjk_font
from registry.watchlist.approval import Photo, propose
from registry.watchlist.criteria import criteria_version
from tests import REPO
from tests.registries import OBAMA, T0, Registry
from tests.registry.people import Clock, log_in, start_app
from tests.registry.world import (
    ADMINS,
    DAY,
    PASSWORD,
    Store,
    World,
    member_of,
    open_store,
    write_scheme,
)

URL = "https://store-a.example/notice"


def _with_policy(store: Store, **changes: object):  # type: ignore[no-untyped-def]
    """The same registry opened under a changed configuration (as after editing mamoru.toml)."""
    policy = store.settings.registry.model_copy(update=changes)
    return open_registry(registry_paths(store.settings), policy, index_spec(store.settings))


def _mamoru(store: Store, root: Path, *args: str,
            **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(store.data_dir),
            "MAMORU_REGISTRY__STORE_ID": store.member_id,
            "MAMORU_REGISTRY__JOINT_USE_SCHEME": str(root / "scheme.json"),
            "MAMORU_PASSWORD": PASSWORD, **env}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=180, check=False)


def _qr_of_pdf(pdf: Path, tmp_path: Path) -> str:
    """Render page 1 with poppler and decode its QR code with OpenCV."""
    prefix = tmp_path / "sign"
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-f", "1", "-l", "1", str(pdf),
                    str(prefix)], check=True, timeout=60)
    (png,) = sorted(tmp_path.glob("sign*.png"))
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > image.shape[1]  # portrait A4
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


# --- the notice follows the configuration ------------------------------------------------


def test_notice_changes_with_retention_years_and_is_then_stale(world: World) -> None:
    """G-NOT-2: retention_years is what the notice states; a change makes the record stale."""
    a = world["store-a"]
    page = current_page(a.ctx)
    assert last_published_sha256(a.ctx) == page.sha256  # the fixture published it
    assert "最後の事案の日から 3 年" in page.html and "3 years after the latest" in page.html
    with _with_policy(a, retention_years=5) as five:
        changed = current_page(five)
        assert changed.sha256 != page.sha256
        assert "最後の事案の日から 5 年" in changed.html
        assert "5 years after the latest" in changed.html
        with pytest.raises(NoticeOutdatedError, match="older than the settings"):
            ensure_notice_current(five)
        with pytest.raises(NoticeOutdatedError):
            export_bundle(five, a.scheme(), "store-b", T0 + DAY)


def test_notice_shows_the_five_joint_use_items_and_follows_the_members(world: World) -> None:
    """G-SHR-1: the five items, the members, the region rule, from the adopted scheme."""
    a = world["store-a"]
    before = current_page(a.ctx)
    for text in ("加盟店は、確実に犯罪を行った者の情報", "犯行日時", "date and time of the offence",
                 "store-a 店", "store-b 店", "store-c 店", "地域：kansai",
                 "同じ地域の加盟店の間でのみ共有します", "万引き等の再発防止のため",
                 "小売防犯協議会事務局", "03-0000-0000"):
        assert text in before.html, text
    # a new member (store-x) adopted by the admin: the page must name it
    members = [member_of(s) for s in world.stores.values()]
    members.append({"member_id": "store-x", "store_name": "新加盟X店", "region": "kanto",
                    "signing_key": public_b64(Ed25519PrivateKey.generate()),
                    "encryption_key": public_b64(X25519PrivateKey.generate())})
    write_scheme(world.root / "scheme.json", members)
    adopt_scheme(a.ctx, actor=a.user(ADMINS["store-a"]), path=world.root / "scheme.json",
                 now=T0 + DAY)
    after = current_page(a.ctx)
    assert after.sha256 != before.sha256 and "新加盟X店" in after.html
    assert "新加盟X店" not in before.html


@pytest.mark.cli
def test_export_refuses_a_stale_notice_and_works_after_notice_render(
        world: World, tmp_path: Path) -> None:
    """Joint-use export refuses while the published notice predates the scheme; `notice render`
    publishes the new one (page + A4 sign with a QR code to the notice URL) and export works."""
    a = world["store-a"]
    members = [member_of(s) for s in world.stores.values() if s.member_id != "store-c"]
    write_scheme(world.root / "scheme.json", members)  # store-c leaves
    adopt_scheme(a.ctx, actor=a.user(ADMINS["store-a"]), path=world.root / "scheme.json",
                 now=T0 + DAY)
    with pytest.raises(NoticeOutdatedError, match="notice render"):
        export_bundle(a.ctx, a.scheme(), "store-b", T0 + DAY)
    assert not [r for r in a.ctx.repo.audit_rows() if r.action == Action.JOINT_USE_PROVIDED.value]
    a.ctx.close()

    refused = _mamoru(a, world.root, "joint-use", "export", "--to", "store-b", "--out",
                      str(tmp_path / "b.bundle"), "--as", "suzuki.mgr")
    assert refused.returncode == 2 and "notice render" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    out = tmp_path / "notice"
    rendered = _mamoru(a, world.root, "notice", "render", "--out", str(out), "--url", URL)
    assert rendered.returncode == 0, rendered.stderr
    page = (out / "notice.html").read_bytes()
    assert "store-c 店" not in page.decode() and "store-b 店" in page.decode()
    assert _qr_of_pdf(out / "notice-sign-a4.pdf", tmp_path) == URL
    again = _mamoru(a, world.root, "notice", "render", "--out", str(out), "--url", URL)
    assert again.returncode == 0 and "unchanged" in again.stdout  # recorded once

    exported = _mamoru(a, world.root, "joint-use", "export", "--to", "store-b", "--out",
                       str(tmp_path / "b.bundle"), "--as", "suzuki.mgr")
    assert exported.returncode == 0, exported.stderr
    reopened = open_store(world.root, "store-a")
    world.stores["store-a"] = reopened
    published = [json.loads(r.details) for r in reopened.ctx.repo.audit_rows()
                 if r.action == Action.NOTICE_PUBLISHED.value]
    assert published[-1]["sha256"] == hashlib.sha256(page).hexdigest()
    assert published[-1]["members"] == ["store-a", "store-b"]
    assert len(published) == 2  # the fixture's and the render's; the second render added none
    assert reopened.ctx.audit.verify().ok


@pytest.mark.cli
def test_notice_render_without_url_or_font_fails_with_one_line(world: World, tmp_path: Path
                                                               ) -> None:
    a = world["store-a"]
    a.ctx.close()
    no_url = _mamoru(a, world.root, "notice", "render", "--out", str(tmp_path / "n"))
    assert no_url.returncode == 2 and "public_url" in no_url.stderr
    no_font = _mamoru(a, world.root, "notice", "render", "--out", str(tmp_path / "n"),
                      "--url", URL, MAMORU_CJK_FONT=str(tmp_path / "missing.ttc"))
    assert no_font.returncode == 2 and "does not exist" in no_font.stderr
    for result in (no_url, no_font):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "n").exists()
    with pytest.raises(SignError, match="fonts-noto-cjk"):
        find_cjk_font(candidates=(), roots=(tmp_path,))


# --- served to anyone, with no personal data ------------------------------------------------


def test_notice_needs_no_login_and_holds_no_personal_data(registry: Registry) -> None:
    """GET /notice answers without a session; nothing of an entry or a user is on it."""
    entry_id = registry.register(OBAMA, display_name="山田花子", features="赤いリュックの女性")
    incident = registry.ctx.repo.incidents(entry_id)[0]
    with start_app(registry, Clock()) as client:
        answer = client.get("/notice")
        assert answer.status_code == 200
        html = answer.text
        for private in ("山田花子", "赤いリュックの女性", entry_id, entry_id[:12],
                        incident.confirmation_ref, "mgr1", "mgr2", "untrained"):
            assert private not in html, private
        assert "当店では防犯カメラを作動させ、顔識別機能を使用しています" in html
        assert "Security cameras are operating" in html
        assert html.index('lang="ja"') < html.index('id="en"')  # Japanese first
        assert "全国万引犯罪防止機構" in html and "03-5244-5612" in html  # G-NOT-4
        assert "リアルタイムに照合" in html and "来店を確認" in html  # G-NOT-1 in substance
        assert "保存時に暗号化" in html and "二者承認" in html  # G-SEC-3
        assert "共同利用は行っていません" in html  # no scheme configured here
        assert "録画装置の映像は 30 日" in html  # the recorder's retention (G-NOT-3)
        for category in OffenceCategory:
            assert criteria_version(registry.settings.registry.criteria, category).text in html
        assert "style-src 'sha256-" in answer.headers["content-security-policy"]
        # the app recorded the page it serves when it started
        assert last_published_sha256(registry.ctx) == hashlib.sha256(answer.content).hexdigest()
        # and the proposal page shows the same criteria with their versions
        staff = log_in(client, "staff")
        propose = staff.get("/propose")
        assert propose.status_code == 200
        theft = criteria_version(registry.settings.registry.criteria, OffenceCategory.THEFT)
        assert theft.text in propose.text and theft.short in propose.text


def test_notice_states_the_configured_operator_areas_and_recorder_retention(
        registry: Registry) -> None:
    notice = registry.settings.registry.notice.model_copy(update={
        "operator_name": "株式会社まもる商店",
        "face_identification_areas": ("正面入口", "化粧品売場"),
        "recorder_retention_days": 14, "complaint_contact": "お客様相談室 0120-000-000"})
    policy = registry.settings.registry.model_copy(update={"notice": notice})
    with open_registry(registry_paths(registry.settings), policy,
                       index_spec(registry.settings)) as ctx:
        html = current_page(ctx).html
    for text in ("株式会社まもる商店", "正面入口", "化粧品売場", "録画装置の映像は 14 日",
                 "after 14 days", "お客様相談室 0120-000-000"):
        assert text in html, text


# --- written criteria (G-REG-2) ---------------------------------------------------------------


def test_a_proposal_records_the_criteria_version_it_was_judged_under(
        registry: Registry) -> None:
    criteria = registry.settings.registry.criteria
    first = registry.propose(OBAMA).entry_id
    theft = criteria_version(criteria, OffenceCategory.THEFT)
    assert registry.ctx.repo.criteria_version_of(first) == (theft.sha256, theft.text)
    proposed = [json.loads(r.details) for r in registry.ctx.repo.audit_rows()
                if r.action == Action.PROPOSE.value and r.entry_id == first]
    assert proposed[0]["criteria_sha256"] == theft.sha256
    # the store rewrites its theft criteria: later proposals record the new version, the
    # earlier one keeps the text it was judged under
    new_text = theft.text + "（2027年改定：防犯カメラ映像の確認を必須とする）"
    policy = registry.settings.registry.model_copy(
        update={"criteria": RegistrationCriteria(theft=new_text)})
    with open_registry(registry_paths(registry.settings), policy,
                       index_spec(registry.settings)) as changed:
        result = propose(changed, registry.engine, registry.settings.quality.registration,
                         actor=registry.user("staff"),
                         photos=[Photo("obama", registry.image(OBAMA))],
                         incident=IncidentInput(OffenceCategory.THEFT, T0,
                                                ConfirmationKind.POLICE_REPORT,
                                                "被害届-2027-0001"), features="", now=T0)
        second = changed.repo.criteria_version_of(result.entry_id)
    assert second is not None and second[1] == new_text and second[0] != theft.sha256
    assert registry.ctx.repo.criteria_version_of(first) == (theft.sha256, theft.text)


def test_criteria_settings_cover_every_offence_category() -> None:
    """G-REG-5: one written text per category, no more, no fewer; too short a text is refused."""
    assert set(RegistrationCriteria.model_fields) == {c.value for c in OffenceCategory}
    with pytest.raises(ValueError):
        RegistrySettings(criteria={"theft": "短い"})  # type: ignore[arg-type]
    versions = {criteria_version(RegistrationCriteria(), c).sha256 for c in OffenceCategory}
    assert len(versions) == len(OffenceCategory)

"""The tablet pages in a real browser (Debian's Chromium) against a real `mamoru serve`.

Everything is real: the registry is SQLCipher on disk with argon2 passwords,
the server runs as its own process over HTTPS with its generated certificate,
the alert comes from the edge endpoint with a device token, the faces are the
real photos, and the second alert comes from the real edge loop (`mamoru edge
run`) watching a composed clip in which the proposed person walks past
strangers. Screenshots go to test-output/screenshots/ (git-ignored).

The story (G-REG-1, G-REG-2, "what follows" 1 and 2):
staff sees an alert on a listed person, proposes a fresh registration from the
alert's snapshot (the quality gate's verdict shown before submitting), and
cannot approve it (their own proposal is marked, its buttons disabled, and a
forged post is refused); a manager approves it and withdraws the superseded
entry; the edge loop then alerts on that person; staff confirms the alert on
the page and the store's precision figure changes.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from kernel.durable import write_private_file
from mamoru.demo.scene import cast, compose_walk_past
from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts import devices
from registry.clock import to_text, utc_now
from registry.context import open_registry
from tests import REPO
from tests.registries import OBAMA, OBAMA2, PASSWORD, Registry
from tests.web.browser import new_tablet_context, save_screenshot
from tests.web.server import RegistryServer

DEVICE = "door-box"


@dataclass
class Store:
    """A store's registry served by `mamoru serve`, with one listed person and one edge box."""

    server: RegistryServer
    data_dir: Path
    token_file: Path
    listed_entry: str  # Obama, registered from obama.jpg before the test
    listed_score: float  # obama2.jpg against that entry, as the box would report it
    threshold: float
    face_data: Path
    engine: FaceEngine

    @property
    def url(self) -> str:
        return self.server.url

    def post_alert(self, photo: str, *, camera: str = "door") -> str:
        """What the box sends for a match: the snapshot (a PNG) of the listed person."""
        image = cv2.imread(str(self.face_data / photo))
        ok, png = cv2.imencode(".png", image)
        assert ok
        alert_id = uuid.uuid4().hex
        payload = {
            "alert_id": alert_id, "camera": camera, "detected_at": to_text(utc_now()),
            "score": round(self.listed_score, 6), "threshold": round(self.threshold, 6),
            "entry_id": self.listed_entry, "index_version": 1,
            "snapshot_png_b64": base64.b64encode(png.tobytes()).decode(),
        }
        token = self.token_file.read_text().strip()
        with self.server.client() as client:
            response = client.post("/api/v1/edge/alerts", json=payload,
                                   headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.text
        return alert_id


def _registry_copy(template: Path, data_dir: Path, engine: FaceEngine,
                   face_data: Path) -> Registry:
    """A fresh copy of the initialised registry (users trained), opened as the app opens it."""
    shutil.copytree(template, data_dir)
    settings = get_settings(data_dir=data_dir)
    ctx = open_registry(registry_paths(settings), settings.registry, index_spec(settings))
    return Registry(settings, ctx, engine, face_data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, registry_template: Path,
          engine_default: FaceEngine, face_data: Path) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("tablet")
    data_dir = root / "data"
    reg = _registry_copy(registry_template, data_dir, engine_default, face_data)
    ctx = reg.ctx
    now = utc_now()
    with ctx:
        listed = reg.register(OBAMA, occurred_at=now - timedelta(days=40), now=now,
                              features="紺の帽子")
        score = max(h.score for h in reg.hits(OBAMA2) if h.entry_id == listed)
        token = devices.add_device(ctx, admin=reg.user("admin"), name=DEVICE, now=now)
    token_file = root / "device.token"
    write_private_file(token_file, token.encode())
    server = RegistryServer(data_dir, log_file=root / "serve.log").start()
    try:
        yield Store(server, data_dir, token_file, listed, score, engine_default.threshold,
                    face_data, engine_default)
    finally:
        server.stop()


# --- helpers -----------------------------------------------------------------------------

def log_in(page: Page, store: Store, username: str) -> None:
    page.goto(f"{store.url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_load_state()
    expect(page.locator("#logout")).to_be_visible()


def csrf_token(page: Page) -> str:
    return page.locator("input[name=csrf_token]").first.input_value()


def assert_japanese_renders(page: Page) -> None:
    """Two different kanji draw differently: a font for Japanese is there (no empty boxes)."""
    differ = page.evaluate("""() => {
        const canvas = document.createElement('canvas');
        canvas.width = canvas.height = 48;
        const g = canvas.getContext('2d');
        const draw = (ch) => {
            g.clearRect(0, 0, 48, 48);
            g.font = '36px ' + getComputedStyle(document.body).fontFamily;
            g.fillText(ch, 4, 40);
            const px = g.getImageData(0, 0, 48, 48).data;
            let inked = 0;
            for (let i = 3; i < px.length; i += 4) inked += px[i] > 0;
            return [Array.from(px).join(','), inked];
        };
        const [a, inkA] = draw('確'), [b, inkB] = draw('認');
        return a !== b && inkA > 20 && inkB > 20;
    }""")
    assert differ, "Japanese glyphs render as identical boxes: install fonts-noto-cjk"


def assert_real_screenshot(path: Path) -> None:
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] == 1280, path
    colours = len(np.unique(image.reshape(-1, 3), axis=0))
    assert path.stat().st_size > 20_000 and colours > 200, f"{path} looks blank"


def run_edge(store: Store, clip: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAMORU_DATA_DIR": str(store.data_dir),
           "MAMORU_EDGE__REGISTRY_URL": store.url,
           "MAMORU_EDGE__DEVICE_TOKEN_FILE": str(store.token_file)}
    if store.server.cert is not None:
        env["SSL_CERT_FILE"] = str(store.server.cert)  # the box trusts this registry's certificate
    return subprocess.run(
        [sys.executable, "-m", "mamoru", "edge", "run", "--source", f"door={clip}",
         "--exit-at-end"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def alert_cards(page: Page) -> dict[str, tuple[str, str]]:
    """alert id -> (entry id, status), as the alerts page shows them."""
    cards = page.locator("li.alert")
    return {
        cards.nth(i).get_attribute("data-alert-id") or "": (
            cards.nth(i).get_attribute("data-entry-id") or "",
            cards.nth(i).get_attribute("data-status") or "",
        )
        for i in range(cards.count())
    }


# --- the story -------------------------------------------------------------------------------

def test_staff_proposes_from_an_alert_a_manager_approves_and_the_edge_loop_alerts(
    store: Store, browser: Browser, tablet: BrowserContext, page: Page, tmp_path: Path,
) -> None:
    first_alert = store.post_alert(OBAMA2)

    # Staff: the alert, with the snapshot beside the registered image, score and threshold.
    log_in(page, store, "staff")
    assert page.url.endswith("/alerts")
    card = page.locator(f"#alert-{first_alert}")
    expect(card).to_be_visible()
    expect(card.locator(".score")).to_contain_text(f"{store.threshold:.3f}")
    for image in card.locator("img.face-img").all():
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(page.locator("#precision-value")).to_have_text("—")

    # Propose from the alert's snapshot; the quality verdict comes before submitting.
    card.locator("a[href^='/propose/from-alert/']").click()
    expect(page.locator("input[name=alert_id]")).to_have_value(first_alert)
    page.select_option("#category", "theft")
    page.fill("#occurred_at", (utc_now() + timedelta(hours=9) - timedelta(days=2))
              .strftime("%Y-%m-%dT%H:%M"))
    page.select_option("#confirmation_kind", "police_report")
    page.fill("#confirmation_ref", "被害届-2026-0107")
    page.fill("#damage", "化粧品 3点 5,800円")
    page.fill("#features", "紺の帽子、灰色のコート")
    expect(page.locator("#submit-proposal")).to_be_disabled()
    page.click("#check-quality")
    expect(page.locator("#verdict-result")).to_contain_text("合格")
    expect(page.locator("#submit-proposal")).to_be_enabled()
    page.click("#submit-proposal")
    page.wait_for_url("**/approvals?done=proposal_submitted")
    expect(page.locator(".flash-notice")).to_be_visible()

    # Staff cannot approve: their own proposal is marked and its buttons disabled.
    own = page.locator("li.proposal.own")
    expect(own).to_have_count(1)
    proposed = own.get_attribute("data-entry-id") or ""
    expect(own.locator(".own-badge")).to_contain_text("ご自身の提案")
    expect(own.locator(".approve-form button")).to_be_disabled()
    expect(own.locator(".reject-form button")).to_be_disabled()
    forged = tablet.request.post(f"{store.url}/approvals/{proposed}/approve",
                                 form={"csrf_token": csrf_token(page), "reason": "自分で承認"})
    assert forged.status == 403
    assert_japanese_renders(page)
    assert_real_screenshot(save_screenshot(page, "approvals-staff"))

    # A manager approves it, and withdraws the older entry it supersedes.
    manager = new_tablet_context(browser, ignore_https_errors=True)
    try:
        boss = manager.new_page()
        log_in(boss, store, "mgr1")
        boss.goto(f"{store.url}/approvals")
        proposal = boss.locator(f"#proposal-{proposed}")
        expect(proposal.locator(".own-badge")).to_have_count(0)
        expect(proposal.locator(".proposer")).to_have_text("staff")
        assert_real_screenshot(save_screenshot(boss, "approvals-manager"))
        proposal.locator(".approve-form input[name=reason]").fill("被害届と画像を確認した")
        proposal.locator(".approve-form button").click()
        boss.wait_for_url("**/approvals?done=approved_notice")
        boss.goto(f"{store.url}/watchlist")
        expect(boss.locator(f"#entry-{proposed}")).to_contain_text("有効")
        listed = boss.locator(f"#entry-{store.listed_entry}")
        listed.locator("summary", has_text="取り下げ").click()
        listed.locator(".withdraw-form input[name=reason]").fill("新しい登録と重複のため")
        listed.locator(".withdraw-form button").click()
        boss.wait_for_url("**/watchlist?done=withdrawn_notice")
        expect(boss.locator(f"#entry-{store.listed_entry}")).to_have_count(0)
    finally:
        manager.close()

    # The edge loop, on a clip where that person walks past strangers, alerts on the new entry.
    listed_photo, strangers = cast(store.face_data, strangers=3)
    clip = compose_walk_past(tmp_path / "walk.mp4", listed_photo, strangers,
                             engine=store.engine, face_data=store.face_data)
    result = run_edge(store, clip.path)
    assert result.returncode == 0, result.stderr[-3000:]

    page.goto(f"{store.url}/alerts")
    new = {a: v for a, v in alert_cards(page).items() if a != first_alert}
    assert list(new.values()) == [(proposed, "open")], (new, store.server.log_tail())
    new_alert = next(iter(new))
    expect(page.locator("#precision-value")).to_have_text("—")
    expect(page.locator("body")).to_contain_text("確認")
    assert_japanese_renders(page)
    assert_real_screenshot(save_screenshot(page, "alerts"))

    # Confirmed on the page: the precision figure changes.
    page.locator(f"#alert-{new_alert} .confirm-form button").click()
    page.wait_for_url(f"**/alerts?done=confirmed_notice#alert-{new_alert}")
    expect(page.locator(f"#alert-{new_alert}")).to_have_attribute("data-status", "confirmed")
    expect(page.locator("#count-confirmed")).to_have_text("1")
    expect(page.locator("#precision-value")).to_have_text("100%")
    assert_real_screenshot(save_screenshot(page, "alerts-confirmed"))


def test_the_auditor_sees_counts_and_the_chain_but_no_faces(
    store: Store, tablet: BrowserContext, page: Page,
) -> None:
    log_in(page, store, "auditor")
    assert page.url.endswith("/audit")
    expect(page.locator("#chain")).to_contain_text("正常")
    assert int(page.locator("#chain-records").inner_text()) > 0
    expect(page.locator("td[data-key=approvals]")).not_to_have_text("0")
    assert page.locator("img").count() == 0
    assert "<img" not in page.content()
    expect(page.locator("nav a[href='/alerts']")).to_have_count(0)
    for path in ("/alerts", "/watchlist", f"/api/v1/alerts/{uuid.uuid4().hex}/snapshot",
                 f"/api/v1/watchlist/{store.listed_entry}/evidence/{uuid.uuid4().hex}"):
        assert tablet.request.get(f"{store.url}{path}").status == 403, path
    save_screenshot(page, "audit")
    page.goto(f"{store.url}/audit?lang=en")  # the language toggle; the choice is remembered
    expect(page.locator("#chain")).to_contain_text("Intact")
    page.goto(f"{store.url}/audit")
    expect(page.locator("h1")).to_have_text("Audit")


def test_logging_out_ends_the_session_on_the_server(
    store: Store, browser: Browser, tablet: BrowserContext, page: Page,
) -> None:
    log_in(page, store, "staff")
    cookie = next(c for c in tablet.cookies() if c["name"] == "mamoru_session")
    page.click("#logout")
    page.wait_for_url("**/login?done=logged_out_notice")
    expect(page.locator(".flash-notice")).to_contain_text("ログアウト")
    response = page.goto(f"{store.url}/alerts")
    assert response is not None and response.status == 401
    expect(page.locator("#login-form")).to_be_visible()

    # The old cookie, kept by someone, opens nothing: the session ended on the server.
    replay = new_tablet_context(browser, ignore_https_errors=True)
    try:
        replay.add_cookies([cookie])
        assert replay.request.get(f"{store.url}/alerts").status == 401
        assert replay.request.get(f"{store.url}/api/v1/alerts").status == 401
    finally:
        replay.close()


# --- the request desk (G-DSR-1..4) ---------------------------------------------------------------

@pytest.fixture
def desk(tmp_path: Path, registry_template: Path, engine_default: FaceEngine,
         face_data: Path) -> Iterator[tuple[RegistryServer, str, str]]:
    """A store where Obama is listed and his disclosure request, opened 20 days ago, is overdue."""
    from registry.domain import IdentityMethod, RequestKind
    from registry.requests import desk as requests
    data_dir = tmp_path / "data"
    reg = _registry_copy(registry_template, data_dir, engine_default, face_data)
    ctx = reg.ctx
    now = utc_now()
    with ctx:
        listed = reg.register(OBAMA, occurred_at=now - timedelta(days=40), now=now)
        late = requests.open_request(ctx, actor=reg.user("mgr1"), kind=RequestKind.DISCLOSURE,
                                     identity_method=IdentityMethod.PASSPORT,
                                     contact="東京都港区1-2-3", now=now - timedelta(days=20))
    server = RegistryServer(data_dir, log_file=tmp_path / "serve.log").start()
    try:
        yield server, listed, late.request_id
    finally:
        server.stop()


def test_a_manager_searches_with_a_photo_answers_a_disclosure_and_the_overdue_badge_goes(
    desk: tuple[RegistryServer, str, str], page: Page, face_data: Path,
) -> None:
    server, listed, late = desk
    page.goto(f"{server.url}/login")
    page.fill("#username", "mgr2")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_load_state()
    page.goto(f"{server.url}/requests")
    expect(page.locator("#badge-requests")).to_have_text("1")
    expect(page.locator(f"#request-{late}")).to_have_class("overdue")

    # A new request at the counter: identity checked, contact typed, due in 14 days.
    page.locator("#open-request summary").click()
    page.select_option("#request-kind", "disclosure")
    page.select_option("#identity-method", "drivers_licence")
    page.fill("#request-contact", "tel 03-1111-2222")
    page.click("#open-request-submit")
    page.wait_for_url("**/requests?done=request_opened_notice*")
    expect(page.locator(".flash-notice")).to_be_visible()
    assert "03-1111-2222" not in page.content()  # the contact is never on a page
    expect(page.locator("#badge-requests")).to_have_text("1")  # the new one is not overdue

    # The overdue one: he brought a photo; the search finds his entry (the photo is not kept).
    actions = page.locator(f"#actions-{late}")
    actions.locator("input[type=file]").set_input_files(str(face_data / OBAMA2))
    actions.locator(".search-form button").click()
    page.wait_for_url(f"**/requests?done=request_found_notice#request-{late}")
    expect(page.locator(f"#actions-{late} .subject-entry")).to_have_text(listed[:8])

    # The document to print: what is held, with the masked images.
    page.locator(f"#actions-{late} .disclosure-link").click()
    expect(page.locator("#disclosure-text")).to_contain_text(listed)
    expect(page.locator("#disclosure-text")).to_contain_text("事案 / Incidents")
    expect(page.locator("#outside-custody")).to_be_visible()
    images = page.locator("img.face-img")
    assert images.count() >= 1
    for image in images.all():
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert_real_screenshot(save_screenshot(page, "disclosure"))
    page.goto(f"{server.url}/requests")

    page.locator(f"#actions-{late} .answer-form input[name=reason]").fill("開示書面を手渡した")
    page.locator(f"#actions-{late} .answer-form button").click()
    page.wait_for_url(f"**/requests?done=request_answered_notice#request-{late}")
    expect(page.locator(f"#request-{late}")).to_contain_text("disclosed")
    expect(page.locator("#badge-requests")).to_have_count(0)
    expect(page.locator("#overdue-requests strong")).to_have_text("0")
    assert_japanese_renders(page)
    assert_real_screenshot(save_screenshot(page, "requests"))

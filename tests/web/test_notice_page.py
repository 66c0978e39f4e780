"""The public notice on a phone (G-NOT-2): no login, Japanese first, no sideways scrolling.

Debian's Chromium at 390 px wide (a common phone), against `mamoru serve` as a
real process on a real registry; the notice is what a visitor reaches from the
QR code on the sign.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.web.browser import save_screenshot
from tests.web.server import RegistryServer

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry_template: Path
           ) -> Iterator[RegistryServer]:
    root = tmp_path_factory.mktemp("notice")
    data_dir = root / "data"
    shutil.copytree(registry_template, data_dir)
    running = RegistryServer(data_dir, log_file=root / "serve.log").start()
    try:
        yield running
    finally:
        running.stop()


def test_notice_reads_on_a_phone_without_login_or_sideways_scroll(
        browser: Browser, server: RegistryServer) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  locale="ja-JP", ignore_https_errors=True,
                                  device_scale_factor=2)
    try:
        page = context.new_page()
        answer = page.goto(f"{server.url}/notice")
        assert answer is not None and answer.status == 200
        assert page.url.endswith("/notice")  # not sent to the login
        expect(page.locator("#ja h1")).to_contain_text("防犯カメラ（顔識別機能）に関するお知らせ")
        expect(page.locator("#en h1")).to_contain_text("Notice on security cameras")
        assert page.locator("#ja").bounding_box()["y"] < page.locator("#en").bounding_box()["y"]  # type: ignore[index]
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " window.innerWidth]")
        assert widths[0] <= widths[1] == PHONE["width"], widths  # no horizontal scroll
        # the inline style applies (allowed by its hash in the CSP), so the page is styled
        padding = page.evaluate("() => getComputedStyle(document.querySelector('main'))"
                                ".paddingLeft")
        assert padding == "16px"
        font_px = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                                "'#ja p')).fontSize)")
        assert font_px >= 16  # readable without zooming
        page.click("a[href='#en']")
        expect(page.locator("#en h2").first).to_be_in_viewport()
        save_screenshot(page, "notice-phone")
    finally:
        context.close()

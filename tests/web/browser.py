"""Debian's Chromium driven by Playwright: the tablet pages as a store's tablet shows them.

The browser is the one `make system-deps` installs (`/usr/bin/chromium`, with
`fonts-noto-cjk` so Japanese renders as text, not empty boxes); Playwright's
own browser download (`playwright install`) is never used. The flags keep the
browser from calling home: a test run reaches only the server under test.

    with launch_chromium() as browser:
        context = new_tablet_context(browser)
        page = context.new_page()
        page.goto(url)
        save_screenshot(page, "alerts")   # -> test-output/screenshots/alerts.png
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
TABLET_VIEWPORT = {"width": 1280, "height": 800}  # a 10-inch tablet in landscape
SCREENSHOTS = REPO / "test-output" / "screenshots"  # git-ignored
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


class BrowserMissingError(RuntimeError):
    """Debian's Chromium is not installed."""


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Headless Debian Chromium under Playwright; closed on every path."""
    if not CHROMIUM.is_file():
        raise BrowserMissingError(
            f"{CHROMIUM} is missing: run `make system-deps` (Debian packages chromium "
            "fonts-noto-cjk)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


def new_tablet_context(browser: Browser, *, locale: str = "ja-JP",
                       ignore_https_errors: bool = False) -> BrowserContext:
    """A fresh cookie jar with a 10-inch touch screen; one per person logging in.

    `ignore_https_errors` is for the server's self-signed certificate in tests.
    """
    return browser.new_context(
        viewport=TABLET_VIEWPORT, has_touch=True, is_mobile=False, locale=locale,
        timezone_id="Asia/Tokyo", ignore_https_errors=ignore_https_errors,
        device_scale_factor=1,
    )


def save_screenshot(page: Page, name: str, *, folder: Path = SCREENSHOTS) -> Path:
    """Save the whole page as `<folder>/<name>.png` and return the path."""
    if not _NAME.match(name):
        raise ValueError(f"screenshot names are plain file names, got {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path

"""Fixtures for the browser tests: one headless Chromium per session, a tablet page per test.

`browser` starts Debian's Chromium once (about a second); `tablet` gives each
test its own context (own cookies) on a 1280x800 touch screen in ja-JP, and
`page` one page in it. A test that needs a second person logged in at the same
time opens another context with `new_tablet_context(browser)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.web.browser import launch_chromium, new_tablet_context


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with launch_chromium() as launched:
        yield launched


@pytest.fixture
def tablet(browser: Browser) -> Iterator[BrowserContext]:
    context = new_tablet_context(browser, ignore_https_errors=True)
    yield context
    context.close()


@pytest.fixture
def page(tablet: BrowserContext) -> Page:
    return tablet.new_page()

"""The tablet's words: both languages hold every key, and every key a template uses exists."""

from __future__ import annotations

import re

from registry.api.html import NAV, NOTICES, TEMPLATES
from registry.i18n import EN, JA, Translator, missing_keys

# t("key"), t.pair("key"), t.pair('key'), t('key') in the templates
_USED = re.compile(r"""\bt(?:\.pair)?\(\s*["']([a-z_]+)["']\s*\)""")


def test_japanese_and_english_hold_the_same_keys() -> None:
    assert missing_keys() == {}
    assert all(JA[k].strip() and EN[k].strip() for k in JA)


def test_every_word_a_template_or_the_navigation_uses_is_translated() -> None:
    used = {key for page in TEMPLATES.glob("*.html") for key in _USED.findall(page.read_text())}
    used |= {page.key for page in NAV} | set(NOTICES)
    assert used, "no translated words found in the templates"
    assert sorted(used - JA.keys()) == []


def test_japanese_comes_first_with_english_beneath() -> None:
    pair = Translator("ja").pair("confirm")
    assert pair.index("確認") < pair.index("Confirm")
    assert "確認" not in Translator("en").pair("confirm")

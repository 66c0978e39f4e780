"""The notice as one HTML page (Japanese first, English below) and the SHA-256 of its bytes.

The page depends on `NoticeContent` alone, never on the request, a session or
the time, so the same configuration renders the same bytes: the hash is what
the audit trail records (`publication`). Its style is inline and allowed by its
own hash in the Content-Security-Policy, so the page is one self-contained file
that `mamoru notice render` can also write out for the store's website.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from registry.context import RegistryContext
from registry.notice.content import (
    ACCREDITED_BODY_CONTACT,
    ACCREDITED_BODY_EN,
    ACCREDITED_BODY_JA,
    NON_MATCH_EN,
    NON_MATCH_JA,
    PURPOSE_EN,
    PURPOSE_JA,
    SECURITY_MEASURES,
    NoticeContent,
    notice_content,
)

TEMPLATES: Final = Path(__file__).resolve().parent.parent / "api" / "templates"

# Readable on a phone (390 px wide) without sideways scrolling: long words and numbers wrap.
NOTICE_CSS: Final = (
    ":root{font-family:\"Noto Sans CJK JP\",\"Noto Sans JP\",\"Hiragino Sans\",\"Yu Gothic\","
    "system-ui,sans-serif;font-size:17px;line-height:1.6;color:#1b1f24;background:#fff}"
    "*{box-sizing:border-box}"
    "body{margin:0}"
    "main{max-width:46rem;margin:0 auto;padding:12px 16px 32px;overflow-wrap:anywhere}"
    "h1{font-size:1.4rem;line-height:1.35;margin:12px 0}"
    "h2{font-size:1.1rem;margin:20px 0 6px;padding-top:8px;border-top:1px solid #d5dae0}"
    "h3{font-size:1rem;margin:12px 0 4px}"
    "ul{padding-left:1.3em;margin:4px 0}"
    "dl{margin:4px 0}dt{font-weight:700;margin-top:10px}dd{margin:2px 0 0 1em}"
    ".lead{font-weight:700}"
    ".ver{color:#5b6470;font-size:.85em}"
    ".langs{text-align:right;margin:0}"
    "a{color:#0b5cad}"
    "#en{margin-top:40px;padding-top:8px;border-top:4px solid #102a43}"
)
_CSS_HASH: Final = base64.b64encode(hashlib.sha256(NOTICE_CSS.encode()).digest()).decode()
NOTICE_CSP: Final = (f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; "
                     "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
NOTICE_HEADERS: Final = {
    "Content-Security-Policy": NOTICE_CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers post `Origin: null`
}


@dataclass(frozen=True)
class NoticePage:
    """The rendered page and the SHA-256 (hex) of its UTF-8 bytes."""

    html: str
    sha256: str

    @property
    def body(self) -> bytes:
        return self.html.encode("utf-8")


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html"]))


def render_page(content: NoticeContent) -> NoticePage:
    html = _environment().get_template("notice.html").render(
        c=content, css=NOTICE_CSS, purpose_ja=PURPOSE_JA, purpose_en=PURPOSE_EN,
        non_match_ja=NON_MATCH_JA, non_match_en=NON_MATCH_EN, measures=SECURITY_MEASURES,
        accredited_ja=ACCREDITED_BODY_JA, accredited_en=ACCREDITED_BODY_EN,
        accredited_contact=ACCREDITED_BODY_CONTACT,
    )
    return NoticePage(html, hashlib.sha256(html.encode("utf-8")).hexdigest())


def current_page(ctx: RegistryContext) -> NoticePage:
    """The notice as the configuration and the adopted scheme describe it right now."""
    return render_page(notice_content(ctx))

"""`GET /notice`: the public notice (G-NOT-2), for anyone, without logging in.

The page is rendered from the configuration in force on every request (the
same bytes `mamoru notice render` writes and whose SHA-256 the audit trail
records); it holds no personal data, so it is the one page besides the login
that needs no session. Japanese first, English below on the same page.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from registry.api.deps import ContextDep, allow_public
from registry.notice.page import NOTICE_HEADERS, current_page

router = APIRouter(include_in_schema=False, tags=["notice"])


@router.get("/notice")
@allow_public
def notice(ctx: ContextDep) -> HTMLResponse:
    page = current_page(ctx)
    return HTMLResponse(page.html, headers={**NOTICE_HEADERS, "ETag": f'"{page.sha256}"',
                                            "Cache-Control": "no-cache"})

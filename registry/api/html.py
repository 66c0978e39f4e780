"""HTML answers of the tablet pages: templates, the page context, and failures as pages.

`routes/pages.py` holds the routes; this module holds what they share:

- `render(request, "alerts.html", page=..., user=..., csrf_token=..., **data)` renders a
  page in the browser's language (`?lang=`, then the `mamoru_lang` cookie, then
  Japanese) with the navigation the user's role may open, and security headers
  (a strict Content-Security-Policy: the pages load nothing from elsewhere).
- `PageRoute`, the route class of the pages' router: a failure becomes a page
  with one clear line, never a stack trace or a JSON body. Not logged in (or
  the session ended): the login form, status 401. Anything else the person
  caused: the page the form belongs to, re-rendered with the message, with the
  status the JSON API would answer (403, 404, 409, 413, 422). Anything
  unexpected: status 500 and a generic line; the details go to the log only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from kernel.errors import AuthenticationError, PermissionDeniedError, RegistryError
from registry.api.deps import require_roles
from registry.api.errors import status_of
from registry.domain import Role, User
from registry.i18n import LANG_COOKIE, Lang, Translator, pick_lang
from registry.oversight.report import OVERSIGHT_ROLES, require_overseer

logger = logging.getLogger("mamoru.registry.pages")

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
STATIC: Final = Path(__file__).resolve().parent / "static"



@dataclass(frozen=True)
class NavPage:
    """A page of the navigation and who may open it.

    The one rule for both: the page's GET route is guarded by `guard()` and the
    navigation shows the page to those `opens_for` lets through, so a person is
    never offered a link that answers 403 (issue 15: a store's manager is not
    offered the chain's audit trail).
    """

    key: str  # the i18n key of its label
    href: str
    roles: tuple[Role, ...]
    check: Callable[[User], None] | None = None  # the service's further rule (its scope)

    @cached_property
    def guard(self) -> Callable[[User], User]:
        """The route guard of the page (403 for whom the nav does not offer it)."""
        return require_roles(*self.roles, check=self.check)

    def opens_for(self, user: User) -> bool:
        try:
            self.guard(user)
        except PermissionDeniedError:
            return False
        return True


# What the navigation offers, in its order; each page's GET route uses `nav_page(href).guard`.
NAV: Final[tuple[NavPage, ...]] = (
    NavPage("nav_alerts", "/alerts", (Role.STAFF, Role.MANAGER)),
    NavPage("nav_propose", "/propose", (Role.STAFF, Role.MANAGER)),
    NavPage("nav_approvals", "/approvals", (Role.STAFF, Role.MANAGER)),
    NavPage("nav_watchlist", "/watchlist", (Role.STAFF, Role.MANAGER, Role.ADMIN)),
    NavPage("nav_audit", "/audit", OVERSIGHT_ROLES, require_overseer),  # the chain office's
    NavPage("nav_requests", "/requests", (Role.MANAGER,)),  # G-DSR-1..4, G-REV-1
    NavPage("nav_incidents", "/incidents", (Role.MANAGER, Role.ADMIN)),  # G-BRE-1..4
)


def nav_page(href: str) -> NavPage:
    """The navigation's page at `href` (a route names its own page; a typo fails at import)."""
    for page in NAV:
        if page.href == href:
            return page
    raise LookupError(href)


# Notices a POST may hand to the page it redirects to (`?done=<key>`): keys, never free text.
NOTICES: Final = frozenset({
    "incident_opened_notice", "devices_disabled_notice", "triage_recorded_notice",
    "report_submitted_notice",
    "confirmed_notice", "dismissed_notice", "proposal_submitted", "approved_notice",
    "rejected_notice", "corrected_notice", "withdrawn_notice", "reoffence_notice",
    "logged_out_notice", "review_kept_notice", "request_answered_notice",
    "request_opened_notice", "request_found_notice", "request_not_found_notice",
    "request_no_face_notice", "request_refused_notice",
})

CSP: Final = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers post `Origin: null`
}


@cache
def environment() -> Environment:
    """The pages' Jinja environment: autoescaped, and an unknown variable is an error."""
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(["html"]), trim_blocks=False)


def lang_of(request: Request) -> Lang:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def home_of(user: User) -> str | None:
    """Where a person starts: the first page their navigation offers (None: no page)."""
    return next((page.href for page in NAV if page.opens_for(user)), None)


def nav_for(user: User | None) -> list[tuple[str, str]]:
    """(i18n key, href) of the pages `user` may open: their role's, within their scope."""
    if user is None:
        return []
    return [(page.key, page.href) for page in NAV if page.opens_for(user)]


def _lang_url(request: Request, lang: Lang) -> str:
    query = {k: v for k, v in request.query_params.items() if k not in ("lang", "done")}
    query["lang"] = "en" if lang == "ja" else "ja"
    return f"{request.url.path}?{urlencode(query)}"


def render(request: Request, template: str, *, page: str, user: User | None, csrf_token: str,
           status_code: int = 200, error: str | None = None, **data: Any) -> HTMLResponse:
    """A whole page (or a fragment: a template that does not extend base.html)."""
    lang = lang_of(request)
    t = Translator(lang)
    done = request.query_params.get("done")
    notice = t(done) if done in NOTICES and request.method == "GET" else None
    html = environment().get_template(template).render(
        t=t, lang=lang, lang_url=_lang_url(request, lang), user=user, nav=nav_for(user),
        active=page, csrf_token=csrf_token, error=error, notice=notice,
        badges=getattr(request.state, "nav_badges", {}), **data,
    )
    response = HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)
    chosen = request.query_params.get("lang")
    if chosen in ("ja", "en") and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True,
                            secure=True, samesite="strict", path="/")
    return response


# --- login CSRF: a form posted before any session exists -------------------------------

LOGIN_CSRF_COOKIE: Final = "mamoru_login_csrf"


def login_csrf(request: Request) -> str:
    """The browser's pre-session CSRF token (double submit), or a new one."""
    current = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return current if 20 <= len(current) <= 64 else secrets.token_urlsafe(24)


def set_login_csrf(response: Response, token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, secure=True,
                        samesite="strict", path="/login")


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (another site, a scheme) is '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(request: Request, *, status_code: int = 200, error: str | None = None,
               username: str = "", next_path: str = "/") -> HTMLResponse:
    token = login_csrf(request)
    response = render(request, "login.html", page="/login", user=None, csrf_token=token,
                      status_code=status_code, error=error, username=username,
                      next_path=safe_next(next_path))
    set_login_csrf(response, token)
    return response


# --- failures as pages -------------------------------------------------------------------

# Re-renders the page a failed request belongs to (request, page href, message, status),
# or None when it cannot; routes/pages.py supplies one through its `PageRoute` subclass.
PageRenderer = Callable[[Request, str, str, int], HTMLResponse | None]


def page_of(path: str) -> str:
    """The page (nav href) a request path belongs to: '/alerts/x/confirm' -> '/alerts'."""
    first = "/" + path.strip("/").split("/", 1)[0]
    known = {page.href for page in NAV}
    return first if first in known else "/"


def _message(request: Request, exc: Exception) -> tuple[int, str]:
    t = Translator(lang_of(request))
    if isinstance(exc, RegistryError):
        status = status_of(exc)
        if status is None:  # the server's own failure (a key, a damaged file): log only
            logger.error("%s on %s %s: %s", type(exc).__name__, request.method,
                         request.url.path, exc)
            return 500, t("err_internal")
        return status, str(exc)
    if isinstance(exc, RequestValidationError):
        fields = sorted({str(e.get("loc", ("", "?"))[-1]) for e in exc.errors()})
        return 422, f"{t('err_bad_input')} ({', '.join(fields)})"
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else t("err_bad_input")
        return exc.status_code, detail
    # The page is built after the handler's `except` has ended (`FailurePage`), so the
    # exception is passed explicitly: `logger.exception` would find none and log no trace.
    logger.error("unexpected failure on %s %s", request.method, request.url.path,
                 exc_info=exc)
    return 500, t("err_internal")


def failure_page(request: Request, exc: Exception,
                 rerender: PageRenderer | None = None) -> HTMLResponse:
    """The one clear line for a failed page request, on the page it belongs to."""
    status, message = _message(request, exc)
    if isinstance(exc, AuthenticationError):
        target = request.url.path if request.method == "GET" else page_of(request.url.path)
        return login_page(request, status_code=401, error=message, next_path=target)
    if rerender is not None and status < 500:
        try:
            rendered = rerender(request, page_of(request.url.path), message, status)
        except Exception:  # the page itself cannot be built for this person: a bare page
            logger.debug("re-rendering %s failed", request.url.path, exc_info=True)
            rendered = None
        if rendered is not None:
            return rendered
    return render(request, "error.html", page=page_of(request.url.path), user=None,
                  csrf_token="", status_code=status, error=message)


class FailurePage(Response):
    """A failure's page, rendered only when it is sent.

    The route's own dependencies (the registry's lock among them) are released
    between the handler's return and the sending of its response, so the page,
    which opens the registry again to show the person their page, is built then.
    """

    def __init__(self, request: Request, exc: Exception, rerender: PageRenderer | None) -> None:
        super().__init__(status_code=500)
        self._request, self._exc, self._rerender = request, exc, rerender

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = await run_in_threadpool(failure_page, self._request, self._exc, self._rerender)
        await page(scope, receive, send)


class PageRoute(APIRoute):
    """A route whose failures are answered as pages (see the module docstring).

    A subclass sets `rerender` to show the failure on the page it belongs to.
    """

    rerender: ClassVar[PageRenderer | None] = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        rerender = type(self).rerender

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure becomes a page; none leaks a trace
                return FailurePage(request, exc, rerender)

        return page_handler


def static_file(name: str) -> tuple[bytes, str] | None:
    """The pages' own CSS and script; nothing else is served from the folder."""
    kinds: Mapping[str, str] = {"app.css": "text/css; charset=utf-8",
                                "app.js": "text/javascript; charset=utf-8"}
    if name not in kinds:
        return None
    return (STATIC / name).read_bytes(), kinds[name]

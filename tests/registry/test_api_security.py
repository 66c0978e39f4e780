"""Every route names who may call it, refuses everyone else, and answers malformed input with 4xx.

The table of routes is read from the app itself, so a route added later is
checked without anyone remembering to add it here: anonymous callers get 401,
a person whose role the route does not allow gets 403 (a person on an edge
box's route, or a box on a person's route, 401), and the roles it allows get
past the guard. Then 1,000 malformed requests (hypothesis) across every route,
as a logged-in manager with the CSRF token, get 4xx answers without a stack
trace.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mamoru.settings import get_settings
from mamoru.wiring import index_spec, registry_paths
from models.engine import FaceEngine
from registry.accounts.sessions import conclude_login
from registry.api.app import MAX_REQUEST_BYTES
from registry.api.deps import RouteInfo, api_routes, route_roles
from registry.api.sessions import COOKIE_NAME, CSRF_HEADER
from registry.context import open_registry
from registry.domain import Role
from tests.registries import OBAMA, Registry
from tests.registry.people import Api, Clock, Person, start_app

# The login (API and page) and the pages' own style sheet and script; nothing else is open.
PUBLIC = {"POST /api/v1/session", "GET /login", "POST /login", "GET /static/{name}",
          # a member store's bundle: authenticated by its own signature (import_bundle)
          "POST /api/v1/joint-use/bundles",
          # the public notice (G-NOT-2): generated from the configuration, no personal data
          "GET /notice"}
LOGOUTS = {"DELETE /api/v1/session", "POST /logout"}  # end the caller's session
PEOPLE = {Role.ADMIN: "admin", Role.STAFF: "staff", Role.MANAGER: "mgr1",
          Role.AUDITOR: "auditor"}
HEX = "0123456789abcdef"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, registry_template: Path,
        engine_default: FaceEngine, face_data: Path) -> Iterator[Api]:
    """One registry and app for the module: everyone logs in once (argon2 is slow)."""
    data_dir = tmp_path_factory.mktemp("security") / "data"
    shutil.copytree(registry_template, data_dir)
    reg_settings = get_settings(data_dir=data_dir)
    ctx = open_registry(registry_paths(reg_settings), reg_settings.registry,
                        index_spec(reg_settings))
    reg = Registry(reg_settings, ctx, engine_default, face_data)
    clock = Clock()
    try:
        with start_app(reg, clock) as client:
            api = Api(reg, client, clock)
            entry_id = reg.register(OBAMA)
            api.alert(entry_id)
            for name in PEOPLE.values():
                api.as_(name)
            yield api
    finally:
        ctx.close()


# Who may reach each breach-response route (G-BRE-1..4); the sweep below checks the rest.
INCIDENT_ROLES = {
    "GET /incidents": {Role.MANAGER, Role.ADMIN},
    "POST /incidents": {Role.MANAGER, Role.ADMIN},
    "POST /incidents/{incident_id}/disable-devices": {Role.ADMIN},  # as `device disable`
    "POST /incidents/{incident_id}/preserve-evidence": {Role.MANAGER, Role.ADMIN},
    "POST /incidents/{incident_id}/triage": {Role.MANAGER, Role.ADMIN},
    "POST /incidents/{incident_id}/drafts/{draft}": {Role.MANAGER, Role.ADMIN},
    "POST /incidents/{incident_id}/drafts/{draft}/submitted": {Role.MANAGER, Role.ADMIN},
}


def test_the_incident_routes_name_their_roles(api: Api) -> None:
    found = {r.label: route_roles(r) for r in _routes(api) if r.path.startswith("/incidents")}
    assert found == INCIDENT_ROLES


def _routes(api: Api) -> list[RouteInfo]:
    app = api.client.app
    assert isinstance(app, FastAPI)
    return api_routes(app)


def _filled(path: str, value: str = "0" * 32) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def test_the_route_table_is_complete(api: Api) -> None:
    labels = {r.label for r in _routes(api)}
    # The table is the app's own; spot-check that it holds every family of routes.
    for expected in ("GET /api/v1/alerts", "POST /api/v1/proposals",
                     "POST /api/v1/proposals/{entry_id}/approve",
                     "GET /api/v1/watchlist/{entry_id}/evidence/{image_id}",
                     "GET /api/v1/audit/verify", "POST /api/v1/edge/alerts",
                     "DELETE /api/v1/session",
                     # the breach-response page (G-BRE-1..4): managers and admins
                     "GET /incidents", "POST /incidents",
                     "POST /incidents/{incident_id}/disable-devices",
                     "POST /incidents/{incident_id}/preserve-evidence",
                     "POST /incidents/{incident_id}/triage",
                     "POST /incidents/{incident_id}/drafts/{draft}",
                     "POST /incidents/{incident_id}/drafts/{draft}/submitted",
                     # the request desk's tablet forms (G-DSR-1..4): managers only
                     "POST /requests", "POST /requests/{request_id}/search",
                     "POST /requests/{request_id}/answer", "POST /requests/{request_id}/refuse",
                     "GET /requests/{request_id}/disclosure",
                     "GET /requests/{request_id}/disclosure/{image}"):
        assert expected in labels
    assert len(labels) >= 25


def test_every_route_refuses_the_anonymous_and_the_wrong_role(api: Api) -> None:
    checked = 0
    for route in _routes(api):
        roles = route_roles(route)
        assert roles is not None, f"{route.label} has no guard"
        if roles == "public":
            assert route.label in PUBLIC, f"{route.label} is public"
            continue
        path = _filled(route.path)
        for method in route.methods:
            anonymous = api.client.request(method, path, follow_redirects=False)
            assert _refused_anonymous(route, anonymous), (route.label, anonymous.status_code,
                                                          anonymous.text[:200])
            assert "Traceback" not in anonymous.text
            for role, name in PEOPLE.items():
                person = api.people[name]
                if route.label in LOGOUTS:
                    person = _throwaway_session(api, name)  # logging out must not end theirs
                answer = person.request(method, path, follow_redirects=False)
                if roles == "device":
                    expected = {401}  # a person's session is no device token
                elif role in roles:
                    expected = set(range(200, 500)) - {401, 403}  # past the guard
                else:
                    expected = {403}
                assert answer.status_code in expected, (route.label, name, answer.status_code,
                                                        answer.text[:200])
                assert answer.status_code < 500
                checked += 1
            if roles != "device":
                box = api.client.request(method, path, follow_redirects=False,
                                         headers={"Authorization": f"Bearer {api.box_token}"})
                assert _refused_anonymous(route, box), route.label  # a box's token is no session
    assert checked >= 100


def _refused_anonymous(route: RouteInfo, answer: httpx.Response) -> bool:
    """401 from the API; a tablet page may instead send the browser to its login page."""
    if answer.status_code == 401:
        return True
    page = not route.path.startswith("/api/")
    return (page and answer.status_code in (302, 303, 307)
            and answer.headers.get("location", "").startswith("/login"))


def _throwaway_session(api: Api, name: str) -> Person:
    """A second session for `name`, started without the (slow) password check."""
    web = api.client.app.state.host.web  # type: ignore[attr-defined]
    issued = conclude_login(api.reg.ctx, web, username=name, password_ok=True,
                            now=api.clock.now)
    return Person(api.client, name, issued.token, issued.session.csrf_token)


def test_every_https_answer_carries_hsts_and_plain_http_none(api: Api) -> None:
    """G-SEC-2: once a tablet reached the registry over HTTPS it never falls back to HTTP."""
    manager = api.people["mgr1"]
    answers = [api.client.get("/login"), api.client.get("/api/v1/session"),  # 200, 401
               manager.get("/api/v1/alerts"), manager.get("/alerts"),
               api.client.post("/api/v1/session", content=b"x" * (MAX_REQUEST_BYTES + 1)),
               api.client.get("/api/v1/edge/index/version")]
    assert {a.status_code for a in answers} >= {200, 401, 413}
    for answer in answers:
        assert answer.headers["strict-transport-security"] == "max-age=31536000", answer.url
    plain_answer = TestClient(api.client.app, base_url="http://127.0.0.1").get("/login")
    assert plain_answer.status_code == 200
    assert "strict-transport-security" not in plain_answer.headers


def test_an_auditor_never_receives_an_image(api: Api) -> None:
    image_routes = [r for r in _routes(api) if r.path.endswith(("/snapshot", "/{image_id}"))]
    assert len(image_routes) == 2
    auditor = api.people["auditor"]
    alert = api.reg.ctx.repo.alerts()[0]
    entry = api.reg.ctx.repo.entries()[0]
    image_id = api.reg.ctx.repo.evidence(entry.entry_id)[0].image_id
    urls = [f"/api/v1/alerts/{alert.alert_id}/snapshot",
            f"/api/v1/watchlist/{entry.entry_id}/evidence/{image_id}"]
    for url in urls:
        answer = auditor.get(url)
        assert answer.status_code == 403 and not answer.content.startswith(b"\x89PNG")
        assert api.people["staff"].get(url).content.startswith(b"\x89PNG")
    # Nor inside any answer the auditor may read: no embedded image, no link to one.
    for route in _routes(api):
        roles = route_roles(route)
        if isinstance(roles, frozenset) and Role.AUDITOR in roles and "GET" in route.methods:
            answer = auditor.get(_filled(route.path))
            assert answer.status_code < 500, route.label
            assert not answer.headers["content-type"].startswith("image/"), route.label
            for needle in ("iVBOR", "data:image", "/snapshot", "/evidence/"):
                assert needle not in answer.text, (route.label, needle)


# --- malformed requests ------------------------------------------------------------------

_ID = re.compile(r"^[0-9a-f-]{8,64}$")
_JUNK = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "../../etc/passwd", "0" * 65, "Z" * 32, "%00", "null", "-1",
                     "1e309", "NaN", "2026-13-45", "\u202e", "<script>", "' OR 1=1 --",
                     "a" * 3000, "😀" * 40]),
)
# Query values no route accepts: not a status or state, not a time, not a limit in 1..1000.
_BAD_QUERY = st.sampled_from(["soon", "2026-13-45T99:00", "NaN", "-1x", "\u202e",
                              "' OR 1=1 --", "deleted", "a" * 300, "1e309x"])
_BAD_LIMIT = st.sampled_from(["0", "100000", "-1", "1e309", "NaN", "ten"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
_FIELDS = ["reason", "features", "display_name", "incident", "category", "occurred_at",
           "confirmation_ref", "confirmation_kind", "damage", "description", "name",
           "username", "password",
           # the request desk's forms (G-DSR-1..4)
           "kind", "identity_method", "contact", "summary", "by_agent", "ground",
           "harm_justification"]
_CONTENT_TYPES = ["application/json", "text/plain", "multipart/form-data", "image/png",
                  "multipart/form-data; boundary=zz", "application/x-www-form-urlencoded"]


def _inputs(route: RouteInfo) -> tuple[list[str], list[str], bool]:
    dependant = route.dependant
    flat = [dependant]
    path, query, body = [], [], False
    while flat:
        d = flat.pop()
        path += [p.alias for p in d.path_params]
        query += [p.alias for p in d.query_params]
        body = body or bool(d.body_params)
        flat += d.dependencies
    if route.label == "POST /api/v1/session":
        body = True  # parsed by its own dependency
    return sorted(set(path)), sorted(set(query)), body


def _faults(route: RouteInfo, method: str) -> list[str]:
    """What can be wrong with a request to this route (a public one has no session to spoil)."""
    path_params, query_params, has_body = _inputs(route)
    faults = [] if route_roles(route) == "public" else ["cookie"]
    if method not in ("GET", "HEAD") and faults:
        faults.append("csrf")
    if path_params:
        faults.append("path")
    if query_params:
        faults.append("query")
    if has_body:
        faults += ["body", "body"]
    return faults


@st.composite
def malformed_request(draw: st.DrawFn, routes: list[RouteInfo], ids: list[str]
                      ) -> dict[str, Any]:
    """A request to some route with at least one thing wrong that the route must refuse."""
    route = draw(st.sampled_from(routes))
    method = draw(st.sampled_from(sorted(route.methods)))
    path_params, query_params, has_body = _inputs(route)
    fault = draw(st.sampled_from(_faults(route, method)))
    url = route.path
    for name in path_params:
        if fault == "path" and name == path_params[-1]:
            junk = draw(_JUNK.filter(lambda s: not _ID.match(s)))
            value = quote(junk, safe="") or "%20"
        else:
            value = draw(st.sampled_from(ids))
        url = url.replace("{" + name + "}", value)
    request: dict[str, Any] = {"method": method, "url": url, "fault": fault}
    request["params"] = {}
    if fault == "query":
        name = draw(st.sampled_from(query_params))
        request["params"] = {name: draw(_BAD_LIMIT if name == "limit" else _BAD_QUERY)}
    if has_body:
        kind = draw(st.sampled_from(["json", "fields", "raw", "form", "multipart"]))
        if kind == "json":
            request["json"] = draw(_JSON.filter(lambda v: not isinstance(v, dict)))
        elif kind == "fields":  # any fields, plus one no model has: refused (extra="forbid")
            request["json"] = {**draw(st.dictionaries(st.sampled_from(_FIELDS), _JSON,
                                                      max_size=4)), "face_embedding": [0.1]}
        elif kind == "raw":
            request["content"] = draw(st.binary(max_size=200))
            request["headers"] = {"content-type": draw(st.sampled_from(_CONTENT_TYPES))}
        else:
            request["data"] = draw(st.dictionaries(st.sampled_from(_FIELDS), st.text(max_size=20),
                                                   max_size=4))
            if kind == "multipart":
                request["files"] = [
                    (draw(st.sampled_from(["photos", "photo", "x"])),
                     (draw(st.text(max_size=12)), draw(st.binary(max_size=100)),
                      draw(st.sampled_from(["image/jpeg", "image/png", "text/plain"]))))
                    for _ in range(draw(st.integers(0, 2)))
                ]
    return request


@pytest.mark.fuzz
def test_a_thousand_malformed_requests_get_4xx_and_no_stack_trace(api: Api) -> None:
    manager = api.people["mgr1"]
    routes = [r for r in _routes(api)  # all that can be got wrong; stay logged in
              if r.label not in LOGOUTS and all(_faults(r, m) for m in r.methods)]
    entry = api.reg.ctx.repo.entries()[0]
    ids = [entry.entry_id, api.reg.ctx.repo.alerts()[0].alert_id,
           api.reg.ctx.repo.evidence(entry.entry_id)[0].image_id]
    seen: list[tuple[str, str, int]] = []

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(malformed_request(routes, ids))
    def check(request: dict[str, Any]) -> None:
        fault = request.pop("fault")
        headers = manager.headers()
        if fault == "cookie":
            headers["Cookie"] = f"{COOKIE_NAME}={manager.token[:-2]}{'x' * 3}"
        elif fault == "csrf":
            headers[CSRF_HEADER] = manager.csrf[::-1]
        headers.update(request.pop("headers", {}))
        answer = api.client.request(headers=headers, follow_redirects=False, **request)
        seen.append((fault, request["url"], answer.status_code))
        assert "Traceback" not in answer.text and 'File "' not in answer.text
        if str(request["url"]).startswith("/api/"):
            assert 400 <= answer.status_code < 500, (fault, request, answer.text[:300])
            assert answer.headers["content-type"] == "application/json"
            assert json.loads(answer.text)["detail"]
            assert len(answer.text) < 4000  # short, and the input is not echoed back
        else:  # a tablet page: refused, or sent back to its form or the login page
            assert 300 <= answer.status_code < 500, (fault, request, answer.text[:300])

    check()
    assert len(seen) == 1000
    faults = {fault for fault, _, _ in seen}
    assert faults == {"cookie", "csrf", "path", "query", "body"}
    assert len({url.split("?")[0] for _, url, _ in seen}) > 25
    assert manager.get("/api/v1/session").status_code == 200  # still logged in
    assert api.reg.ctx.audit.verify().ok

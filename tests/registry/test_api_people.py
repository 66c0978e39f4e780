"""The people's API on a real registry: sessions, lockout, CSRF, alerts, registrations, watchlist.

What store staff rely on: a login is a server-side session in a cookie no
script can read, ending when idle, after a shift, or on logout; repeated
wrong passwords lock the name; no state changes without the session's CSRF
token. What the guideline asks: a match is confirmed or dismissed by a
trained person and counted in the precision figure; a dismissed visitor's
snapshot is erased; nobody approves their own proposal (G-REG-2); photos are
checked before anything is stored (G-REG-1); auditors never see a face.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from datetime import timedelta

import cv2
import numpy as np
import pytest

from kernel.errors import RuleViolationError
from registry.accounts.sessions import LOGIN_REFUSED, TOUCH_INTERVAL
from registry.accounts.users import disable_user
from registry.api.app import MAX_UPLOAD_REQUEST_BYTES
from registry.api.html import LOGIN_CSRF_COOKIE
from registry.api.sessions import COOKIE_NAME
from registry.api.uploads import MAX_PHOTO_BYTES
from registry.audit.trail import Action
from registry.domain import AlertStatus, EntryState
from registry.watchlist import entries as watchlist
from tests.registries import BIDEN, GROUP, NO_FACE, OBAMA, OBAMA2, PASSWORD, T0, Registry
from tests.registry.people import (
    BASE_URL,
    NOW,
    Api,
    Clock,
    jpeg_bytes,
    log_in,
    png_bytes,
    start_app,
)

SESSION = "/api/v1/session"
INCIDENT = {"category": "theft", "occurred_at": "2026-01-15T10:00:00+09:00",
            "confirmation_ref": "被害届-2026-0099", "damage": "2 items",
            "description": "left without paying"}


@pytest.fixture
def api(registry: Registry) -> Iterator[Api]:
    clock = Clock()
    with start_app(registry, clock) as client:
        yield Api(registry, client, clock)


def _form(**overrides: str) -> dict[str, str]:
    return {**{k: v for k, v in INCIDENT.items()}, "features": "navy cap", **overrides}


def _photo(name: str, data: bytes, kind: str = "image/jpeg") -> tuple[str, tuple[str, bytes, str]]:
    return ("photos", (name, data, kind))


# --- login, session, logout --------------------------------------------------------


def test_login_sets_a_strict_server_side_session_cookie(api: Api) -> None:
    answer = api.client.post(SESSION, json={"username": "staff", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["username"], body["role"], body["trained"]) == ("staff", "staff", True)
    assert len(body["csrf_token"]) >= 43
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "path"} <= attributes, cookie
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    token = answer.cookies[COOKIE_NAME]
    # The browser's jar sends it back (https): who am I, with the same CSRF token.
    me = api.client.get(SESSION)
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]
    # The server keeps only the token's hash.
    rows = api.reg.ctx.repo.connection.execute("SELECT * FROM web_sessions").fetchall()
    assert len(rows) == 1 and token not in repr(rows)
    # A form login works the same way (the tablet's login page).
    api.client.cookies.clear()
    form = api.client.post(SESSION, data={"username": "mgr1", "password": PASSWORD},
                           headers={"Origin": BASE_URL})  # as a browser posts it
    assert form.status_code == 200 and form.json()["role"] == "manager"
    login_rows = [r for r in api.reg.ctx.repo.audit_rows() if r.action == Action.LOGIN.value]
    assert [r.actor for r in login_rows] == ["staff", "mgr1"]
    assert all(PASSWORD not in r.details for r in api.reg.ctx.repo.audit_rows())


def test_a_login_from_another_site_s_page_is_refused(api: Api) -> None:
    """Login CSRF: a browser's login must come from the registry's own page.

    A browser sends `Origin` with every POST: a missing one is refused for a
    form (or any body a page elsewhere could post), `null` (a sandboxed or
    file: page) and a foreign one always. A JSON body needs a CORS preflight
    the app never grants, so only a non-browser client (a script) sends one
    without `Origin`.
    """
    creds = {"username": "staff", "password": PASSWORD}
    as_text = json.dumps(creds)
    refused = [
        api.client.post(SESSION, json=creds, headers={"Origin": "null"}),
        api.client.post(SESSION, json=creds, headers={"Origin": "https://evil.example"}),
        api.client.post(SESSION, data=creds),  # a form without Origin
        api.client.post(SESSION, data=creds, headers={"Origin": "null"}),
        api.client.post(SESSION, content=as_text, headers={"Content-Type": "text/plain"}),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert COOKIE_NAME not in answer.headers.get("set-cookie", "")
    api.client.cookies.clear()
    assert api.client.post(SESSION, data=creds, headers={"Origin": BASE_URL}).status_code == 200
    api.client.cookies.clear()
    assert api.client.post(SESSION, json=creds).status_code == 200  # a script, not a browser
    api.client.cookies.clear()
    # The tablet's login form alike.
    page = api.client.get("/login")
    token = page.cookies.get(LOGIN_CSRF_COOKIE)
    assert token
    form = {**creds, "csrf_token": token}
    for origin in (None, "null", "https://evil.example"):
        headers = {"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}
        if origin is not None:
            headers["Origin"] = origin
        answer = api.client.post("/login", data=form, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, (origin, answer.status_code)
        assert COOKIE_NAME not in answer.headers.get("set-cookie", "")
    answer = api.client.post("/login", data=form, follow_redirects=False,
                             headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={token}",
                                      "Origin": BASE_URL})
    assert answer.status_code == 303, answer.text


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(api: Api) -> None:
    answers = [
        api.client.post(SESSION, json={"username": "staff", "password": "wrong password!"}),
        api.client.post(SESSION, json={"username": "nobody", "password": PASSWORD}),
        api.client.post(SESSION, data={"username": "staff", "password": "x"},
                        headers={"Origin": BASE_URL}),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json() == {"detail": LOGIN_REFUSED}
        assert COOKIE_NAME not in answer.headers.get("set-cookie", "")
    for body in ({"username": "staff"}, {"username": "", "password": ""}, [1, 2], "x"):
        assert api.client.post(SESSION, json=body).status_code == 422
    assert api.client.post(SESSION, content=b"\xff{", headers={
        "content-type": "application/json"}).status_code == 422


def test_five_failures_lock_the_name_even_against_the_right_password(api: Api) -> None:
    for _ in range(5):
        assert api.client.post(SESSION, json={"username": "mgr2",
                                              "password": "guess guess guess"}).status_code == 401
    locked = api.client.post(SESSION, json={"username": "mgr2", "password": PASSWORD})
    assert locked.status_code == 401
    assert locked.json() == {"detail": LOGIN_REFUSED}  # says nothing about the lock
    [record] = [r for r in api.reg.ctx.repo.audit_rows()
                if r.action == Action.LOGIN_LOCKED.value]
    details = json.loads(record.details)
    assert details == {"user": "mgr2", "known_user": True, "failures": 5, "locked_minutes": 15}
    assert "guess" not in record.details
    # Others are not affected; the typed names are kept only as hashes.
    assert log_in(api.client, "mgr1").username == "mgr1"
    rows = api.reg.ctx.repo.connection.execute("SELECT * FROM login_failures").fetchall()
    assert "mgr2" not in repr(rows)
    api.clock.advance(minutes=14)
    assert api.client.post(SESSION, json={"username": "mgr2",
                                          "password": PASSWORD}).status_code == 401
    api.clock.advance(minutes=2)  # the lock ran out
    assert log_in(api.client, "mgr2").username == "mgr2"
    assert api.audit_actions().count(Action.LOGIN_LOCKED.value) == 1


def test_a_session_ends_when_idle_and_after_a_shift(api: Api) -> None:
    staff = api.as_("staff")
    api.clock.advance(minutes=14)
    assert staff.get(SESSION).status_code == 200  # used: the idle clock restarts
    api.clock.advance(minutes=14)
    assert staff.get(SESSION).status_code == 200
    api.clock.advance(minutes=16)
    ended = staff.get(SESSION)
    assert ended.status_code == 401 and "log in again" in ended.json()["detail"]
    assert staff.get(SESSION).status_code == 401  # deleted, not merely refused once

    busy = log_in(api.client, "mgr1")
    for _ in range(34):  # 14-minute steps: never idle, but 8 hours pass
        api.clock.advance(minutes=14)
        assert busy.get(SESSION).status_code == 200
    api.clock.advance(minutes=14)
    assert api.clock.now - NOW > timedelta(hours=8)
    assert busy.get(SESSION).status_code == 401


def test_the_idle_timeout_never_ends_a_session_early(api: Api) -> None:
    """A request within a minute of the last recorded use is not written down (TOUCH_INTERVAL);
    the session still lasts the full idle time after it, and at most a minute longer."""
    idle = timedelta(minutes=api.reg.settings.web.session_idle_minutes)
    staff = api.as_("staff")
    api.clock.advance(seconds=59)
    assert staff.get(SESSION).status_code == 200  # used, but not written down
    api.clock.advance(seconds=idle.total_seconds() - 1)
    assert staff.get(SESSION).status_code == 200  # idle for 1 s less than the limit
    # That request was written down: from here the limit counts again, and ends in time.
    api.clock.advance(seconds=idle.total_seconds() + TOUCH_INTERVAL.total_seconds() - 1)
    assert staff.get(SESSION).status_code == 200
    api.clock.advance(seconds=idle.total_seconds() + TOUCH_INTERVAL.total_seconds())
    assert staff.get(SESSION).status_code == 401
    # Another person's login sweeps stale sessions by the same arithmetic.
    other = api.as_("mgr1")
    api.clock.advance(seconds=59)
    assert other.get(SESSION).status_code == 200
    api.clock.advance(seconds=idle.total_seconds() - 1)
    log_in(api.client, "mgr2")
    assert other.get(SESSION).status_code == 200


def test_logout_needs_the_csrf_token_and_ends_the_session(api: Api) -> None:
    staff = api.as_("staff")
    assert staff.delete(SESSION, csrf=False).status_code == 403
    answer = staff.delete(SESSION)
    assert answer.status_code == 204
    assert COOKIE_NAME in answer.headers["set-cookie"]
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    assert staff.get(SESSION).status_code == 401
    assert api.reg.ctx.repo.connection.execute(
        "SELECT count(*) FROM web_sessions").fetchone()[0] == 0
    assert api.audit_actions()[-1] == Action.LOGOUT.value


def test_a_disabled_user_is_logged_out_at_once(api: Api) -> None:
    staff = api.as_("staff")
    assert staff.get("/api/v1/alerts").status_code == 200
    disable_user(api.reg.ctx.repo, api.reg.ctx.audit, admin=api.reg.user("admin"),
                 username="staff", now=T0)
    assert staff.get("/api/v1/alerts").status_code == 401


def test_state_changes_need_the_session_s_own_csrf_token(api: Api) -> None:
    entry_id = api.reg.register(OBAMA)
    alert_id = api.alert(entry_id)
    staff, manager = api.as_("staff"), api.as_("mgr1")
    url = f"/api/v1/alerts/{alert_id}/confirm"
    refused = [
        staff.post(url, json={"reason": ""}, csrf=False),
        staff.post(url, json={"reason": ""}, csrf=False, headers={"X-CSRF-Token": "x" * 43}),
        staff.post(url, json={"reason": ""}, csrf=False,
                   headers={"X-CSRF-Token": manager.csrf}),  # another session's token
        staff.post(url, data={"reason": ""}, csrf=False),  # a form without the field
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert "CSRF" in answer.json()["detail"]
    assert api.reg.ctx.repo.alert(alert_id).status is AlertStatus.OPEN  # type: ignore[union-attr]
    # As a form field (the tablet's forms): accepted.
    photo = jpeg_bytes(api.reg.image(BIDEN))
    without = staff.post("/api/v1/proposals", csrf=False, data=_form(),
                         files=[_photo("biden.jpg", photo)])
    assert without.status_code == 403
    with_field = staff.post("/api/v1/proposals", csrf=False,
                            data=_form(csrf_token=staff.csrf), files=[_photo("biden.jpg", photo)])
    assert with_field.status_code == 201, with_field.text
    assert staff.post(url, json={"reason": "it is him"}).status_code == 200


# --- alerts --------------------------------------------------------------------------


def test_staff_confirm_and_dismiss_alerts_and_the_precision_figure_follows(api: Api) -> None:
    entry_id = api.reg.register(OBAMA)
    first, second, third = (api.alert(entry_id) for _ in range(3))
    staff, manager = api.as_("staff"), api.as_("mgr1")
    figure = staff.get("/api/v1/alerts/precision").json()
    assert figure["store_id"] == api.reg.settings.registry.store_id
    assert (figure["confirmed"], figure["dismissed"], figure["open"]) == (0, 0, 3)
    assert figure["precision"] is None

    listed = staff.get("/api/v1/alerts", params={"status": "open"}).json()
    assert {a["alert_id"] for a in listed} == {first, second, third}
    shown = next(a for a in listed if a["alert_id"] == first)
    assert shown["has_snapshot"] and shown["entry_id"] == entry_id
    assert shown["entry_evidence_images"]
    assert shown["score"] == pytest.approx(0.71) and shown["threshold"] == pytest.approx(0.363)
    snapshot = staff.get(f"/api/v1/alerts/{first}/snapshot")
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/png"
    decoded = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, api.reg.image(OBAMA2))  # kept pixel-exact

    confirmed = staff.post(f"/api/v1/alerts/{first}/confirm", json={"reason": "it is him"})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["decided_by"]) == ("confirmed", "staff")
    assert staff.get("/api/v1/alerts/precision").json()["precision"] == 1.0

    no_reason = manager.post(f"/api/v1/alerts/{second}/dismiss", json={"reason": "  "})
    assert no_reason.status_code == 422 and "why" in no_reason.json()["detail"]
    dismissed = manager.post(f"/api/v1/alerts/{second}/dismiss",
                             json={"reason": "a different person"})
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    assert not dismissed.json()["has_snapshot"]
    # The wrongly matched visitor leaves no picture behind.
    assert staff.get(f"/api/v1/alerts/{second}/snapshot").status_code == 404
    figure = manager.get("/api/v1/alerts/precision").json()
    assert (figure["confirmed"], figure["dismissed"], figure["open"]) == (1, 1, 1)
    assert figure["precision"] == 0.5
    assert figure["by_device"] == [{"device": "box-1", "confirmed": 1, "dismissed": 1,
                                    "open": 1, "precision": 0.5}]

    again = staff.post(f"/api/v1/alerts/{first}/dismiss", json={"reason": "changed my mind"})
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]
    untrained = api.as_("untrained").post(f"/api/v1/alerts/{third}/confirm", json={})
    assert untrained.status_code == 403 and "training" in untrained.json()["detail"]
    assert staff.post(f"/api/v1/alerts/{'0' * 32}/confirm", json={}).status_code == 404
    decisions = [(r.actor, r.action, json.loads(r.details)) for r in api.reg.ctx.repo.audit_rows()
                 if r.action in (Action.ALERT_CONFIRMED.value, Action.ALERT_DISMISSED.value)]
    assert [(a, act) for a, act, _ in decisions] == [("staff", "alert_confirmed"),
                                                     ("mgr1", "alert_dismissed")]
    assert decisions[1][2]["snapshot_erased"] is True


# --- registrations --------------------------------------------------------------------


def test_propose_from_photos_then_only_another_manager_approves(api: Api) -> None:
    staff, mgr1, mgr2 = api.as_("staff"), api.as_("mgr1"), api.as_("mgr2")
    files = [_photo("obama.jpg", jpeg_bytes(api.reg.image(OBAMA))),
             _photo("group.png", png_bytes(api.reg.image(GROUP)), "image/png")]
    proposed = staff.post("/api/v1/proposals", data=_form(name="山田太郎"), files=files)
    assert proposed.status_code == 201, proposed.text
    entry_id = proposed.json()["entry_id"]
    assert proposed.json()["templates"] >= 1

    pending = {p["entry_id"]: p for p in staff.get("/api/v1/proposals").json()}
    assert pending[entry_id]["proposed_by"] == "staff"
    assert pending[entry_id]["approvable_by_me"] is False  # staff never approve
    refused = staff.post(f"/api/v1/proposals/{entry_id}/approve", json={"reason": "ok"})
    assert refused.status_code == 403

    own = mgr1.post("/api/v1/proposals", data=_form(), files=[
        _photo("biden.jpg", jpeg_bytes(api.reg.image(BIDEN)))])
    assert own.status_code == 201, own.text
    own_id = own.json()["entry_id"]
    mine = {p["entry_id"]: p for p in mgr1.get("/api/v1/proposals").json()}
    assert mine[own_id]["approvable_by_me"] is False
    assert "different manager" in mine[own_id]["not_approvable_because"]
    assert mine[entry_id]["approvable_by_me"] is True
    self_approval = mgr1.post(f"/api/v1/proposals/{own_id}/approve",
                              json={"reason": "police report checked"})
    assert self_approval.status_code == 403
    assert "G-REG-2" in self_approval.json()["detail"]
    assert "\n" not in self_approval.json()["detail"]

    no_reason = mgr2.post(f"/api/v1/proposals/{own_id}/approve", json={"reason": ""})
    assert no_reason.status_code == 422
    approved = mgr2.post(f"/api/v1/proposals/{own_id}/approve",
                         json={"reason": "police report checked"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "active" and approved.json()["decided_by"] == "mgr2"
    assert approved.json()["expires_at"] is not None
    twice = mgr2.post(f"/api/v1/proposals/{own_id}/approve", json={"reason": "again"})
    assert twice.status_code == 409
    rejected = mgr2.post(f"/api/v1/proposals/{entry_id}/reject", json={"reason": "unclear"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert rejected.json()["display_name"] == "" and rejected.json()["evidence_images"] == []


def test_a_proposer_cannot_reject_their_own_proposal(api: Api) -> None:
    """G-REG-2: the decision on a proposal, either way, is a second person's (README: 403)."""
    mgr1, mgr2 = api.as_("mgr1"), api.as_("mgr2")
    own = mgr1.post("/api/v1/proposals", data=_form(), files=[
        _photo("biden.jpg", jpeg_bytes(api.reg.image(BIDEN)))])
    assert own.status_code == 201, own.text
    own_id = own.json()["entry_id"]
    refused = mgr1.post(f"/api/v1/proposals/{own_id}/reject", json={"reason": "changed my mind"})
    assert refused.status_code == 403, refused.text
    assert "G-REG-2" in refused.json()["detail"]
    assert api.reg.ctx.repo.entry(own_id).state is EntryState.PROPOSED  # type: ignore[union-attr]
    # The tablet's form goes through the same rule.
    form = mgr1.post(f"/approvals/{own_id}/reject", data={"reason": "changed my mind"},
                     follow_redirects=False)
    assert form.status_code == 403
    assert api.reg.ctx.repo.entry(own_id).state is EntryState.PROPOSED  # type: ignore[union-attr]
    rejected = mgr2.post(f"/api/v1/proposals/{own_id}/reject", json={"reason": "unclear"})
    assert rejected.status_code == 200, rejected.text


UNSAFE_TEXT = ("ok\x1b]0;owned\x07", "ok\x9b2J", "ok\u202egnp.exe", "ok\x00")


def test_free_text_obeys_one_rule_whichever_way_it_comes_in(api: Api) -> None:
    """Control characters are refused alike by the JSON API, the tablet's forms and the
    services (the CLI and joint use); text is stored NFC-normalised and trimmed."""
    entry_id = api.reg.register(OBAMA, features="navy cap")
    manager = api.as_("mgr1")
    url = f"/api/v1/watchlist/{entry_id}/correct"
    for bad in UNSAFE_TEXT:
        for fields in ({"features": bad}, {"display_name": bad}, {"reason": bad, "features": "x"}):
            body = {"reason": "typo", **fields}
            as_json = manager.post(url, json=body)
            assert as_json.status_code == 422, (fields, as_json.text)
            as_form = manager.post(f"/watchlist/{entry_id}/correct", data=body,
                                   follow_redirects=False)
            assert as_form.status_code == 422, (fields, as_form.status_code)
        with pytest.raises(RuleViolationError, match="control character"):
            watchlist.correct(api.reg.ctx, actor=api.reg.user("mgr2"), entry_id=entry_id,
                              reason="typo", now=NOW, features=bad)
    surrogate = manager.post(url, content=b'{"reason": "typo", "features": "ok\\ud800"}',
                             headers={"Content-Type": "application/json"})
    assert surrogate.status_code == 422, surrogate.text
    one_line = manager.post(url, json={"reason": "typo", "display_name": "a\nb"})
    assert one_line.status_code == 422 and "one line" in one_line.text
    one_line = manager.post(f"/watchlist/{entry_id}/correct", follow_redirects=False,
                            data={"reason": "typo", "display_name": "a\r\nb"})
    assert one_line.status_code == 422
    entry = api.reg.ctx.repo.entry(entry_id)
    assert entry is not None and (entry.features, entry.revision) == ("navy cap", 1)

    decomposed = unicodedata.normalize("NFD", "ガッツ")  # as some keyboards send it
    assert decomposed != "ガッツ"
    done = manager.post(f"/watchlist/{entry_id}/correct", follow_redirects=False,
                        data={"reason": "typo", "features": f" 紺の帽子\r\n{decomposed} ",
                              "display_name": decomposed})
    assert done.status_code == 303, done.text
    entry = api.reg.ctx.repo.entry(entry_id)
    assert entry is not None
    assert (entry.features, entry.display_name) == ("紺の帽子\nガッツ", "ガッツ")
    # An incident's text on the tablet's propose form follows the same rule.
    photo = jpeg_bytes(api.reg.image(BIDEN))
    proposals = len(api.reg.ctx.repo.entries())
    for field in ("damage", "description", "confirmation_ref"):
        refused = api.as_("staff").post("/propose", data=_form(**{field: "x\x1b[8m"}),
                                        files=[_photo("biden.jpg", photo)],
                                        follow_redirects=False)
        assert refused.status_code == 422, (field, refused.status_code)
    assert len(api.reg.ctx.repo.entries()) == proposals


def test_uploads_that_are_not_images_or_too_large_get_a_clear_4xx(api: Api) -> None:
    staff = api.as_("staff")
    good = jpeg_bytes(api.reg.image(OBAMA))
    files_before = api.reg.evidence_files()

    def propose(*files: tuple[str, tuple[str, bytes, str]]) -> tuple[int, str]:
        answer = staff.post("/api/v1/proposals", data=_form(), files=list(files))
        assert "Traceback" not in answer.text
        return answer.status_code, answer.json()["detail"]

    status, detail = propose(_photo("notes.txt", b"this is not a photo", "text/plain"))
    assert status == 422 and "notes.txt: not an image" in detail
    status, detail = propose(_photo("fake.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 500))
    assert status == 422 and "not an image" in detail
    huge = good + bytes(MAX_PHOTO_BYTES)  # a real JPEG, padded past the limit
    status, detail = propose(_photo("huge.jpg", huge))
    assert status == 413 and "huge.jpg: too large" in detail
    bomb = cv2.imencode(".png", np.zeros((8000, 6000), np.uint8))[1].tobytes()  # 48 Mpx
    assert len(bomb) < MAX_PHOTO_BYTES
    status, detail = propose(_photo("bomb.png", bomb, "image/png"))
    assert status == 413 and "pixels" in detail
    status, detail = propose(*[_photo(f"p{i}.jpg", good) for i in range(6)])
    assert status == 422 and "at most 5 photos" in detail
    status, detail = propose(_photo("mountain.jpg", jpeg_bytes(api.reg.image(NO_FACE))))
    assert status == 422 and "quality gate" in detail and "no face found" in detail
    assert staff.post("/api/v1/proposals", data=_form()).status_code == 422  # no photo at all
    too_big_body = staff.post("/api/v1/proposals", content=b"x" * (MAX_UPLOAD_REQUEST_BYTES + 1),
                              headers={"content-type": "multipart/form-data; boundary=x"})
    assert too_big_body.status_code == 413
    bad_date = staff.post("/api/v1/proposals", data=_form(occurred_at="last tuesday"),
                          files=[_photo("obama.jpg", good)])
    assert bad_date.status_code == 422 and "occurred_at" in bad_date.json()["detail"]
    future = staff.post("/api/v1/proposals", data=_form(occurred_at="2027-01-01"),
                        files=[_photo("obama.jpg", good)])
    assert future.status_code == 422 and "future" in future.json()["detail"]
    assert api.reg.evidence_files() == files_before
    assert api.reg.ctx.repo.entries() == []


def test_the_quality_verdict_is_shown_before_submitting(api: Api) -> None:
    staff = api.as_("staff")
    photo = jpeg_bytes(api.reg.image(OBAMA))
    good = staff.post("/api/v1/quality-check", files={"photo": ("obama.jpg", photo, "image/jpeg")})
    assert good.status_code == 200, good.text
    verdict = good.json()
    assert verdict["passed"] is True and verdict["reasons"] == [] and verdict["faces"] == 1
    assert verdict["metrics"]["face_px"] >= 64
    group = staff.post("/api/v1/quality-check",
                       files={"photo": ("g.png", png_bytes(api.reg.image(GROUP)), "image/png")})
    assert group.json()["bystanders_masked"] == group.json()["faces"] - 1 >= 1
    tiny = cv2.resize(api.reg.image(OBAMA), None, fx=0.15, fy=0.15)
    small = staff.post("/api/v1/quality-check",
                       files={"photo": ("small.jpg", jpeg_bytes(tiny), "image/jpeg")}).json()
    assert small["passed"] is False and small["reasons"]
    none = staff.post("/api/v1/quality-check", files={
        "photo": ("m.jpg", jpeg_bytes(api.reg.image(NO_FACE)), "image/jpeg")}).json()
    assert none == {"passed": False, "reasons": ["no face found"], "faces": 0,
                    "bystanders_masked": 0, "metrics": {}}
    assert staff.post("/api/v1/quality-check", files={
        "photo": ("x.gif", b"GIF89a" + b"\0" * 20, "image/gif")}).status_code == 422
    assert api.reg.ctx.repo.entries() == []


def test_propose_from_an_alert_takes_the_matched_face(api: Api) -> None:
    entry_id = api.reg.register(OBAMA)
    alert_id = api.alert(entry_id, snapshot=OBAMA2)
    staff = api.as_("staff")
    answer = staff.post(f"/api/v1/proposals/from-alert/{alert_id}",
                        json={"incident": INCIDENT, "features": "grey suit"})
    assert answer.status_code == 201, answer.text
    new_id = answer.json()["entry_id"]
    assert new_id != entry_id and answer.json()["templates"] == 1
    entry = api.reg.ctx.repo.entry(new_id)
    assert entry is not None and entry.state is EntryState.PROPOSED
    [template] = api.reg.ctx.repo.templates(new_id)
    vector = np.frombuffer(template.vector, dtype=np.float32)
    assert float(vector @ api.reg.embedding(OBAMA2)) > 0.9  # the face in the snapshot
    bad = staff.post(f"/api/v1/proposals/from-alert/{alert_id}",
                     json={"incident": {**INCIDENT, "confirmation_ref": ""}})
    assert bad.status_code == 422
    missing = staff.post(f"/api/v1/proposals/from-alert/{'a' * 32}", json={"incident": INCIDENT})
    assert missing.status_code == 404


# --- watchlist and audit ------------------------------------------------------------------


def test_the_watchlist_for_staff_and_managers_never_its_faces_for_auditors(api: Api) -> None:
    entry_id = api.reg.register(OBAMA, display_name="山田太郎")
    staff, manager, auditor = api.as_("staff"), api.as_("mgr1"), api.as_("auditor")
    [listed] = staff.get("/api/v1/watchlist", params={"state": "active"}).json()
    assert listed["entry_id"] == entry_id and listed["state"] == "active"
    assert listed["incidents"][0]["confirmation_ref"] == "被害届-2026-0042"
    image_id = listed["evidence_images"][0]
    evidence = staff.get(f"/api/v1/watchlist/{entry_id}/evidence/{image_id}")
    assert evidence.status_code == 200 and evidence.content.startswith(b"\x89PNG")
    assert auditor.get(f"/api/v1/watchlist/{entry_id}/evidence/{image_id}").status_code == 403
    assert auditor.get("/api/v1/watchlist").status_code == 403
    other = api.reg.register(BIDEN)
    assert staff.get(f"/api/v1/watchlist/{other}/evidence/{image_id}").status_code == 404

    assert staff.post(f"/api/v1/watchlist/{entry_id}/correct",
                      json={"reason": "typo", "features": "red cap"}).status_code == 403
    corrected = manager.post(f"/api/v1/watchlist/{entry_id}/correct",
                             json={"reason": "typo", "features": "red cap"})
    assert corrected.status_code == 200 and corrected.json()["features"] == "red cap"
    assert manager.post(f"/api/v1/watchlist/{entry_id}/correct",
                        json={"reason": "typo"}).status_code == 422
    expires = corrected.json()["expires_at"]
    later = manager.post(f"/api/v1/watchlist/{entry_id}/reoffence",
                         json={**INCIDENT, "occurred_at": "2026-01-19"})
    assert later.status_code == 200, later.text
    assert later.json()["expires_at"] > expires and len(later.json()["incidents"]) == 2
    withdrawn = manager.post(f"/api/v1/watchlist/{entry_id}/withdraw",
                             json={"reason": "misidentified"})
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    assert withdrawn.json()["evidence_images"] == []
    assert manager.post(f"/api/v1/watchlist/{entry_id}/withdraw",
                        json={"reason": "again"}).status_code == 409
    assert staff.get(f"/api/v1/watchlist/{entry_id}/evidence/{image_id}").status_code == 404


def test_auditors_read_the_trail_without_a_face_or_a_name(api: Api) -> None:
    entry_id = api.reg.register(OBAMA, display_name="山田太郎", features="navy cap")
    alert_id = api.alert(entry_id)
    api.as_("staff").post(f"/api/v1/alerts/{alert_id}/confirm", json={"reason": "him"})
    auditor = api.as_("auditor")
    report = auditor.get("/api/v1/audit/report",
                         params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert report.status_code == 200, report.text
    counts = report.json()
    assert counts["approvals"] == 1 and counts["alerts_confirmed"] == 1
    assert counts["alerts_received"] == 1
    verify = auditor.get("/api/v1/audit/verify").json()
    assert verify["ok"] is True and verify["problem"] is None and verify["records"] > 5
    records = auditor.get("/api/v1/audit/records", params={"limit": 500}).json()
    assert records[0]["seq"] > records[-1]["seq"]
    text = json.dumps([report.json(), verify, records], ensure_ascii=False)
    for secret in ("山田太郎", "navy cap", PASSWORD):
        assert secret not in text
    assert auditor.get("/api/v1/audit/report", params={"from": "2026-02-01",
                                                       "to": "2026-01-01"}).status_code == 422
    assert auditor.get("/api/v1/audit/report", params={"from": "soon"}).status_code == 422
    assert api.as_("staff").get("/api/v1/audit/verify").status_code == 403


# --- rate limits ----------------------------------------------------------------------


def test_too_many_requests_from_one_address_get_429(registry: Registry) -> None:
    clock = Clock()
    with start_app(registry, clock, login_rate_limit_per_minute=3,
                   rate_limit_per_minute=5) as client:
        wrong = {"username": "staff", "password": "not it at all"}
        assert [client.post(SESSION, json=wrong).status_code for _ in range(3)] == [401] * 3
        limited = client.post(SESSION, json={"username": "staff", "password": PASSWORD})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "too many" in limited.json()["detail"]
        statuses = [client.get(SESSION).status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429]

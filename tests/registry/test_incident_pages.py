"""The breach-response tablet page (G-BRE-1..4) and the stop-use marks it leaves (G-BRE-4).

The real app on a real registry with registered faces and a fixed clock: a
manager records an incident through the form, preserves evidence, records the
rule-7 test, sees the 速報/確報 deadlines flagged within a day and past, and
downloads the preliminary report with every item of the Commission's form.
Staff and auditors are refused; every step lands in the audit trail. After a
reportable leak the affected persons' stop-use right shows on the entry's
view, the watchlist page and the request desk.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from registry.accounts import devices
from registry.audit.trail import Action
from registry.breach import incident as breach
from registry.breach.report import FORM_ITEMS
from tests.registries import BIDEN, OBAMA, T0, Registry
from tests.registry.people import Api, Clock, Person, start_app

# 10:00 in Japan on 2026-03-10. Discovered 09:30 that day (store time): day 1 = 03-10,
# 速報 due day 5 = 03-14, 確報 day 30 = 04-08, or day 60 = 05-08 when malicious (3号).
OPENED = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
FORM = {"discovered_at": "2026-03-10T09:30", "discovered_by": "店長 佐藤",
        "how": "バックヤードのNVRボックスが開店時に見当たらない", "summary": "ボックスの盗難"}


@pytest.fixture
def api(registry: Registry) -> Iterator[Api]:
    clock = Clock(OPENED)
    with start_app(registry, clock) as client:
        yield Api(registry, client, clock)


def _open(manager: Person) -> str:
    answer = manager.post("/incidents", data=FORM, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:500]
    found = re.search(r"#incident-(BR-\d{8}-[0-9a-f]{6})$", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def _row(html: str, incident_id: str, report: str) -> str:
    """The opening tag of one deadline's row (its class says whether it is flagged)."""
    found = re.search(rf'<tr id="deadline-{incident_id}-{report}"[^>]*>', html)
    assert found, (report, html[:2000])
    return found.group(0)


def _later(api: Api, now: datetime) -> Person:
    """The manager, logged in again at `now` (a session does not outlive a shift)."""
    api.clock.now = now
    api.people.clear()
    return api.as_("mgr1")


def _breach_steps(api: Api) -> list[str]:
    return [r.action for r in api.reg.ctx.repo.audit_rows() if r.action.startswith("breach_")]


def _audit(api: Api, action: Action) -> list[dict[str, object]]:
    return [json.loads(r.details) for r in api.reg.ctx.repo.audit_rows()
            if r.action == action.value]


def test_a_manager_runs_the_incident_from_the_tablet(api: Api) -> None:
    """G-BRE-1..4 end to end through the forms, deadlines for a fixed clock, audit trail."""
    obama, biden = api.reg.register(OBAMA), api.reg.register(BIDEN)
    devices.add_device(api.reg.ctx, admin=api.reg.user("admin"), name="box-1", now=T0)
    manager, admin = api.as_("mgr1"), api.as_("admin")
    assert 'href="/incidents"' in manager.get("/alerts").text  # the nav offers it

    incident_id = _open(manager)
    incident = breach.get_incident(api.reg.ctx, incident_id)
    assert incident.discovered_at == datetime(2026, 3, 10, 0, 30, tzinfo=UTC)  # store time
    assert (incident.discovered_by, incident.counts.entries) == ("店長 佐藤", 2)
    page = manager.get("/incidents").text
    assert incident_id in page and "該当性 未判断" in page
    assert "deadline-warn" not in _row(page, incident_id, "preliminary")  # 4 days left

    # Containment: evidence sealed and handed over; the devices need an admin.
    sealed = manager.post(f"/incidents/{incident_id}/preserve-evidence")
    assert sealed.status_code == 200, sealed.text[:300]
    assert sealed.headers["content-disposition"].startswith(f'attachment; filename="{incident_id}')
    with tarfile.open(fileobj=io.BytesIO(sealed.content)) as tar:
        assert {"audit.jsonl", "chain.json"} <= set(tar.getnames())
    recorded = _audit(api, Action.BREACH_CONTAINMENT)[-1]
    assert recorded["sha256"] == hashlib.sha256(sealed.content).hexdigest()
    assert manager.post(f"/incidents/{incident_id}/disable-devices").status_code == 403
    done = admin.post(f"/incidents/{incident_id}/disable-devices", follow_redirects=False)
    assert done.status_code == 303
    assert not any(d.active for d in api.reg.ctx.repo.devices())
    page = manager.get("/incidents").text
    assert f"mamoru incident contain {incident_id} --step rotate-key" in page  # CLI only
    assert f"mamoru incident contain {incident_id} --step stop-edge" in page

    # The rule-7 test, posted as the form does (CSRF in the form field, not the header).
    triaged = manager.post(f"/incidents/{incident_id}/triage", csrf=False,
                           data={"csrf_token": manager.csrf, "ground": ["sensitive", "malicious"],
                                 "reason": "盗難（不正の目的）、犯罪の経歴を推知させうる記録"},
                           follow_redirects=False)
    assert triaged.status_code == 303, triaged.text[:300]
    assert breach.get_incident(api.reg.ctx, incident_id).deadlines.final.isoformat() \
        == "2026-05-08"

    # Three days on (03-13 in Japan): the 速報 is due tomorrow, flagged; the 確報 is not.
    manager = _later(api, datetime(2026, 3, 13, 3, 0, tzinfo=UTC))
    page = manager.get("/incidents").text
    assert "deadline-warn" in _row(page, incident_id, "preliminary")
    assert "deadline-warn" not in _row(page, incident_id, "final")
    assert "2026-03-14" in page and "2026-05-08" in page
    manager = _later(api, datetime(2026, 3, 15, 3, 0, tzinfo=UTC))  # past due: flagged
    row = _row(manager.get("/incidents").text, incident_id, "preliminary")
    assert "deadline-warn" in row and "overdue" in row

    # The preliminary report as text, with every item of the Commission's form.
    draft = manager.post(f"/incidents/{incident_id}/drafts/preliminary")
    assert draft.status_code == 200 and draft.headers["content-type"].startswith("text/markdown")
    assert draft.headers["content-disposition"] == \
        f'attachment; filename="{incident_id}-preliminary.md"'
    for item in FORM_ITEMS:
        assert item in draft.text, item
    assert "報告期限：2026-03-14" in draft.text and "登録者 2 人" in draft.text
    assert "☒ 第1号" in draft.text and "☒ 第3号" in draft.text and "□ 第2号" in draft.text
    for kind in ("final", "notice", "publication", "accredited-body"):
        other = manager.post(f"/incidents/{incident_id}/drafts/{kind}")
        assert other.status_code == 200 and other.text.startswith("# "), kind
    submitted = manager.post(f"/incidents/{incident_id}/drafts/preliminary/submitted",
                             follow_redirects=False)
    assert submitted.status_code == 303
    row = _row(manager.get("/incidents").text, incident_id, "preliminary")
    assert "deadline-warn" not in row

    # Every step is in the hash-chained audit trail, by the person who took it.
    rows = [r for r in api.reg.ctx.repo.audit_rows() if r.action.startswith("breach_")]
    assert [(r.action, r.actor) for r in rows if r.action != Action.BREACH_STOP_USE_MARKED] == [
        (Action.BREACH_OPENED.value, "mgr1"), (Action.BREACH_CONTAINMENT.value, "mgr1"),
        (Action.BREACH_CONTAINMENT.value, "admin"), (Action.BREACH_TRIAGED.value, "mgr1"),
        (Action.BREACH_REPORT_DRAFTED.value, "mgr1"), (Action.BREACH_REPORT_DRAFTED.value, "mgr1"),
        (Action.BREACH_REPORT_DRAFTED.value, "mgr1")]
    assert [d["step"] for d in _audit(api, Action.BREACH_REPORT_DRAFTED)] == \
        ["report-drafted", "report-drafted", "report-submitted"]
    assert {r.entry_id for r in rows if r.action == Action.BREACH_STOP_USE_MARKED} == \
        {obama, biden}
    assert api.reg.ctx.audit.verify().ok

    # G-BRE-4: the stop-use right shows on the entry's view, the watchlist and the desk.
    entry = manager.get(f"/api/v1/watchlist/{obama}").json()
    assert entry["stop_use_rights"] == [incident_id]
    watchlist = api.as_("staff").get("/watchlist").text  # staff see it, and cannot act
    assert f'data-incident="{incident_id}"' in watchlist
    desk = manager.get("/requests").text
    assert f'id="stop-use-{obama}-{incident_id}"' in desk
    assert f'id="stop-use-{biden}-{incident_id}"' in desk


def test_staff_and_auditors_are_refused_and_nothing_is_recorded(api: Api) -> None:
    incident_id = _open(api.as_("mgr1"))
    before = _breach_steps(api)
    for name in ("staff", "auditor"):
        person = api.as_(name)
        assert 'href="/incidents"' not in person.get("/").text
        assert person.get("/incidents").status_code == 403
        for url, data in (("/incidents", FORM),
                          (f"/incidents/{incident_id}/triage", {"reason": "x"}),
                          (f"/incidents/{incident_id}/preserve-evidence", {}),
                          (f"/incidents/{incident_id}/drafts/preliminary", {})):
            answer = person.post(url, data=data)
            assert answer.status_code == 403, (name, url, answer.status_code)
            assert "報告期限" not in answer.text
    assert _breach_steps(api) == before == [Action.BREACH_OPENED.value]
    assert [i.incident_id for i in breach.list_incidents(api.reg.ctx)] == [incident_id]


def test_a_refused_form_shows_the_page_again_with_one_line(api: Api) -> None:
    """No CSRF token: 403 and no incident. No reason for the triage: 422 on the page."""
    manager = api.as_("mgr1")
    forged = manager.post("/incidents", data=FORM, csrf=False)
    assert forged.status_code == 403 and breach.list_incidents(api.reg.ctx) == []
    incident_id = _open(manager)
    answer = manager.post(f"/incidents/{incident_id}/triage", data={"ground": "sensitive"})
    assert answer.status_code == 422 and 'role="alert"' in answer.text
    assert incident_id in answer.text  # the incidents page, with the message
    assert breach.get_incident(api.reg.ctx, incident_id).triage is None
    future = manager.post("/incidents", data={**FORM, "discovered_at": "2026-03-11T09:00"})
    assert future.status_code == 422 and "future" in future.text
    wrong = manager.post(f"/incidents/{incident_id}/drafts/notice/submitted")
    assert wrong.status_code == 422
    english = manager.get("/incidents?lang=en").text
    assert "Breach response" in english and "Not triaged yet" in english

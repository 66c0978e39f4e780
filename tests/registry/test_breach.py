"""Breach response (G-BRE-1..4): incident record, containment, triage, deadlines, drafts, drill.

Real registries with real registered faces; the counts in the drafts are
checked against what the registry holds on disk, not against the code's own
snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from kernel.errors import PermissionDeniedError, RuleViolationError
from registry.accounts.devices import add_device
from registry.audit.trail import Action
from registry.breach import incident as breach
from registry.breach.report import FORM_ITEMS, TODO, draft_notice, draft_publication, draft_report
from tests.registries import BIDEN, GROUP, OBAMA, PASSWORD, T0, Registry

# 2026-03-10 10:00 in Japan: day 1. Day 5 = 03-14, day 30 = 04-08, day 60 = 05-08.
DISCOVERED = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
NOW = DISCOVERED + timedelta(hours=1)


def _open(registry: Registry, actor: str = "mgr1") -> str:
    return breach.open_incident(registry.ctx, actor=registry.user(actor),
                                discovered_at=DISCOVERED, discovered_by="store manager Sato",
                                how="NVR box missing at opening", summary="box stolen",
                                now=NOW)


def _populated(registry: Registry) -> None:
    registry.register(OBAMA, display_name="山田太郎")
    registry.register(BIDEN)
    registry.register(GROUP, features="red scarf")


def _audit(registry: Registry, action: Action) -> list[dict[str, object]]:
    return [json.loads(r.details) for r in registry.ctx.repo.audit_rows()
            if r.action == action.value]


def test_deadlines_from_a_fixed_discovery_date(registry: Registry) -> None:
    """G-BRE-1: 速報 about 3-5 days, 確報 30 days, 60 when malicious; day of discovery = day 1."""
    incident_id = _open(registry)
    incident = breach.get_incident(registry.ctx, incident_id)
    assert incident.deadlines == breach.Deadlines(date(2026, 3, 10), date(2026, 3, 12),
                                                  date(2026, 3, 14), date(2026, 4, 8))
    breach.triage(registry.ctx, actor=registry.user("mgr1"), incident_id=incident_id,
                  grounds=[breach.Ground.SENSITIVE, breach.Ground.MALICIOUS],
                  reason="box stolen; records may show a criminal past", now=NOW)
    malicious = breach.get_incident(registry.ctx, incident_id).deadlines
    assert (malicious.preliminary, malicious.final) == (date(2026, 3, 14), date(2026, 5, 8))
    # Late at night in Japan is already the next day: the calendar is Japan's, not UTC's.
    late = breach.deadlines(datetime(2026, 3, 9, 16, 30, tzinfo=UTC), malicious=False)
    assert late.discovered_on == date(2026, 3, 10)


def test_status_warns_before_each_deadline_and_after_it(registry: Registry) -> None:
    incident_id = _open(registry)
    ctx, mgr = registry.ctx, registry.user("mgr1")
    lines = breach.status_lines(breach.get_incident(ctx, incident_id), NOW)
    assert any("not triaged" in line for line in lines)
    breach.triage(ctx, actor=mgr, incident_id=incident_id, grounds=[breach.Ground.SENSITIVE],
                  reason="要配慮個人情報", now=NOW)
    incident = breach.get_incident(ctx, incident_id)
    day = lambda d: datetime(2026, 3, d, 3, 0, tzinfo=UTC)  # noqa: E731
    assert not any("WARNING" in s for s in breach.status_lines(incident, day(10)))
    assert "WARNING: 速報 preliminary report due 2026-03-14 (in 2 day(s))" in \
        breach.status_lines(incident, day(12))
    assert "OVERDUE: 速報 preliminary report was due 2026-03-14 (1 day(s) ago)" in \
        breach.status_lines(incident, day(15))
    breach.record_report(ctx, actor=mgr, incident_id=incident_id, report="preliminary",
                         submitted=True, now=day(13))
    after = breach.status_lines(breach.get_incident(ctx, incident_id),
                                datetime(2026, 4, 7, 3, tzinfo=UTC))
    assert "速報 preliminary report: submitted" in after
    assert "WARNING: 確報 final report due 2026-04-08 (in 1 day(s))" in after


def test_both_drafts_have_every_form_item_with_counts_from_the_registry(
        registry: Registry) -> None:
    """G-BRE-2: nine items; entries, images, templates as held when the incident was opened."""
    _populated(registry)
    entries = len(registry.ctx.repo.entries())
    images = len(list(registry.ctx.paths.evidence.glob("*.bin")))  # on disk, not our snapshot
    templates = sum(len(registry.ctx.repo.templates(e.entry_id))
                    for e in registry.ctx.repo.entries())
    assert (entries, images) == (3, 3) and templates >= 3
    incident_id = _open(registry)
    registry.register(OBAMA, display_name="after the incident")  # not counted: came later
    incident = breach.get_incident(registry.ctx, incident_id)
    assert (incident.counts.entries, incident.counts.images, incident.counts.templates) == (
        entries, images, templates)
    for kind in ("preliminary", "final"):
        text = draft_report(incident, kind, key_custody="plain key file")  # type: ignore[arg-type]
        positions = [text.index(f"## {item}") for item in FORM_ITEMS]
        assert positions == sorted(positions), kind  # all nine, in the form's order
        assert f"顔画像 {images} 件" in text and f"顔特徴量 {templates} 件" in text
        assert f"登録者 {entries} 人" in text and "氏名 1 件" in text
        assert "共同利用先 0 事業者" in text
        assert "発見者：store manager Sato" in text and "発覚日：2026-03-10" in text
        assert text.count(TODO) >= 5  # cause, harm, response, publication... left to people
    assert "報告期限：2026-03-14" in draft_report(incident, "preliminary", key_custody="x")
    assert "報告期限：2026-04-08" in draft_report(incident, "final", key_custody="x")
    notice = draft_notice(incident, inquiry_desk="お客様相談室 03-0000-0000")
    assert "お客様相談室 03-0000-0000" in notice and "第35条第5項" in notice
    publication = draft_publication(incident, inquiry_desk="お客様相談室")
    assert "山田太郎" not in publication and "お客様相談室" in publication


def test_containment_steps_are_in_the_incident_and_the_audit_trail(
        registry: Registry, tmp_path: Path) -> None:
    """G-BRE-3: disable tokens, stop the edge, preserve evidence: each recorded twice."""
    ctx, admin = registry.ctx, registry.user("admin")
    add_device(ctx, admin=admin, name="entrance-box", now=T0)
    incident_id = _open(registry)
    assert breach.contain_disable_devices(ctx, actor=admin, incident_id=incident_id,
                                          now=NOW) == ["entrance-box"]
    assert not ctx.repo.device_by_name("entrance-box").active  # type: ignore[union-attr]
    outcome = breach.contain_stop_edge(ctx, actor=registry.user("mgr1"), incident_id=incident_id,
                                       now=NOW, stop=lambda: "mamoru-edge.service stopped")
    assert outcome == "mamoru-edge.service stopped"
    sealed = breach.preserve_evidence(ctx, actor=registry.user("mgr1"), incident_id=incident_id,
                                      now=NOW, to_dir=tmp_path / "usb",
                                      logs=[("edge.log", b"edge started\n")])
    assert oct(sealed.stat().st_mode & 0o777) == "0o400"

    incident = breach.get_incident(ctx, incident_id)
    kinds = [a.kind for a in incident.actions]
    assert kinds == [breach.Containment.DISABLE_DEVICES, breach.Containment.STOP_EDGE,
                     breach.Containment.PRESERVE_EVIDENCE]
    preserved = incident.actions[-1].details
    assert preserved["sha256"] == hashlib.sha256(sealed.read_bytes()).hexdigest()
    assert preserved["chain_ok"] is True and preserved["logs"] == ["edge.log"]
    audited = _audit(registry, Action.BREACH_CONTAINMENT)
    assert [d["step"] for d in audited] == [k.value for k in kinds]
    assert all(d["incident"] == incident_id for d in audited)
    assert audited[-1]["sha256"] == preserved["sha256"]
    assert _audit(registry, Action.DEVICE_DISABLED)[-1]["device"] == "entrance-box"
    assert _audit(registry, Action.BREACH_OPENED)[0]["incident"] == incident_id
    assert ctx.audit.verify().ok


def test_roles_and_required_judgements(registry: Registry) -> None:
    with pytest.raises(PermissionDeniedError):
        _open(registry, actor="staff")
    incident_id = _open(registry)
    with pytest.raises(RuleViolationError, match="why"):
        breach.triage(registry.ctx, actor=registry.user("mgr1"), incident_id=incident_id,
                      grounds=[], reason=" ", now=NOW)
    with pytest.raises(PermissionDeniedError):
        breach.contain_disable_devices(registry.ctx, actor=registry.user("mgr1"),
                                       incident_id=incident_id, now=NOW)


def test_reportable_leak_gives_affected_persons_a_stop_use_right(registry: Registry) -> None:
    """G-BRE-4: after a reportable leak each affected person is marked; not after a safe one."""
    _populated(registry)
    held = {e.entry_id for e in registry.ctx.repo.entries()}
    safe = _open(registry)
    breach.triage(registry.ctx, actor=registry.user("mgr1"), incident_id=safe, grounds=[],
                  reason="encrypted; key in a TPM-sealed credential that stayed safe", now=NOW)
    assert breach.stop_use_rights(registry.ctx) == {}
    leak = _open(registry)
    breach.triage(registry.ctx, actor=registry.user("mgr1"), incident_id=leak,
                  grounds=[breach.Ground.SENSITIVE], reason="key was on the stolen disk", now=NOW)
    assert breach.stop_use_rights(registry.ctx) == {e: [leak] for e in held}
    assert len(_audit(registry, Action.BREACH_STOP_USE_MARKED)) == len(held)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".write.lock"}


def _mamoru(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAMORU_DATA_DIR": str(registry.data_dir), "PYTHONWARNINGS": "ignore",
           "MAMORU_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "mamoru", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


@pytest.mark.cli
def test_cli_open_triage_status_report_and_drill(registry: Registry, tmp_path: Path) -> None:
    """The CLI end to end; the drill runs on a copy and leaves the live registry unchanged."""
    _populated(registry)
    registry.ctx.close()
    before = _digests(registry.data_dir)
    drill = _mamoru(registry, "incident", "drill", "--as", "admin", "--out", str(tmp_path / "d"))
    assert drill.returncode == 0, drill.stderr
    assert "WARNING: 速報 preliminary report due 2026-03-14 (in 2 day(s))" in drill.stdout
    assert _digests(registry.data_dir) == before
    drafts = sorted(p.name.split("-", 3)[-1] for p in (tmp_path / "d").iterdir())
    assert drafts == ["accredited-body.md", "final.md", "notice.md", "preliminary.md",
                      "publication.md"]
    final = next((tmp_path / "d").glob("*-final.md")).read_text(encoding="utf-8")
    assert "報告期限：2026-05-08" in final and "顔画像 3 件" in final  # 3号: 60 days

    opened = _mamoru(registry, "incident", "open", "--as", "mgr1", "--discovered-by", "Sato",
                     "--how", "box missing", "--discovered-at", "2026-03-10T10:00:00+09:00")
    assert opened.returncode == 0, opened.stderr
    incident_id = opened.stdout.split(":")[0]
    triaged = _mamoru(registry, "incident", "triage", incident_id, "--as", "mgr1",
                      "--ground", "sensitive", "--reason", "criminal records")
    assert triaged.returncode == 0 and "第1号" in triaged.stdout, triaged.stderr
    report = _mamoru(registry, "incident", "report", incident_id, "--as", "mgr1",
                     "--preliminary")
    assert report.returncode == 0 and "報告期限：2026-03-14" in report.stdout, report.stderr
    assert "登録者 3 人" in report.stdout
    bad = _mamoru(registry, "incident", "report", incident_id, "--as", "mgr1")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

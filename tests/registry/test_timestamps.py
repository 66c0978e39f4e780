"""One timestamp type for every time from outside (issue 11, finding 1).

Before it, `POST /api/v1/edge/alerts` with `"detected_at": "0999-01-01T00:00:00Z"`
was stored (201) and from then on every alert list answered 500: the stored
text "999-01-01..." did not read back. A proposal from the year 999 did the
same to the watchlist, proposals and approvals; extreme offsets such as
9999-12-31T23:59:59-12:00 overflowed on the way to UTC. Now every time is a
zoned ISO-8601 time within 2000-01-01..2199-12-31 UTC (`registry.clock`),
refused with a 422, a form error or one CLI line otherwise, and stored times
from before the fix are repaired when the registry is opened (migration 5).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError

from registry.accounts import devices
from registry.alerts.queue import AlertIn, list_alerts, receive_alert
from registry.api import schemas
from registry.clock import (
    CLOCK_SKEW,
    EARLIEST,
    LATEST,
    Timestamp,
    TimestampError,
    from_text,
    parse_timestamp,
    to_text,
)
from registry.joint_use import bundle, export_schema
from registry.storage.migrations import REGISTRY_MIGRATIONS, TIME_REPAIR_STEP
from tests.registries import OBAMA, OBAMA2, T0, Registry
from tests.registry.people import NOW, Api, Clock, jpeg_bytes, png_bytes, start_app
from tests.test_cli import assert_clean_user_error, run

ALERTS = "/api/v1/edge/alerts"
RANGE = "outside 2000-01-01 to 2199-12-31 (UTC)"
YEAR_999 = "0999-01-01T00:00:00Z"
EXTREMES = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"]
INCIDENT = {"category": "theft", "occurred_at": "2026-01-15T10:00:00+09:00",
            "confirmation_ref": "被害届-2026-0099", "damage": "2 items"}
# Every list and page that shows alerts, entries or proposals, and who may see it.
READERS = [("staff", "/api/v1/alerts"), ("staff", "/alerts"), ("mgr1", "/api/v1/watchlist"),
           ("mgr1", "/watchlist"), ("mgr1", "/api/v1/proposals"), ("mgr1", "/approvals"),
           ("auditor", "/audit"), ("auditor", "/api/v1/audit/report")]


@dataclass
class Store:
    """The real app on a real registry, one approved entry, and one edge box's token."""

    api: Api
    entry_id: str
    token: str

    def alert(self, detected_at: str) -> httpx.Response:
        body = {"alert_id": uuid.uuid4().hex, "camera": "entrance-1", "detected_at": detected_at,
                "score": 0.71, "threshold": 0.363, "entry_id": self.entry_id,
                "index_version": self.api.reg.ctx.repo.watchlist_version(),
                "snapshot_png_b64": base64.b64encode(
                    png_bytes(self.api.reg.image(OBAMA2))).decode("ascii")}
        answer: httpx.Response = self.api.client.post(
            ALERTS, json=body, headers={"Authorization": f"Bearer {self.token}"})
        return answer

    def assert_every_list_is_up(self) -> None:
        for username, url in READERS:
            answer = self.api.as_(username).get(url)
            assert answer.status_code == 200, (url, answer.status_code, answer.text[:300])


@pytest.fixture
def store(registry: Registry) -> Iterator[Store]:
    entry_id = registry.register(OBAMA)
    token = devices.add_device(registry.ctx, admin=registry.user("admin"), name="box-1", now=T0)
    clock = Clock()
    with start_app(registry, clock) as client:
        yield Store(Api(registry, client, clock), entry_id, token)


def _problem(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    return str(answer.json()["detail"])


# --- the finding, against the real app ------------------------------------------------------


def test_an_alert_from_the_year_999_is_refused_and_the_alerts_stay_up(store: Store) -> None:
    assert RANGE in _problem(store.alert(YEAR_999))
    assert store.alert(NOW.isoformat()).status_code == 201
    store.assert_every_list_is_up()
    assert [a.detected_at for a in list_alerts(store.api.reg.ctx)] == [NOW]


def test_a_proposal_from_the_year_999_is_refused_and_the_lists_stay_up(store: Store) -> None:
    staff = store.api.as_("staff")
    photo = ("photos", ("obama.jpg", jpeg_bytes(store.api.reg.image(OBAMA2)), "image/jpeg"))
    entries_before = store.api.reg.ctx.repo.entries()
    answer = staff.post("/api/v1/proposals", data={**INCIDENT, "occurred_at": "0999-06-01"},
                        files=[photo])
    assert "occurred_at" in _problem(answer) and RANGE in _problem(answer)
    # The tablet's form: its date-time field has no zone (the store's time), the same range.
    form = staff.post("/propose", data={**INCIDENT, "occurred_at": "0999-06-01T10:00"},
                      files=[photo])
    assert form.status_code == 422 and "occurred_at" in form.text and "2199-12-31" in form.text
    assert store.api.reg.ctx.repo.entries() == entries_before
    store.assert_every_list_is_up()


@pytest.mark.parametrize("moment", EXTREMES)
def test_extreme_offsets_are_refused_by_alerts_reoffences_and_the_audit_report(
        store: Store, moment: str) -> None:
    assert RANGE in _problem(store.alert(moment))
    reoffence = store.api.as_("mgr1").post(f"/api/v1/watchlist/{store.entry_id}/reoffence",
                                           json={**INCIDENT, "occurred_at": moment})
    assert RANGE in _problem(reoffence)
    auditor = store.api.as_("auditor")
    for name in ("from", "to"):
        assert RANGE in _problem(auditor.get("/api/v1/audit/report", params={name: moment}))
    store.assert_every_list_is_up()


def test_naive_times_are_refused_except_on_the_tablet_where_they_are_store_time(
        store: Store) -> None:
    naive = "2026-01-15T10:00:00"
    assert "offset" in _problem(store.alert(naive))
    manager = store.api.as_("mgr1")
    assert "offset" in _problem(manager.post(f"/api/v1/watchlist/{store.entry_id}/reoffence",
                                             json={**INCIDENT, "occurred_at": naive}))
    assert "offset" in _problem(store.api.as_("auditor").get("/api/v1/audit/report",
                                                             params={"from": naive}))
    tablet = manager.post(f"/watchlist/{store.entry_id}/reoffence",
                          data={**INCIDENT, "occurred_at": "2026-01-16T09:30"},
                          follow_redirects=False)
    assert tablet.status_code == 303, tablet.text[:300]
    [_, later] = store.api.reg.ctx.repo.incidents(store.entry_id)
    assert later.occurred_at == datetime(2026, 1, 16, 0, 30, tzinfo=UTC)  # 09:30 JST


def test_a_time_in_the_future_beyond_clock_skew_is_refused(store: Store) -> None:
    assert "future" in _problem(store.alert((NOW + timedelta(hours=1)).isoformat()))
    slightly_fast = store.alert((NOW + CLOCK_SKEW - timedelta(seconds=1)).isoformat())
    assert slightly_fast.status_code == 201, slightly_fast.text
    reoffence = store.api.as_("mgr1").post(
        f"/api/v1/watchlist/{store.entry_id}/reoffence",
        json={**INCIDENT, "occurred_at": (NOW + timedelta(days=1)).isoformat()})
    assert "future" in _problem(reoffence)


# --- stored before the fix ------------------------------------------------------------------


def test_times_stored_in_the_old_form_are_repaired_when_the_registry_opens(
        registry: Registry) -> None:
    entry_id = registry.register(OBAMA)
    device = devices.add_device(registry.ctx, admin=registry.user("admin"), name="box-1", now=T0)
    assert device
    box = registry.ctx.repo.device_by_name("box-1")
    assert box is not None
    ids = []
    for _ in range(3):
        payload = AlertIn(alert_id=uuid.uuid4().hex, camera="entrance-1", detected_at=T0,
                          score=0.7, threshold=0.363, entry_id=entry_id,
                          index_version=registry.ctx.repo.watchlist_version(),
                          snapshot_png_b64=base64.b64encode(
                              png_bytes(registry.image(OBAMA2))).decode("ascii"))
        ids.append(receive_alert(registry.ctx, device=box, payload=payload, now=T0)[0])
    # What the old code wrote for these times (strftime does not pad years below 1000),
    # and a far-future time it accepted whose store-zone form does not exist.
    db = registry.ctx.repo.connection
    old = {ids[0]: "999-01-01T00:00:00.000000Z", ids[1]: "9999-12-31T20:00:00.000000Z"}
    for alert_id, text in old.items():
        db.execute("UPDATE alerts SET detected_at = ? WHERE alert_id = ?", (text, alert_id))
    db.execute("UPDATE incidents SET occurred_at = '999-06-01T00:00:00.000000Z'")
    db.execute("UPDATE entries SET expires_at = '1002-06-01T00:00:00.000000Z'")
    # As the registry was just before the repair step: it (and every later step) runs on next open.
    db.execute(f"PRAGMA main.user_version = {TIME_REPAIR_STEP - 1}")
    assert from_text("999-01-01T00:00:00.000000Z") == datetime(999, 1, 1, tzinfo=UTC)

    ctx = registry.reopen()
    assert ctx.repo.connection.execute("PRAGMA main.user_version").fetchone()[0] == len(
        REGISTRY_MIGRATIONS)
    detected = {a.alert_id: a.detected_at for a in list_alerts(ctx)}
    assert detected == {ids[0]: EARLIEST, ids[1]: LATEST, ids[2]: T0}
    [incident] = ctx.repo.incidents(entry_id)
    assert incident.occurred_at == EARLIEST
    entry = ctx.repo.entry(entry_id)
    assert entry is not None and entry.expires_at == EARLIEST
    with start_app(registry, Clock()) as client:
        Store(Api(registry, client, Clock()), entry_id, "").assert_every_list_is_up()


# --- the one type ---------------------------------------------------------------------------


class _Wire(BaseModel):
    at: Timestamp


_OFFSET_MINUTES = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1)
_IN_RANGE = st.datetimes(min_value=EARLIEST.replace(tzinfo=None),
                         max_value=LATEST.replace(tzinfo=None), timezones=st.just(UTC))


@examples(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(moment=_IN_RANGE, offset=_OFFSET_MINUTES)
def test_every_time_in_the_range_round_trips_in_any_zone(moment: datetime, offset: int) -> None:
    zoned = moment.astimezone(timezone(timedelta(minutes=offset)))
    text = to_text(zoned)
    assert len(text) == len("2000-01-01T00:00:00.000000Z")
    assert from_text(text) == moment and from_text(text).tzinfo is UTC
    for given_as in (zoned.isoformat(), zoned):
        assert parse_timestamp(given_as) == moment
    assert _Wire.model_validate_json(f'{{"at": "{zoned.isoformat()}"}}').at == moment


@given(a=_IN_RANGE, b=_IN_RANGE)
def test_stored_text_sorts_like_time(a: datetime, b: datetime) -> None:
    assert (to_text(a) < to_text(b)) == (a < b)


_ANY_NAIVE = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))


@examples(max_examples=500)
@given(naive=_ANY_NAIVE, offset=_OFFSET_MINUTES)
def test_every_time_outside_the_range_is_refused(naive: datetime, offset: int) -> None:
    shift = timedelta(minutes=offset)
    # The instant, counted without `datetime` (which cannot hold year 0 or 10000).
    since_year_1 = naive - datetime(1, 1, 1) - shift
    inside = (EARLIEST.replace(tzinfo=None) - datetime(1, 1, 1) <= since_year_1
              <= LATEST.replace(tzinfo=None) - datetime(1, 1, 1))
    text = naive.replace(tzinfo=timezone(shift)).isoformat()
    if inside:
        assert parse_timestamp(text) == naive.replace(tzinfo=timezone(shift))
        return
    with pytest.raises(TimestampError, match="outside 2000-01-01 to 2199-12-31"):
        parse_timestamp(text)
    with pytest.raises(ValidationError, match="outside 2000-01-01 to 2199-12-31"):
        _Wire.model_validate_json(f'{{"at": "{text}"}}')
    with pytest.raises(TimestampError):
        to_text(naive.replace(tzinfo=timezone(shift)))


@pytest.mark.parametrize("text", ["2026-01-20T09:15:02", "2026-01-20 09:15", "yesterday", "",
                                  "2026-13-01", "1e9", "0000-01-01T00:00:00Z"])
def test_naive_and_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(text)


def _inbound_models() -> list[type[BaseModel]]:
    """Every model that reads a time from outside: API bodies, alerts, joint-use bundles."""
    found: list[type[BaseModel]] = [AlertIn]
    for module in (schemas, bundle, export_schema):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and (
                    value.__name__.endswith("In") or module is not schemas):
                found.append(value)
    return found


def _is_time(annotation: Any) -> bool:
    return annotation is datetime or datetime in get_args(annotation)


def test_every_inbound_time_field_is_the_one_timestamp_type() -> None:
    fields = 0
    for model in _inbound_models():
        for name, field in model.model_fields.items():
            if not _is_time(field.annotation):
                continue
            fields += 1
            validators = [m for m in field.metadata if isinstance(m, BeforeValidator)]
            assert validators and validators[0] == get_args(Timestamp)[1], (model, name)
            with pytest.raises(ValidationError, match="outside"):
                TypeAdapter(field.rebuild_annotation()).validate_python(YEAR_999)
    assert fields >= 8  # detected_at, occurred_at (API and shared), the bundles' times


# --- the command line -----------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"MAMORU_DATA_DIR": str(tmp_path / "data"),
                           "MAMORU_PASSWORD": "unused password"})


@pytest.mark.cli
def test_the_command_line_refuses_bad_times_in_one_line(tmp_path: Path, face_data: Path) -> None:
    photo = str(face_data / "face_recognition/obama.jpg")
    propose = ["propose", photo, "--as", "staff", "--category", "theft", "--ref", "R-1"]
    assert_clean_user_error(_cli(tmp_path, *propose, "--occurred-at", "0999-06-01"),
                            f"--occurred-at: 0999-06-01T00:00:00+00:00 is {RANGE}")
    assert_clean_user_error(_cli(tmp_path, *propose, "--occurred-at", "2026-11-20T14:05"),
                            "--occurred-at: a date-time needs its UTC offset")
    assert_clean_user_error(_cli(tmp_path, "audit", "report", "--as", "auditor",
                                 "--from", EXTREMES[1]), f"--from: {EXTREMES[1]} is {RANGE}")
    assert_clean_user_error(_cli(tmp_path, "audit", "report", "--as", "auditor", "--from",
                                 "2026-01-01", "--to", EXTREMES[0]), "--to: ")
    assert_clean_user_error(_cli(tmp_path, "expire", "--now", YEAR_999), "--now: ")

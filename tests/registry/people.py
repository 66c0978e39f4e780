"""Helpers for the people API tests: a movable clock, a logged-in person, alerts from a box.

The app under test is the real one (`create_app`) on a real registry copy,
with the session engine injected and a clock the test moves. Requests go to
`https://testserver`, the scheme the Secure session cookie needs.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cv2
import httpx
import numpy as np
from fastapi.testclient import TestClient

from mamoru.settings import MamoruSettings
from mamoru.wiring import api_host
from registry.accounts import devices
from registry.alerts.queue import AlertIn, receive_alert
from registry.api.app import create_app
from registry.api.sessions import COOKIE_NAME, CSRF_HEADER
from registry.config import WebSettings
from tests.registries import PASSWORD, T0, Registry

BASE_URL = "https://testserver"
NOW = T0 + timedelta(days=5)  # the app's clock starts here: after every incident of T0


class Clock:
    """The app's time; tests move it to expire sessions and locks."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def web_settings(settings: MamoruSettings, **web: Any) -> MamoruSettings:
    """The registry's settings with some `web` limits changed (rate limits off by default)."""
    values = {"rate_limit_per_minute": 1_000_000, "login_rate_limit_per_minute": 10_000, **web}
    return settings.model_copy(update={"web": WebSettings(**values)})


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def box_alert(reg: Registry, box: str, entry_id: str, *, at: datetime = T0,
              snapshot: str = "face_recognition/obama2.jpg", score: float = 0.71) -> str:
    """A new alert about `entry_id` from the registered box `box`, received through the
    service as the edge route does; the alert's id."""
    device = reg.ctx.repo.device_by_name(box)
    assert device is not None, f"no box named {box}"
    payload = AlertIn(
        alert_id=uuid.uuid4().hex, camera="entrance-1", detected_at=at, score=score,
        threshold=0.363, entry_id=entry_id, index_version=reg.ctx.repo.watchlist_version(),
        snapshot_png_b64=base64.b64encode(png_bytes(reg.image(snapshot))).decode(),
    )
    alert_id, created = receive_alert(reg.ctx, device=device, payload=payload, now=at)
    assert created
    return alert_id


def jpeg_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


@dataclass
class Person:
    """A logged-in user: their cookie token and CSRF token, sent explicitly on each request."""

    client: TestClient
    username: str
    token: str
    csrf: str

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"{COOKIE_NAME}={self.token}"}
        if csrf:
            headers[CSRF_HEADER] = self.csrf
        return headers

    def request(self, method: str, url: str, *, csrf: bool = True,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, headers={**self.headers(csrf=csrf),
                                                         **(headers or {})}, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> Person:
    answer = client.post("/api/v1/session", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    token = answer.cookies.get(COOKIE_NAME)
    assert token
    client.cookies.clear()  # each Person sends their own cookie; the jar stays empty
    return Person(client, username, token, answer.json()["csrf_token"])


@dataclass
class Api:
    """A running app on one registry, its clock, and the people logged in to it."""

    reg: Registry
    client: TestClient
    clock: Clock
    people: dict[str, Person] = field(default_factory=dict)
    box_token: str = ""

    def as_(self, username: str) -> Person:
        if username not in self.people:
            self.people[username] = log_in(self.client, username)
        return self.people[username]

    def alert(self, entry_id: str, *, snapshot: str = "face_recognition/obama2.jpg",
              score: float = 0.71) -> str:
        """An alert from box-1 (received through the service, as the edge route does)."""
        if self.reg.ctx.repo.device_by_name("box-1") is None:
            self.box_token = devices.add_device(self.reg.ctx, admin=self.reg.user("admin"),
                                                name="box-1", now=T0)
        return box_alert(self.reg, "box-1", entry_id, at=self.clock.now, snapshot=snapshot,
                         score=score)

    def audit_actions(self) -> list[str]:
        return [r.action for r in self.reg.ctx.repo.audit_rows()]


def start_app(reg: Registry, clock: Clock, **web: Any) -> TestClient:
    app = create_app(api_host(web_settings(reg.settings, **web), engine=reg.engine, clock=clock))
    return TestClient(app, base_url=BASE_URL)

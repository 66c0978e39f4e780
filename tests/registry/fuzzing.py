"""A real `mamoru serve` to fuzz: a seeded registry, its whole OpenAPI schema, every caller.

The server is the shipped command (`python -m mamoru serve --insecure-http`
on loopback) over a byte copy of the test registry, so what the fuzzer meets
is what a store runs: uvicorn, the middleware, SQLCipher files, the ONNX
engine. The registry holds data for the routes to work on: an approved entry
registered from two real photos (evidence images), a pending proposal, an
open alert with its snapshot, and an edge box.

The schema is built from the app object (`schema_of`): the API's routes as
`app.openapi()` describes them, plus the tablet pages, which the app keeps out
of its schema (they are for browsers) but which take the same input from
anyone who posts to them. The app itself serves no schema (`registry/api/app.py`).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from mamoru.demo.cameras import free_port
from mamoru.wiring import api_host
from registry.accounts import devices
from registry.alerts.queue import AlertIn, receive_alert
from registry.api.app import create_app
from registry.api.sessions import COOKIE_NAME, CSRF_HEADER
from registry.domain import User
from registry.joint_use.keys import public_b64
from registry.joint_use.scheme import adopt_scheme
from registry.joint_use.sync import init_keys
from registry.scheme import SHARED_ITEMS
from tests import REPO
from tests.registries import BIDEN, OBAMA, OBAMA2, PASSWORD, T0, Registry
from tests.waiting import answers, wait_until

SCHEME_FILE = "joint-use-scheme.json"


@dataclass(frozen=True)
class Seeded:
    """Ids of the data the registry was given, for path parameters that hit something real."""

    entry_id: str
    image_ids: tuple[str, ...]
    pending_id: str
    alert_id: str
    device_token: str
    photo_jpeg: bytes  # a real photo of a face, for the upload routes
    snapshot_png: bytes  # a real snapshot, for alerts from the edge box


def seed(reg: Registry) -> Seeded:
    """An approved entry with evidence, a pending proposal, an open alert, an edge box,
    and a joint-use scheme in force (so bundles are checked, not refused with a 503)."""
    entry_id = reg.register(OBAMA)
    pending_id = reg.propose(BIDEN, proposer="staff").entry_id
    admin = reg.user("admin")
    token = devices.add_device(reg.ctx, admin=admin, name="box-1", now=T0)
    device = reg.ctx.repo.device_by_name("box-1")
    assert device is not None
    png = _encoded(".png", reg.image(OBAMA2))
    payload = AlertIn(alert_id=uuid.uuid4().hex, camera="entrance-1", detected_at=T0,
                      score=0.71, threshold=0.363, entry_id=entry_id,
                      index_version=reg.ctx.repo.watchlist_version(),
                      snapshot_png_b64=base64.b64encode(png).decode())
    alert_id, created = receive_alert(reg.ctx, device=device, payload=payload, now=T0)
    assert created
    _join_scheme(reg, admin)
    image_ids = tuple(r.image_id for r in reg.ctx.repo.evidence(entry_id))
    assert image_ids, "the approved entry has evidence images"
    reg.ctx.close()  # the server owns the files from here on
    return Seeded(entry_id, image_ids, pending_id, alert_id, token,
                  photo_jpeg=_encoded(".jpg", reg.image(OBAMA2)), snapshot_png=png)


def _encoded(extension: str, image: npt.NDArray[np.uint8]) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return bytes(data.tobytes())


def _join_scheme(reg: Registry, admin: User) -> None:
    """This store and one other (keys made here) in a scheme adopted by this store (G-SHR-1)."""
    own = init_keys(reg.ctx, actor=admin, now=T0)
    other = (Ed25519PrivateKey.generate(), X25519PrivateKey.generate())
    members = [
        {"member_id": reg.ctx.policy.store_id, "store_name": "this store", "region": "kanto",
         "signing_key": own.signing_public, "encryption_key": own.encryption_public},
        {"member_id": "store-other", "store_name": "another store", "region": "kanto",
         "signing_key": public_b64(other[0]), "encryption_key": public_b64(other[1])},
    ]
    scheme = {
        "format": 1, "name": "fuzzing scheme", "joint_use": "members share confirmed offenders",
        "data_items": list(SHARED_ITEMS), "purpose": "prevent repeat shoplifting",
        "managing_party": {"name": "secretariat", "address": "Tokyo",
                           "representative": "chair", "contact": "03-0000-0000"},
        "region_rule": "same_region", "members": members,
    }
    path = reg.data_dir / SCHEME_FILE
    path.write_text(json.dumps(scheme), encoding="utf-8")
    adopt_scheme(reg.ctx, actor=admin, path=path, now=T0)


# --- the schema ------------------------------------------------------------------------

# The joint-use route reads its body itself (raw bytes), so FastAPI cannot describe it.
_BUNDLE_BODY = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}


def schema_of(app: FastAPI) -> dict[str, Any]:
    """Every route the app serves, described alike: the API's own and the hidden ones
    (tablet pages, the public notice), so a route added later is fuzzed without a change here."""
    hidden: list[APIRoute] = []
    for entry in app.routes:  # newer FastAPI keeps each included router as one entry
        router = getattr(entry, "original_router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute) and not route.include_in_schema:
                assert not router.prefix, "a hidden router with a prefix: describe its paths"
                visible = copy.copy(route)
                visible.include_in_schema = True
                hidden.append(visible)
    schema = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                         routes=[*app.routes, *hidden])
    bundles = schema["paths"]["/api/v1/joint-use/bundles"]["post"]
    bundles.setdefault("requestBody", _BUNDLE_BODY)
    return schema


# --- the server ------------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[str]
    log_file: Path

    def output(self) -> str:
        """What the server printed so far (its log)."""
        return self.log_file.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve(reg: Registry, log_file: Path) -> Iterator[Server]:
    """`mamoru serve --insecure-http` on a free loopback port, with no rate limits in the way.

    Its output goes to `log_file` (a pipe nobody reads would fill up and stop the server).
    """
    port = free_port()
    env = {**os.environ, "MAMORU_DATA_DIR": str(reg.data_dir), "PYTHONWARNINGS": "ignore",
           "MAMORU_WEB__RATE_LIMIT_PER_MINUTE": "1000000",
           "MAMORU_WEB__LOGIN_RATE_LIMIT_PER_MINUTE": "10000",
           "MAMORU_REGISTRY__JOINT_USE_SCHEME": str(reg.data_dir / SCHEME_FILE)}
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mamoru", "serve", "--insecure-http", "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        server = Server(f"http://127.0.0.1:{port}", process, log_file)
        try:
            _wait_until_up(server)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(server: Server, timeout_s: float = 60.0) -> None:
    def exited() -> str | None:
        return None if server.process.poll() is None else f"it exited: {server.output()}"

    wait_until(answers(f"{server.url}/login", 200), timeout_s, "mamoru serve to answer",
               alive=exited)


# --- who calls ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """A caller: the headers that make a request theirs (none for anonymous)."""

    name: str
    headers: dict[str, str]


def session_of(url: str, username: str) -> Identity:
    """A person's session: the cookie's token and the CSRF token, sent on every request."""
    answer = httpx.post(f"{url}/api/v1/session",
                        json={"username": username, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    token = answer.cookies.get(COOKIE_NAME)
    assert token
    return Identity(username, {"Cookie": f"{COOKIE_NAME}={token}",
                               CSRF_HEADER: answer.json()["csrf_token"]})


def device(token: str) -> Identity:
    return Identity("edge device", {"Authorization": f"Bearer {token}"})


def app_for_schema(reg: Registry) -> FastAPI:
    """The app as `mamoru serve` builds it (not started: only its routes are read)."""
    return create_app(api_host(reg.settings, engine=reg.engine))

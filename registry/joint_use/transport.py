"""Bundles over HTTPS: push the next bundles to a member's registry API, apply their receipts.

The bytes are exactly those of the file transport (`export_bundle`), so a
relay or proxy on the way can read none of them. The member's registry
answers `POST /api/v1/joint-use/bundles` with the signed receipt, which is
applied here at once (`apply_receipt`), so A's status and erasure
confirmations are up to date when `push_bundle` returns. A sync larger than
one bundle goes as several, each sent once the previous one is acknowledged.

Network failures and 5xx answers are retried with exponential back-off,
re-sending the same bytes (a bundle applied twice is refused as a replay, so
a retry never applies anything twice); a 4xx is final and raised as
`PushRefusedError` with the member's one-line reason. The server is checked
against `ca_file` (the member's self-signed certificate, `<data_dir>/tls/cert.pem`
there) or the system's CAs; plain http:// is allowed to loopback addresses only.

    pushed = push_bundle(ctx, scheme, "store-b", "https://10.0.0.7:8443",
                         ca_file=Path("store-b-cert.pem"), now=utc_now())
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from registry.context import RegistryContext
from registry.domain import User
from registry.joint_use.bundle import Receipt, open_envelope, parse_payload
from registry.joint_use.errors import PushRefusedError, TransportError
from registry.joint_use.scheme import LoadedScheme
from registry.joint_use.sync import AppliedReceipt, Exported, apply_receipt, export_parts, receiver
from registry.scheme import SchemeError

BUNDLES_PATH = "/api/v1/joint-use/bundles"
MEDIA_TYPE = "application/octet-stream"
CHUNK = 256 * 1024

# (bytes sent so far, total bytes) after each chunk of an upload attempt.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Pushed:
    """A bundle delivered and acknowledged: what the member signed, and what was recorded here."""

    member: str
    sequence: int  # the last bundle's, when the sync took several
    entries: int  # items in the bundle (entries, corrections, tombstones, objections)
    bundle_bytes: int
    attempts: int
    receipt: Receipt
    applied: AppliedReceipt
    bundles: int = 1  # how many bundles the sync took (each applied and acknowledged)


def member_url(scheme: LoadedScheme, member: str, url: str | None = None) -> str:
    """The URL given, else the one the scheme publishes for that member."""
    if url:
        return url
    entry = scheme.member(member)
    if entry is None:
        raise SchemeError(f"{member} is not a member of the scheme")
    if not entry.url:
        raise SchemeError(f"the scheme lists no url for {member}: give --url, or carry the "
                          "bundle as a file (`mamoru joint-use export`)")
    return entry.url


def _endpoint(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme == "http":
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise TransportError(f"refusing plain http:// to {host}: bundles go over HTTPS "
                                 "(http:// only to a loopback address)")
    elif parts.scheme != "https" or not host:
        raise TransportError(f"not an https:// URL: {base_url}")
    return base_url.rstrip("/") + BUNDLES_PATH


def _verify(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None and not ca_file.is_file():
        raise TransportError(f"no CA file at {ca_file}")
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else response.text[:300]
    return " ".join(str(text).split()) or response.reason_phrase


def _chunks(blob: bytes, progress: Progress | None) -> Iterator[bytes]:
    for start in range(0, len(blob), CHUNK):
        chunk = blob[start:start + CHUNK]
        yield chunk
        if progress is not None:
            progress(start + len(chunk), len(blob))


def send_bundle(blob: bytes, base_url: str, *, ca_file: Path | None = None, retries: int = 3,
                backoff_s: float = 0.5, timeout_s: float = 60.0,
                progress: Progress | None = None) -> tuple[bytes, int]:
    """POST one bundle's bytes; the receipt bytes and the number of attempts it took."""
    url = _endpoint(base_url)
    verify = _verify(ca_file) if url.startswith("https://") else True
    last = ""
    attempts = 0
    with httpx.Client(verify=verify, timeout=timeout_s) as client:
        for attempt in range(retries + 1):
            attempts = attempt + 1
            if attempt:
                time.sleep(backoff_s * 2 ** (attempt - 1))
            try:
                response = client.post(url, content=_chunks(blob, progress), headers={
                    "Content-Type": MEDIA_TYPE, "Content-Length": str(len(blob))})
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code == 200:
                return response.content, attempts
            if 400 <= response.status_code < 500:
                raise PushRefusedError(f"{base_url} refused the bundle "
                                       f"({response.status_code}): {_reason(response)}")
            last = f"HTTP {response.status_code}: {_reason(response)}"
    raise TransportError(f"could not deliver the bundle to {base_url} after {attempts} "
                         f"attempt(s) ({last}); it stays pending and the next push sends it")


def push_bundle(ctx: RegistryContext, scheme: LoadedScheme, member: str,
                base_url: str | None = None, *, now: datetime, ca_file: Path | None = None,
                retries: int = 3, backoff_s: float = 0.5, actor: User | None = None,
                progress: Callable[[int, int, int], None] | None = None) -> Pushed:
    """Export the next bundles for `member`, POST each to its registry, apply each receipt.

    A sync larger than one bundle (`joint_use_bundle_max_items`/`_max_bytes`)
    goes as several, one after the other: the next is exported once the
    member's receipt for the previous one is applied, so each holds only what
    is still unacknowledged and the sender never holds the whole sync in
    memory. Returns the last one pushed. `progress(sent, total, entries)` is
    called as each upload proceeds.
    """
    url = member_url(scheme, member, base_url)
    _endpoint(url)  # refuse a bad URL before anything is recorded as provided
    bundles = 0
    while True:
        (part,) = export_parts(ctx, scheme, member, now, actor=actor, max_parts=1)
        pushed = _push_one(ctx, scheme, part, member, url, now=now, ca_file=ca_file,
                           retries=retries, backoff_s=backoff_s, actor=actor, progress=progress)
        bundles += 1
        if part.remaining == 0:
            return replace(pushed, bundles=bundles)


def _push_one(ctx: RegistryContext, scheme: LoadedScheme, part: Exported, member: str, url: str,
              *, now: datetime, ca_file: Path | None, retries: int, backoff_s: float,
              actor: User | None, progress: Callable[[int, int, int], None] | None) -> Pushed:
    items = part.items
    report = (lambda done, total: progress(done, total, items)) if progress else None
    receipt_blob, attempts = send_bundle(part.blob, url, ca_file=ca_file, retries=retries,
                                         backoff_s=backoff_s, progress=report)
    applied = apply_receipt(ctx, scheme, receipt_blob, now, actor=actor)
    rx = receiver(ctx, scheme)
    receipt: Receipt = parse_payload(open_envelope(receipt_blob, kind="receipt", our_id=rx.me,
                                                   our_key=rx.keys.encryption,
                                                   signer=rx.signer), Receipt)
    return Pushed(member, applied.sequence, items, len(part.blob), attempts, receipt, applied)

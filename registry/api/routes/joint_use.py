"""Joint-use bundles over HTTPS: a member pushes the very bytes a bundle file would hold.

`POST /api/v1/joint-use/bundles` takes one bundle (application/octet-stream)
and answers with the signed, encrypted receipt for the sender, byte for byte
what `mamoru joint-use import` writes. The caller is not a person or an edge
box but a member store, so the route is public at the HTTP layer and
authenticates the sender itself, doing the cheap checks first so that a
stranger costs this store next to nothing:

1. joint use not configured here: 404 before any byte of the body is read
   (503 while configured but not usable, e.g. the scheme not adopted);
2. the envelope's first bytes (at most `MAX_CLEAR_BYTES`): the clear header,
   addressed to this store and signed by the current member it names (422),
   with the next sequence from that member (409 for a replay or a gap);
3. only then the rest, exactly as long as the signed header declares and at
   most this store's `joint_use_bundle_max_bytes` (413), checked against the
   digest in the header, decrypted and its inner signature verified; all of
   it without the registry's lock, so edge boxes and people are not held up;
4. the lock is taken for the short step that applies the bundle whole (or
   refuses it whole: the sequence, region rule and pack are checked again).

The body limit of the path (`RequestLimits`) is the same maximum, so a body
declared or streamed longer is cut off at that size whatever happens above.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from registry.api.deps import GateDep, HostDep, NowDep, allow_public
from registry.api.gate import RegistryGate
from registry.api.limits import BodyStream
from registry.config import RegistrySettings
from registry.context import RegistryContext
from registry.joint_use.bundle import MAGIC, MAX_CLEAR_BYTES, clear_length
from registry.joint_use.errors import MalformedBundleError, StoreKeysError
from registry.joint_use.policy import NewerSequence, Transfer
from registry.joint_use.scheme import scheme_in_force
from registry.joint_use.sync import (
    ImportResult,
    Receiver,
    VerifiedBundle,
    apply_bundle,
    next_sequence,
    receiver,
    verify_bundle,
)
from registry.scheme import SchemeError

router = APIRouter(prefix="/api/v1/joint-use", tags=["joint-use"])

BUNDLE_MEDIA_TYPE = "application/octet-stream"
BUNDLES_PATH = router.prefix + "/bundles"
_PREAMBLE = len(MAGIC) + 2
_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "joint use is not configured at this store"},
    409: {"description": "replayed or out-of-order sequence; nothing changed"},
    413: {"description": "bundle larger than this store accepts; send smaller bundles"},
    415: {"description": "not application/octet-stream"},
    422: {"description": "refused whole (not for us, bad signature, not a member, region "
                         "rule, pack, malformed); nothing changed"},
    503: {"description": "joint use is configured but not usable here right now"},
}


def max_bundle_body(settings: RegistrySettings) -> int:
    """The body limit of the bundles path: the largest bundle this store accepts."""
    return settings.joint_use_bundle_max_bytes + MAX_CLEAR_BYTES


def _receiver(ctx: RegistryContext) -> Receiver:
    """This store's scheme and keys, read under the lock and released at once."""
    try:
        return receiver(ctx, scheme_in_force(ctx))
    except (SchemeError, StoreKeysError) as exc:
        raise HTTPException(503, f"joint use is not available at this store: {exc}") from None


def _apply(ctx: RegistryContext, rx: Receiver, verified: VerifiedBundle,
           now: datetime) -> ImportResult:
    """The short step under the lock: apply (or refuse) the verified bundle whole."""
    try:
        unchanged = scheme_in_force(ctx).sha256 == rx.scheme.sha256
    except (SchemeError, StoreKeysError):
        unchanged = False
    if not unchanged:
        raise HTTPException(503, "the joint-use scheme changed while the bundle was being "
                                 "checked; send it again")
    return apply_bundle(ctx, rx, verified, now)


async def _authenticated_body(request: Request, rx: Receiver, gate: RegistryGate,
                              limit: int) -> bytes:
    """The whole envelope, read only once its signed header says it is worth reading."""
    stream = BodyStream(request.stream())
    preamble = await stream.read_exactly(_PREAMBLE)
    if not preamble:
        raise HTTPException(422, "empty body: send the bundle's bytes")
    clear = preamble + await stream.read_exactly(clear_length(preamble) - len(preamble))
    sealed = rx.authenticate(clear)
    header = sealed.header
    NewerSequence().check(Transfer(
        rx.scheme, header.sender, rx.me, header.sequence, rx.former,
        expected_sequence=await gate.run(lambda ctx: next_sequence(ctx, header.sender))))
    if sealed.total_bytes > limit:
        raise HTTPException(413, f"the bundle is {sealed.total_bytes} bytes; this store accepts "
                                 f"at most {limit}: send smaller bundles")
    body = await stream.read_exactly(header.body_bytes)
    if len(body) != header.body_bytes or not await stream.at_end():
        raise MalformedBundleError("the bundle is not as long as its signed header declares "
                                   "(truncated or padded); nothing was imported")
    return clear + body


@router.post("/bundles", response_class=Response, responses={
    200: {"content": {BUNDLE_MEDIA_TYPE: {}}, "description": "applied; the signed receipt"},
    **_ERRORS}, openapi_extra={"requestBody": {"required": True, "content": {
        BUNDLE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
@allow_public  # authenticated by the bundle's signed header, then its signed content
async def push_bundle(request: Request, gate: GateDep, now: NowDep, host: HostDep) -> Response:
    """Authenticate, verify and apply one bundle whole (or refuse it whole); the receipt."""
    settings = host.registry
    if settings.joint_use_scheme is None:
        raise HTTPException(404, "joint use is not configured at this store")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != BUNDLE_MEDIA_TYPE:
        raise HTTPException(415, f"send the bundle as {BUNDLE_MEDIA_TYPE}")
    rx = await gate.run(_receiver)
    blob = await _authenticated_body(request, rx, gate, max_bundle_body(settings))
    verified = await run_in_threadpool(verify_bundle, rx, blob)  # decrypts: no lock held
    result = await gate.run(lambda ctx: _apply(ctx, rx, verified, now))
    return Response(result.receipt_blob, media_type=BUNDLE_MEDIA_TYPE, headers={
        "X-Mamoru-Sender": result.sender, "X-Mamoru-Sequence": str(result.sequence)})

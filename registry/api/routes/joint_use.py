"""Joint-use bundles over HTTPS: a member pushes the very bytes a bundle file would hold.

`POST /api/v1/joint-use/bundles` takes one bundle (application/octet-stream)
and answers with the signed, encrypted receipt for the sender, byte for byte
what `mamoru joint-use import` writes. The caller is not a person or an edge
box but a member store: it is authenticated by the bundle's own Ed25519
signature against the scheme adopted here (`import_bundle` checks it, with
the recipient, sequence, region rule and pack), so the route is public at the
HTTP layer and refuses, whole and with no change, everything a file import
refuses: 422 with the one-line reason (409 for a replayed or out-of-order
sequence, 503 while joint use is not configured here).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from registry.api.deps import ContextDep, NowDep, allow_public
from registry.joint_use.errors import SchemeError, StoreKeysError
from registry.joint_use.scheme import scheme_in_force
from registry.joint_use.sync import import_bundle

router = APIRouter(prefix="/api/v1/joint-use", tags=["joint-use"])

# A first sync of thousands of entries with their masked images; the body limit of this path.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
BUNDLE_MEDIA_TYPE = "application/octet-stream"
_ERRORS: dict[int | str, dict[str, str]] = {
    409: {"description": "replayed or out-of-order sequence; nothing changed"},
    413: {"description": "bundle too large"},
    415: {"description": "not application/octet-stream"},
    422: {"description": "refused whole (not for us, bad signature, not a member, region "
                         "rule, pack, malformed); nothing changed"},
    503: {"description": "joint use is not configured at this store"},
}


async def bundle_body(request: Request) -> bytes:
    """The raw bundle, read before the registry's lock is taken."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != BUNDLE_MEDIA_TYPE:
        raise HTTPException(415, f"send the bundle as {BUNDLE_MEDIA_TYPE}")
    body = await request.body()
    if not body:
        raise HTTPException(422, "empty body: send the bundle's bytes")
    return body


@router.post("/bundles", response_class=Response, responses={
    200: {"content": {BUNDLE_MEDIA_TYPE: {}}, "description": "applied; the signed receipt"},
    **_ERRORS})
@allow_public  # authenticated by the bundle's signature against the adopted scheme
def push_bundle(blob: Annotated[bytes, Depends(bundle_body)], ctx: ContextDep,
                now: NowDep) -> Response:
    """Verify and apply one bundle whole (or refuse it whole); answer with the receipt."""
    try:
        scheme = scheme_in_force(ctx)
    except (SchemeError, StoreKeysError) as exc:
        raise HTTPException(503, f"joint use is not available at this store: {exc}") from None
    result = import_bundle(ctx, scheme, blob, now)
    return Response(result.receipt_blob, media_type=BUNDLE_MEDIA_TYPE, headers={
        "X-Mamoru-Sender": result.sender, "X-Mamoru-Sequence": str(result.sequence)})

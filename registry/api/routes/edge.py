"""What an in-store edge box calls: send an alert, poll and fetch the watchlist index or a delta.

Every route here needs the box's bearer token (`mamoru device add`). A 4xx
answer is final for that request (the box drops or fixes it; retrying the
same bytes gives the same answer); a 5xx or a network failure is worth a
retry, and retrying an alert is safe because its `alert_id` makes it idempotent.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Annotated, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from kernel.watchlist_index import read_index_header, read_index_header_from
from registry.accounts.devices import deliver_index_key, report_box_status
from registry.alerts.queue import ReceivedSnapshot, receive_alert
from registry.api.deltas import DeltaCache
from registry.api.deps import ContextDep, CurrentDevice, GateDep, NowDep, current_device
from registry.api.schemas import (
    AlertIn,
    AlertReceipt,
    BoxStatusIn,
    IndexKeyOut,
    IndexVersionOut,
)
from registry.domain import BoxStatus

router = APIRouter(prefix="/api/v1/edge", tags=["edge"], dependencies=[Depends(current_device)])

_CHUNK = 1 << 20
_NO_INDEX = "no watchlist index is published yet"
_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "missing, unknown or disabled device token"},
    413: {"description": "body or snapshot too large"},
    422: {"description": "malformed body or unusable snapshot"},
}


@router.post("/alerts", status_code=201, response_model=AlertReceipt,
             responses={200: {"model": AlertReceipt, "description": "already received"},
                        409: {"description": "alert id used by another device"},
                        410: {"description": "the entry is not active (erased, expired, never "
                                              "approved): drop the alert and its snapshot"},
                        **_ERRORS})
async def post_alert(payload: AlertIn, gate: GateDep, device: CurrentDevice, now: NowDep,
                     response: Response) -> AlertReceipt:
    """Store one match for staff to confirm or dismiss; 201 new, 200 a re-delivery.

    The snapshot is decoded and encoded in a worker thread before the
    registry is taken: the registry's turn is held for the checks and the
    write only (a burst of alerts once held it ~25 ms each for the image work).
    """
    snapshot = await anyio.to_thread.run_sync(ReceivedSnapshot.of, payload.snapshot_png_b64)
    alert_id, created = await gate.run(lambda ctx: receive_alert(
        ctx, device=device, payload=payload, now=now, snapshot=snapshot))
    if not created:
        response.status_code = 200
    return AlertReceipt(alert_id=alert_id, created=created)


@router.post("/status", status_code=204, responses=_ERRORS)
async def post_status(report: BoxStatusIn, gate: GateDep, device: CurrentDevice,
                      now: NowDep) -> Response:
    """The box's own state; a stale watchlist (no alerts) shows on the tablet at once,
    whichever worker serves it (the report is kept in the registry database).

    On the status reports' own connection (`RegistryGate.report`): one
    statement, never behind the alerts holding the registry's turn.
    """
    status = BoxStatus(device=device.name, reported_at=now, **report.model_dump())
    await gate.report(lambda ctx: report_box_status(ctx, status))
    return Response(status_code=204)


@router.get("/index/version", response_model=IndexVersionOut, responses=_ERRORS)
async def index_version(gate: GateDep) -> IndexVersionOut:
    """The published version: poll this, download only when it changed.

    Read from the published file's header: no database, no registry turn, so a
    poll is answered while alerts are being written (registry.api.gate). An
    `async` route with the one file read in a thread: a sync route costs a
    pooled thread for the route and another for its answer's serialisation.
    """
    header = await anyio.to_thread.run_sync(read_index_header, gate.paths.index)
    if header is None:
        raise HTTPException(503, _NO_INDEX)
    return IndexVersionOut(version=header.version, pack=header.pack)


@router.get("/index", response_class=StreamingResponse, responses=_ERRORS)
def download_index(gate: GateDep) -> StreamingResponse:
    """The encrypted index file as published, byte for byte; the box holds the index key."""
    path = gate.paths.index
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise HTTPException(503, _NO_INDEX) from None
    try:
        header = read_index_header_from(handle, path)
        size = os.fstat(handle.fileno()).st_size
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    # One handle for header and bytes: a publish meanwhile replaces the path, not this file.
    return StreamingResponse(
        _chunks(handle), media_type="application/octet-stream",
        headers={"Content-Length": str(size), "ETag": f'"{header.version}"',
                 "X-Mamoru-Index-Version": str(header.version),
                 "X-Mamoru-Index-Pack": header.pack},
    )


@router.get("/index/delta", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}},
          "description": "the sealed delta from `since` to the newest version"},
    410: {"description": "`since` is unknown or too old: fetch the whole index"},
    **_ERRORS})
async def download_index_delta(
        request: Request, gate: GateDep,
        since: Annotated[int, Query(ge=0, le=2**63 - 1, description="the version the box holds")],
) -> Response:
    """What changed since the version the box holds, sealed under the index key (issue 15).

    A box polls `index/version` and, when it changed, fetches this instead of
    the whole index: an erasure moves a few hundred bytes, not the list. Built
    once per worker and published version on the read-only connection
    (`registry.api.deltas`), never waiting for a writer's turn.
    """
    deltas = request.app.state.deltas
    assert isinstance(deltas, DeltaCache)
    blob = await deltas.sealed(gate, since)
    if blob is None:
        raise HTTPException(410, f"no delta from index version {since} (unknown or too old): "
                                 "fetch the whole index from /api/v1/edge/index")
    return Response(blob, media_type="application/octet-stream",
                    headers={"X-Mamoru-Index-Since": str(since)})


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


@router.get("/index/key", response_model=IndexKeyOut, responses=_ERRORS)
def index_key(ctx: ContextDep, device: CurrentDevice, now: NowDep,
              response: Response) -> IndexKeyOut:
    """The current index key, for an active box of a chain, which holds no master key.

    The box keeps it in memory and sealed under its own box key, and asks
    again when an index stops opening (after `mamoru key rotate`). Never
    cached on the way (`no-store`); each delivery is audited by device name.
    """
    key = deliver_index_key(ctx, device, now)
    response.headers["Cache-Control"] = "no-store"
    return IndexKeyOut(key=base64.b64encode(key).decode("ascii"))

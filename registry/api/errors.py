"""Failures as HTTP answers: short, typed, and never a stack trace or a secret.

A `RegistryError` the caller caused becomes a 4xx carrying its one-line
message, as the CLI prints it. Failures that are the server's own (a key that
does not open a file, an evidence file that fails authentication) and anything
unexpected become a bare 500: their details name files and internals, so they
go to the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kernel.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    RuleViolationError,
    SelfApprovalError,
)
from registry.alerts.queue import AlertConflictError, SnapshotTooLargeError, UnknownEntryError
from registry.api.uploads import NotAnImageError, UploadTooLargeError
from registry.joint_use.errors import BundleRefusedError, SequenceError

logger = logging.getLogger("mamoru.registry.api")

# Looked up along the exception's MRO, so a subclass may override its base.
STATUS_OF: dict[type[RegistryError], int] = {
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    AlertConflictError: 409,
    ConflictError: 409,  # decided, closed or erased meanwhile
    SelfApprovalError: 403,  # G-REG-2: this person may not approve this entry
    SnapshotTooLargeError: 413,
    UnknownEntryError: 410,  # the entry left the list: the box drops the alert (G-REG-4)
    UploadTooLargeError: 413,
    NotAnImageError: 422,
    RuleViolationError: 422,  # incl. QualityRejectedError (G-REG-1)
    BundleRefusedError: 422,  # a joint-use bundle refused whole; nothing changed
    SequenceError: 409,  # replayed or out of order
}
INTERNAL_ERROR = "internal error; the registry's log has the details"


def status_of(exc: RegistryError) -> int | None:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return None


def _registry_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    status = status_of(exc)
    if status is None:
        logger.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)
    # Edge boxes authenticate with a bearer token; people with the session cookie.
    bearer = status == 401 and request.url.path.startswith("/api/v1/edge")
    headers = {"WWW-Authenticate": "Bearer"} if bearer else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Where and what, without echoing the input back (it may be an 11 MB snapshot)."""
    assert isinstance(exc, RequestValidationError)
    problems: list[dict[str, Any]] = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", "invalid"),
         "type": error.get("type", "value_error")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(problems)}, status_code=422)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Passed explicitly: the handler may run after the `except` that caught it has ended,
    # where `logger.exception` finds no exception and logs "NoneType: None".
    logger.error("unexpected failure on %s %s", request.method, request.url.path,
                 exc_info=exc)
    return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)

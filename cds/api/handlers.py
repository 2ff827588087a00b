"""Errors to HTTP answers, in one place: the status comes from ``cds.errors.OUTCOMES`` by code.

401 is bare (``WWW-Authenticate: Bearer``, no body: the reason would help an attacker); other
errors answer ``{"error": code, "message": reason}`` where the reason names fields, never values;
a 5xx says only that the evaluation failed. A service call's audit row is written here too.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cds.api.audit import CallRecord, finish
from cds.errors import CdsError, Unauthorized, outcome_of

log = logging.getLogger("cds.api")


def error_response(error: CdsError) -> Response:
    """The HTTP answer for ``error``."""
    status = outcome_of(error).http_status
    if isinstance(error, Unauthorized):
        return Response(status_code=status, headers={"WWW-Authenticate": "Bearer"})
    message = error.reason if status < 500 else "internal evaluation failure"
    return JSONResponse({"error": error.code, "message": message}, status_code=status)


async def on_cds_error(request: Request, error: Exception) -> Response:
    """Answer a CdsError raised anywhere in a route or dependency, and audit the call."""
    assert isinstance(error, CdsError)
    status = outcome_of(error).http_status
    if status >= 500:
        log.error("%s: %s", error.code, type(error).__name__, exc_info=error)
    elif isinstance(error, Unauthorized):
        log.debug("401: %s", error.reason)
    call = getattr(request.state, "call", None)
    if isinstance(call, CallRecord):
        await finish(request.app.state.runtime, call, status, None, error.code)
    return error_response(error)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(CdsError, on_cds_error)

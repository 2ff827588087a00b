"""Dependencies, declared once: the worker's Runtime, and an authenticated call to a known service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cds.api.audit import CallRecord
from cds.api.runtime import Runtime
from cds.api.services import Service
from cds.errors import UnknownService


async def runtime(request: Request) -> Runtime:
    """The worker's shared state (async: FastAPI runs a plain ``def`` dependency in its thread
    pool, one thread hop per request for an attribute read)."""
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


async def _open(
    request: Request, rt: Runtime, endpoint: str, service_id: str, paths: tuple[str, ...]
) -> CallRecord:
    call = CallRecord(endpoint, service_id)
    request.state.call = call  # the error handlers audit the call whatever goes wrong next
    if service_id not in rt.services:
        raise UnknownService(f"no service {service_id!r}")
    call.known_service = True
    if rt.verifier is not None:
        claims = await rt.verifier.verify(request.headers.get("authorization"), paths)
        call.issuer = claims.iss
    return call


async def service_call(service_id: str, request: Request, rt: RuntimeDep) -> CallRecord:
    """A call to ``POST /cds-services/{id}``: the service exists and the caller's JWT names it in ``aud``."""
    return await _open(request, rt, "service", service_id, (f"/cds-services/{service_id}",))


async def feedback_call(service_id: str, request: Request, rt: RuntimeDep) -> CallRecord:
    """A feedback call: ``aud`` may name the feedback URL or the service URL."""
    paths = (f"/cds-services/{service_id}/feedback", f"/cds-services/{service_id}")
    return await _open(request, rt, "feedback", service_id, paths)


def service_of(call: CallRecord, rt: Runtime) -> Service:
    """The service a call was opened for."""
    return rt.services[call.service_id]


ServiceCall = Annotated[CallRecord, Depends(service_call)]
FeedbackCall = Annotated[CallRecord, Depends(feedback_call)]

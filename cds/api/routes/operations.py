"""``/healthz`` and ``/metrics`` for the people who run the service."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from cds.api.deps import RuntimeDep

router = APIRouter(tags=["Operations"])


@router.get("/healthz")
async def healthz(rt: RuntimeDep) -> JSONResponse:
    """Liveness and readiness: rules loaded, database reachable."""
    try:
        ok = await anyio.to_thread.run_sync(rt.store.ping)
    except Exception:  # the database is down: report, do not crash
        ok = False
    return JSONResponse(
        {
            "status": "ok" if ok else "degraded",
            "rulesets": rt.rulesets.split(","),
            "database": "ok" if ok else "unavailable",
        },
        status_code=200 if ok else 503,
    )


@router.get("/metrics", response_class=Response)
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus exposition."""
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")

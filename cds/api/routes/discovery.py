"""``GET /cds-services``: the services, their hooks and prefetch templates."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cds.api import wire
from cds.api.deps import RuntimeDep

router = APIRouter(tags=["CDS Hooks"])


@router.get("/cds-services", response_model=wire.Discovery)
async def cds_discovery(rt: RuntimeDep) -> Response:
    """Discovery: the services, their hooks and prefetch templates (no patient data, no auth)."""
    rt.metrics.requests.labels("discovery", "", "", "200").inc()
    return Response(rt.discovery_body, media_type="application/json")

"""``POST /cds-services/{id}``: a CDS Hooks call answered with cards."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds.api import wire
from cds.api.audit import finish
from cds.api.call import answer
from cds.api.deps import RuntimeDep, ServiceCall, service_of

router = APIRouter(tags=["CDS Hooks"])


@router.post(
    "/cds-services/{service_id}",
    response_model=wire.CardsResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}}},
        },
    },
    responses={
        400: {"model": wire.ErrorBody},
        401: {"description": "JWT missing or invalid (no body)"},
        404: {"model": wire.ErrorBody},
        412: {"model": wire.ErrorBody},
        413: {"model": wire.ErrorBody},
    },
)
async def cds_service(service_id: str, request: Request, call: ServiceCall, rt: RuntimeDep) -> Response:
    """Call a service with a CDS Hooks request; answers cards (and systemActions when apt)."""
    rendered = await answer(rt, service_of(call, rt), await request.body(), call)
    body: dict[str, Any] = {"cards": rendered.cards}
    if rendered.system_actions:
        body["systemActions"] = rendered.system_actions
    await finish(rt, call, 200, rendered, None)
    return Response(orjson.dumps(body), media_type="application/json")

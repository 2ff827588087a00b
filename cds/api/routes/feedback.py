"""``POST /cds-services/{id}/feedback``: what the clinician did with our cards."""

from __future__ import annotations

from datetime import timedelta

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from cds.api import wire
from cds.api.audit import finish
from cds.api.call import parse_json
from cds.api.deps import FeedbackCall, RuntimeDep
from cds.api.store import FeedbackItem, stamp
from cds.errors import RequestRejected, UnknownCard

router = APIRouter(tags=["CDS Hooks"])


def _item(f: wire.Feedback) -> FeedbackItem:
    reason = f.overrideReason.reason if f.overrideReason else None
    return FeedbackItem(
        card=f.card,
        outcome=f.outcome,
        outcome_timestamp=f.outcomeTimestamp,
        reason_system=reason.system if reason else None,
        reason_code=reason.code if reason else None,
        reason_display=reason.display if reason else None,
        has_comment=bool(f.overrideReason and f.overrideReason.userComment),
        accepted=tuple(a.id for a in f.acceptedSuggestions or ()),
    )


@router.post(
    "/cds-services/{service_id}/feedback",
    response_model=wire.FeedbackAck,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
        }
    },
    responses={
        400: {"model": wire.ErrorBody},
        401: {"description": "JWT missing or invalid (no body)"},
        404: {"model": wire.ErrorBody},
        413: {"model": wire.ErrorBody},
    },
)
async def cds_feedback(service_id: str, request: Request, call: FeedbackCall, rt: RuntimeDep) -> JSONResponse:
    """Record accepted/overridden outcomes of cards (idempotent: a repeated event is ignored)."""
    try:
        parsed = wire.FeedbackRequest.model_validate(parse_json(await request.body()))
    except ValidationError as exc:
        raise RequestRejected(wire.describe(exc)) from exc
    uuids = sorted({f.card for f in parsed.feedback})
    cards = await anyio.to_thread.run_sync(lambda: rt.store.issued(service_id, uuids))
    unknown = [u for u in uuids if u not in cards]
    if unknown:
        raise UnknownCard(f"{len(unknown)} card uuid(s) were not issued by {service_id}")
    items = [_item(f) for f in parsed.feedback]
    days = rt.settings.override_quiet_days
    until = stamp(rt.clock() + timedelta(days=days)) if days > 0 else None
    stored = await anyio.to_thread.run_sync(lambda: rt.store.add_feedback(service_id, items, cards, until))
    await finish(rt, call, 200, None, None)
    return JSONResponse({"stored": stored, "duplicates": len(items) - stored})

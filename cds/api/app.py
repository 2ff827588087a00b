"""The CDS Hooks 2.0 service: ``create_app(settings)`` builds one FastAPI app per worker process.

Per worker: the rule library and Evaluator are built once (durable_rules evaluates one patient at
a time per process, hence ``--workers``), plus one database engine, one HTTP client for FHIR
fallbacks and JWKS, and the metrics. Per call: authenticate, validate, gather the patient's data
(prefetch, then fallback), evaluate (once per draft order on order hooks), render cards, audit.
Status codes: 200 cards; 400 malformed request (JSON error body); 401 bare; 404 unknown service;
412 data not obtainable; 413 body too large. Bad input never produces a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds.api import wire
from cds.api.fhir import BadPrefetch, DataUnavailable, FhirAccess, FhirFetcher
from cds.api.metrics import Metrics
from cds.api.security import JwtVerifier, KeyCache, Unauthorized
from cds.api.services import BY_ID, PATIENT_KEY, discovery, prefetch_templates
from cds.api.settings import Settings
from cds.api.store import FeedbackItem, IssuedCard, Store
from cds.engine.library import load_library
from cds.errors import CdsError, InputRejected
from cds.evaluate import Evaluator, default_rules_dir, parse_as_of
from cds.fhir.source import is_r4_resource_type, raw_patient_from_resources
from cds.findings.cards import CARD_EXTENSION, CardContext, Rendered, render
from cds.findings.model import Finding

JSON = dict[str, Any]
log = logging.getLogger("cds.api")

ORDER_HOOKS = {"order-select", "order-sign"}
_DRAFT_STATUSES_IGNORED = {"entered-in-error", "cancelled", "revoked", "completed", "stopped"}


class _Reply(Exception):
    """Ends a call early with a status, an optional error body and an audit reason."""

    def __init__(self, status: int, error: str | None = None, message: str = "") -> None:
        super().__init__(message or error or str(status))
        self.status, self.error, self.message = status, error, message

    def response(self) -> Response:
        if self.status == 401:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse(
            {"error": self.error or "error", "message": self.message or self.error or "error"},
            status_code=self.status,
        )


class BodyLimit:
    """Refuse bodies above ``limit`` bytes with 413 before any parsing (declared length or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = JSONResponse(
            {"error": "payload-too-large", "message": f"body above {self.limit} bytes"}, status_code=413
        )
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@dataclass
class Runtime:
    """What one worker builds once and every call shares."""

    settings: Settings
    evaluator: Evaluator
    store: Store
    metrics: Metrics
    templates: dict[str, str]
    discovery_body: bytes
    rulesets: str
    parameters: dict[str, Any]
    ruleset_labels: dict[str, str]
    as_of: datetime | None
    http: httpx.AsyncClient | None = None
    fetcher: FhirFetcher | None = None
    verifier: JwtVerifier | None = None
    keys: KeyCache | None = field(default=None, repr=False)


def _dedupe(resources: list[JSON]) -> list[JSON]:
    seen: set[tuple[str, str]] = set()
    out: list[JSON] = []
    for resource in resources:
        rid = resource.get("id")
        if isinstance(rid, str):
            key = (str(resource["resourceType"]), rid)
            if key in seen:
                continue
            seen.add(key)
        out.append(resource)
    return out


def _drafts(hook: str, context: wire.OrderSignContext) -> list[JSON]:
    """The MedicationRequests to check: the selected ones (order-select) or all (order-sign)."""
    resources = context.draftOrders.resources()
    for resource in resources:
        if not is_r4_resource_type(str(resource["resourceType"])):
            raise _Reply(
                400, "not-r4", f"draftOrders holds a {resource['resourceType']}, not a FHIR R4 resource"
            )
    meds = [
        r
        for r in resources
        if r["resourceType"] == "MedicationRequest" and r.get("status") not in _DRAFT_STATUSES_IGNORED
    ]
    if isinstance(context, wire.OrderSelectContext):
        chosen = set(context.selections)
        meds = [r for r in meds if f"MedicationRequest/{r.get('id')}" in chosen]
    for med in meds:
        subject = (
            (med.get("subject") or {}).get("reference") if isinstance(med.get("subject"), dict) else None
        )
        if subject is not None and subject.rsplit("/", 1)[-1] != context.patientId:
            raise _Reply(400, "bad-request", "a draft order is for another patient than context.patientId")
    return meds


def _order_relevant(result_facts: Any) -> bool:
    order = result_facts.order
    return bool(order.present and (order.her2_directed or order.agent not in (None, "other")))


def _feedback_item(f: wire.Feedback) -> FeedbackItem:
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


def create_app(settings: Settings) -> FastAPI:
    """Build the service for one worker process (rules loaded here, once)."""
    settings.check()
    rules_dir = Path(settings.rules_dir) if settings.rules_dir else default_rules_dir()
    library = load_library(rules_dir)
    templates = prefetch_templates(library)
    rt = Runtime(
        settings=settings,
        evaluator=Evaluator(library),
        store=Store(settings.database_url),
        metrics=Metrics(),
        templates=templates,
        discovery_body=orjson.dumps(discovery(library)),
        rulesets=",".join(f"{r.name}@{r.version}" for r in library.rulesets),
        parameters=dict(library.parameters),
        ruleset_labels={r.name: f"HER2 CDS: {r.name} {r.version}" for r in library.rulesets},
        as_of=parse_as_of(settings.as_of) if settings.as_of else None,
    )
    if settings.insecure_dev:
        log.warning("INSECURE DEV MODE: unsigned CDS Hooks calls are accepted. Never use with real patients.")
    if rt.as_of is not None:
        log.warning("as-of pinned to %s (non-standard; tests and demos only)", rt.as_of.isoformat())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(
            settings.fhir_timeout_seconds, connect=min(1.0, settings.fhir_timeout_seconds)
        )
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, limits=httpx.Limits(max_connections=64)
        ) as client:
            rt.http = client
            rt.fetcher = FhirFetcher(
                client,
                timeout_seconds=settings.fhir_timeout_seconds,
                max_pages=settings.fhir_max_pages,
                allowed_servers=settings.fhir_servers,
            )
            if not settings.insecure_dev:
                rt.keys = KeyCache(settings.issuers, client, settings.jwks_cache_seconds)
                rt.verifier = JwtVerifier(
                    rt.keys,
                    rt.store,
                    base_url=settings.base_url,
                    skew=settings.clock_skew_seconds,
                    max_lifetime=settings.max_token_lifetime_seconds,
                )
            yield
        rt.store.dispose()

    app = FastAPI(
        title="HER2 CDS Hooks service",
        version="1.0.0",
        description="CDS Hooks 2.0 services for HER2-positive breast cancer therapy and draft-order safety. "
        "See docs/cds-hooks.md.",
        lifespan=lifespan,
    )
    app.state.runtime = rt

    async def authenticate(request: Request, paths: tuple[str, ...]) -> str | None:
        if settings.insecure_dev:
            return None
        assert rt.verifier is not None
        try:
            claims = await rt.verifier.verify(request.headers.get("authorization"), paths)
        except Unauthorized as exc:
            log.debug("401: %s", exc)
            raise _Reply(401, "unauthorized", str(exc)) from exc
        return claims.iss

    @app.get("/cds-services", response_model=wire.Discovery, tags=["CDS Hooks"])
    async def cds_discovery() -> Response:
        """Discovery: the services, their hooks and prefetch templates (no patient data, no auth)."""
        rt.metrics.requests.labels("discovery", "", "", "200").inc()
        return Response(rt.discovery_body, media_type="application/json")

    async def evaluate_call(service_id: str, request: Request, audit: dict[str, Any]) -> Rendered:
        """The call up to its cards; ``audit`` collects what the audit row needs as it becomes known."""
        service = BY_ID.get(service_id)
        if service is None:
            raise _Reply(404, "unknown-service", f"no service {service_id!r}")
        audit["issuer"] = await authenticate(request, (f"/cds-services/{service_id}",))
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise _Reply(400, "bad-json", "request body is not JSON") from exc
        if not isinstance(body, dict):
            raise _Reply(400, "bad-request", "request body must be a JSON object")
        try:
            call = wire.HookRequest.model_validate(body)
        except ValidationError as exc:
            raise _Reply(400, "bad-request", wire.describe(exc)) from exc
        audit["hook"], audit["hook_instance"] = call.hook, call.hookInstance
        if call.hook not in service.hooks:
            raise _Reply(
                400, "wrong-hook", f"service {service_id} answers {', '.join(service.hooks)}, not {call.hook}"
            )
        try:
            context = wire.CONTEXTS[call.hook].model_validate(call.context)
        except ValidationError as exc:
            raise _Reply(400, "bad-context", wire.describe(exc, "context")) from exc
        audit["patient_id"] = context.patientId
        log.debug("call %s %s patient %s", service_id, call.hookInstance, context.patientId)
        drafts: list[JSON] = []
        if isinstance(context, wire.OrderSignContext):
            drafts = _drafts(call.hook, context)
            if not drafts:
                return Rendered([], [], [])
        access = FhirAccess(
            call.fhirServer, call.fhirAuthorization.access_token if call.fhirAuthorization else None
        )
        assert rt.fetcher is not None
        prefetch = call.prefetch or {}
        fetched_keys = [
            k
            for k in rt.templates
            if k not in prefetch
            or (isinstance(prefetch[k], dict) and prefetch[k].get("resourceType") == "OperationOutcome")
        ]
        try:
            data = await rt.fetcher.gather(rt.templates, call.prefetch, context.patientId, access)
        except DataUnavailable as exc:
            if fetched_keys:
                rt.metrics.fhir_fallback.labels("failed").inc()
            raise _Reply(412, "data-unavailable", str(exc)) from exc
        except BadPrefetch as exc:
            raise _Reply(400, "bad-prefetch", str(exc)) from exc
        if fetched_keys:
            rt.metrics.fhir_fallback.labels("ok").inc()
        patient = data[PATIENT_KEY][0]
        if patient.get("resourceType") != "Patient" or patient.get("id") != context.patientId:
            raise _Reply(400, "bad-prefetch", "the patient data is not the Patient of context.patientId")
        resources = _dedupe([r for key in rt.templates for r in data[key]])
        as_of = rt.as_of or datetime.now(UTC).replace(microsecond=0)

        def run() -> Rendered:
            raw = raw_patient_from_resources(resources, f"hook {call.hookInstance}")
            groups: list[tuple[list[Finding], CardContext]] = []
            catalogue = rt.evaluator.library.catalogue
            base = CardContext(
                service_id, raw.patient_ref, rt.parameters, None, rt.ruleset_labels, catalogue
            )
            if not drafts:
                groups.append((rt.evaluator.evaluate(raw, as_of=as_of).evaluation.findings, base))
            for draft in drafts:
                result = rt.evaluator.evaluate(raw, as_of=as_of, order=draft)
                if _order_relevant(result.facts):
                    ctx = CardContext(
                        service_id,
                        raw.patient_ref,
                        rt.parameters,
                        f"MedicationRequest/{draft.get('id')}",
                        rt.ruleset_labels,
                        catalogue,
                    )
                    groups.append((result.evaluation.findings, ctx))
            return render(groups)

        try:
            rendered = await anyio.to_thread.run_sync(run)
        except InputRejected as exc:
            raise _Reply(400, "input-rejected", str(exc).split(": ", 1)[-1]) from exc
        return rendered

    async def record(
        service_id: str,
        status: int,
        audit: dict[str, Any],
        rendered: Rendered | None,
        started: float,
        reason: str | None,
    ) -> None:
        latency = (time.perf_counter() - started) * 1000
        issued = [
            IssuedCard(
                c["uuid"],
                c["extension"][CARD_EXTENSION]["codes"][0],
                c["extension"][CARD_EXTENSION]["rules"][0]["id"],
                c["extension"][CARD_EXTENSION]["rules"][0]["version"],
            )
            for c in (rendered.cards if rendered else [])
        ]
        hook = audit.get("hook")
        rt.metrics.requests.labels(
            "service", service_id if service_id in BY_ID else "unknown", hook or "", str(status)
        ).inc()
        if status == 200:
            rt.metrics.latency.labels(service_id, hook or "").observe(latency / 1000)
            for code in rendered.codes if rendered else []:
                rt.metrics.findings.labels(code).inc()
        log.info(
            "service=%s hook=%s hookInstance=%s status=%d cards=%d latency_ms=%.1f",
            service_id,
            hook,
            audit.get("hook_instance"),
            status,
            len(issued),
            latency,
        )
        if service_id not in BY_ID:
            return
        await anyio.to_thread.run_sync(
            lambda: rt.store.record_call(
                service=service_id,
                hook=hook,
                hook_instance=audit.get("hook_instance"),
                status=status,
                patient_id=audit.get("patient_id"),
                rulesets=rt.rulesets,
                codes=rendered.codes if rendered else [],
                cards=issued,
                latency_ms=latency,
                issuer=audit.get("issuer"),
                reason=reason,
            )
        )

    @app.post(
        "/cds-services/{service_id}",
        response_model=wire.CardsResponse,
        tags=["CDS Hooks"],
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
    async def cds_service(service_id: str, request: Request) -> Response:
        """Call a service with a CDS Hooks request; answers cards (and systemActions when apt)."""
        started = time.perf_counter()
        audit: dict[str, Any] = {}
        try:
            rendered = await evaluate_call(service_id, request, audit)
        except _Reply as reply:
            await record(service_id, reply.status, audit, None, started, reply.error)
            return reply.response()
        except CdsError as exc:  # an engine failure on valid input: a bug, reported without detail
            log.exception("evaluation failed: %s", type(exc).__name__)
            await record(service_id, 500, audit, None, started, "evaluation-failed")
            return JSONResponse({"error": "evaluation-failed", "message": "internal evaluation failure"}, 500)
        body: JSON = {"cards": rendered.cards}
        if rendered.system_actions:
            body["systemActions"] = rendered.system_actions
        await record(service_id, 200, audit, rendered, started, None)
        return Response(orjson.dumps(body), media_type="application/json")

    @app.post(
        "/cds-services/{service_id}/feedback",
        response_model=wire.FeedbackAck,
        tags=["CDS Hooks"],
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
    async def cds_feedback(service_id: str, request: Request) -> Response:
        """Record accepted/overridden outcomes of cards (idempotent: a repeated event is ignored)."""
        try:
            if service_id not in BY_ID:
                raise _Reply(404, "unknown-service", f"no service {service_id!r}")
            await authenticate(
                request, (f"/cds-services/{service_id}/feedback", f"/cds-services/{service_id}")
            )
            try:
                body = orjson.loads(await request.body())
                parsed = wire.FeedbackRequest.model_validate(body)
            except orjson.JSONDecodeError as exc:
                raise _Reply(400, "bad-json", "request body is not JSON") from exc
            except ValidationError as exc:
                raise _Reply(400, "bad-request", wire.describe(exc)) from exc
            uuids = sorted({f.card for f in parsed.feedback})
            cards = await anyio.to_thread.run_sync(lambda: rt.store.issued(service_id, uuids))
            unknown = [u for u in uuids if u not in cards]
            if unknown:
                raise _Reply(
                    400, "unknown-card", f"{len(unknown)} card uuid(s) were not issued by {service_id}"
                )
            items = [_feedback_item(f) for f in parsed.feedback]
            stored = await anyio.to_thread.run_sync(lambda: rt.store.add_feedback(service_id, items, cards))
        except _Reply as reply:
            rt.metrics.requests.labels(
                "feedback", service_id if service_id in BY_ID else "unknown", "", str(reply.status)
            ).inc()
            return reply.response()
        rt.metrics.requests.labels("feedback", service_id, "", "200").inc()
        return JSONResponse({"stored": stored, "duplicates": len(items) - stored})

    @app.get("/healthz", tags=["Operations"])
    async def healthz() -> JSONResponse:
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

    @app.get("/metrics", tags=["Operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus exposition."""
        return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(wire.HookRequest, "validation"), (wire.FeedbackRequest, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization"],
            max_age=600,
        )
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: settings come from ``$CDS_API_SETTINGS``."""
    return create_app(Settings.from_env())

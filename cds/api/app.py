"""The CDS Hooks 2.0 service: ``create_app(settings)`` builds one FastAPI app per worker process.

Per worker (``cds.api.runtime``): the rule library and Evaluator are built once (durable_rules
evaluates one patient at a time per process, hence ``--workers``), plus one database engine, one
HTTP client for FHIR fallbacks and JWKS, and the metrics. Per call (``cds.api.call``):
authenticate (``cds.api.deps``), validate, plan with the hook's handler (``cds.api.hooks``),
gather the patient's data (prefetch, then fallback), evaluate, render cards, audit. Errors are
``cds.errors`` classes answered by ``cds.api.handlers`` (status from the one error table):
200 cards; 400 malformed request; 401 bare; 404 unknown service; 412 data not obtainable;
413 body too large. Bad input never produces a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from cds import config
from cds.api import handlers, routes, wire
from cds.api.middleware import BodyLimit
from cds.api.runtime import build_runtime, lifespan
from cds.api.settings import Settings


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the request models the routes read from the raw body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _, defs = models_json_schema(
        [(wire.HookRequest, "validation"), (wire.FeedbackRequest, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings) -> FastAPI:
    """Build the service for one worker process (rules loaded here, once)."""
    app = FastAPI(
        title="HER2 CDS Hooks service",
        version="1.0.0",
        description="CDS Hooks 2.0 services for HER2-positive breast cancer therapy and draft-order safety. "
        "See docs/cds-hooks.md.",
        lifespan=lifespan,
        docs_url=None,  # served by routes.docs from local assets (no CDN)
        redoc_url=None,
    )
    app.state.runtime = build_runtime(settings)
    for module in (routes.discovery, routes.services, routes.feedback, routes.operations, routes.docs):
        app.include_router(module.router)
    app.mount(routes.docs.ASSETS, routes.docs.assets(), name="docs-assets")
    handlers.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
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
    app = create_app(Settings.from_env())
    config.tune_gc()  # a serving worker lives long: see cds.config.tune_gc
    return app

"""What one worker process builds once and every call shares: rules, evaluator, store, clients."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from cds import config
from cds.api.fhir import FhirFetcher
from cds.api.metrics import Metrics
from cds.api.prefetched import PrefetchMemo
from cds.api.security import JwtVerifier, KeyCache
from cds.api.services import Service, discovery, prefetch_templates, services
from cds.api.settings import Settings
from cds.api.store import Store
from cds.engine.library import RuleLibrary, load_library
from cds.evaluate import Evaluator, parse_as_of
from cds.findings.wording import Wording, load_wording

log = logging.getLogger("cds.api")


@dataclass
class Runtime:
    """The per-worker state: built by ``build_runtime``, clients opened by ``lifespan``."""

    settings: Settings
    library: RuleLibrary
    evaluator: Evaluator
    store: Store
    metrics: Metrics
    services: dict[str, Service]
    templates: dict[str, str]
    discovery_body: bytes
    rulesets: str
    parameters: dict[str, Any]
    ruleset_labels: dict[str, str]
    as_of: datetime | None
    wording: Wording
    # the service's clock (override-aware suppression); tests pin it
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # what a prefetch came to, by its text (cds/api/prefetched.py)
    prefetched: PrefetchMemo = field(default_factory=PrefetchMemo)
    http: httpx.AsyncClient | None = None
    fetcher: FhirFetcher | None = None
    verifier: JwtVerifier | None = None
    keys: KeyCache | None = field(default=None, repr=False)


def drug_names(library: RuleLibrary) -> dict[str, str]:
    """Agent key -> the name cards show (T-DM1), from the drug catalogue."""
    return {key: library.catalogue.display(key) for key in library.catalogue.agent_ids()}


def build_runtime(settings: Settings) -> Runtime:
    """Load the rules (once per worker) and open the store."""
    settings.check()
    rules_dir = config.rules_dir(Path(settings.rules_dir) if settings.rules_dir else None)
    library = load_library(rules_dir)
    published = services(shared_order_id=settings.shared_order_service)
    rt = Runtime(
        settings=settings,
        library=library,
        evaluator=Evaluator(library, remember_verdicts=True),  # EHRs call again for the same patient
        store=Store(settings.database_url),
        metrics=Metrics(),
        services={s.id: s for s in published},
        templates=prefetch_templates(library),
        discovery_body=orjson.dumps(discovery(library, published)),
        rulesets=",".join(f"{r.name}@{r.version}" for r in library.rulesets),
        parameters=dict(library.parameters),
        ruleset_labels={r.name: f"HER2 CDS: {r.name} {r.version}" for r in library.rulesets},
        as_of=parse_as_of(settings.as_of) if settings.as_of else None,
        wording=load_wording(rules_dir, drug_names(library)),
    )
    if settings.insecure_dev:
        log.warning("INSECURE DEV MODE: unsigned CDS Hooks calls are accepted. Never use with real patients.")
    if rt.as_of is not None:
        log.warning("as-of pinned to %s (non-standard; tests and demos only)", rt.as_of.isoformat())
    return rt


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the shared HTTP client (FHIR fallback, JWKS) and the JWT verifier; close them on exit."""
    rt: Runtime = app.state.runtime
    settings = rt.settings
    timeout = httpx.Timeout(
        settings.fhir_timeout_seconds,
        connect=min(settings.fhir_connect_timeout_seconds, settings.fhir_timeout_seconds),
    )
    limits = httpx.Limits(max_connections=settings.fhir_max_connections)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, limits=limits) as client:
        rt.http = client
        rt.fetcher = FhirFetcher.from_settings(settings)  # its own guarded client (cds.api.fhir)
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
        await rt.fetcher.aclose()
    rt.store.dispose()

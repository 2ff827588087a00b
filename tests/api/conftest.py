"""Session fixtures: the samples, a FHIR server double and the CDS service under real uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cds import Evaluator, default_rules_dir, load_library
from cds.api import Settings, TrustedIssuer, create_app
from cds.api.services import prefetch_templates

from .helpers import (
    FhirData,
    FhirLog,
    Sample,
    Signer,
    fhir_double,
    free_port,
    jwks_of,
    load_samples,
    make_signer,
    serve,
)

AS_OF = "2026-11-01"
EHR_ORIGIN = "https://ehr.example.org"


@dataclass
class Service:
    """A running CDS service and what a test needs to call it."""

    base: str
    settings: Settings
    runtime: Any
    client: httpx.Client
    es384: Signer
    rs384: Signer
    fhir_base: str
    fhir_log: FhirLog
    templates: dict[str, str]

    def url(self, service_id: str, suffix: str = "") -> str:
        return f"{self.base}/cds-services/{service_id}{suffix}"

    def call(self, service_id: str, body: Any, signer: Signer | None = None, **claims: Any) -> httpx.Response:
        signer = signer or self.es384
        token = signer.token(self.url(service_id), **claims)
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.client.post(
            self.url(service_id),
            content=content,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="session")
def samples() -> dict[str, Sample]:
    return load_samples()


@pytest.fixture(scope="session")
def fhir_data(samples: dict[str, Sample]) -> FhirData:
    return FhirData(samples)


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    return Evaluator(load_library(default_rules_dir()))


@pytest.fixture(scope="session")
def templates() -> dict[str, str]:
    return prefetch_templates(load_library(default_rules_dir()))


@pytest.fixture(scope="session")
def log_records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("cds")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@dataclass
class FhirSide:
    """The FHIR server double and the two EHR identities every service instance trusts."""

    base: str
    log: FhirLog
    es384: Signer
    rs384: Signer
    es384_jwks_file: Path


@contextmanager
def running_service(
    tmp: Path, fhir: FhirSide, templates: dict[str, str], name: str = "cds", **overrides: Any
) -> Iterator[Service]:
    """A CDS service under real uvicorn trusting both EHR identities; ``overrides`` change Settings."""
    port = free_port()
    options: dict[str, Any] = {
        "port": port,
        "database_url": f"sqlite:///{tmp / f'{name}.sqlite3'}",
        "issuers": (
            # ehr-a may have us fetch from the FHIR double (every path under it); ehr-b from nothing
            TrustedIssuer(fhir.es384.iss, str(fhir.es384_jwks_file), fhir_servers=(fhir.base,)),
            TrustedIssuer(fhir.rs384.iss, f"{fhir.base}/jwks/ehr-b"),
        ),
        "fhir_allow_private": True,  # the double listens on loopback
        "cors_origins": (EHR_ORIGIN,),
        "as_of": AS_OF,
        "max_body_bytes": 2 * 1024 * 1024,
    }
    options.update(overrides)
    settings = Settings(**options)
    app = create_app(settings)
    with serve(app, settings.port) as base, httpx.Client(timeout=30) as client:
        yield Service(
            base,
            settings,
            app.state.runtime,
            client,
            fhir.es384,
            fhir.rs384,
            f"{fhir.base}/fhir",
            fhir.log,
            templates,
        )


@pytest.fixture(scope="session")
def fhir_side(tmp_path_factory: pytest.TempPathFactory, fhir_data: FhirData) -> Iterator[FhirSide]:
    tmp: Path = tmp_path_factory.mktemp("fhir-side")
    es384 = make_signer("https://ehr-a.example.org", "ES384")
    rs384 = make_signer("https://ehr-b.example.org", "RS384")
    (tmp / "ehr-a.jwks.json").write_bytes(orjson.dumps(jwks_of(es384)))
    fhir_app, fhir_log = fhir_double(fhir_data, {"ehr-b": jwks_of(rs384)})
    with serve(fhir_app, free_port()) as fhir_base:
        yield FhirSide(fhir_base, fhir_log, es384, rs384, tmp / "ehr-a.jwks.json")


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    fhir_side: FhirSide,
    templates: dict[str, str],
    log_records: _Records,
) -> Iterator[Service]:
    # shared by tests that repeat calls after sending feedback: override-aware suppression (tested
    # on its own service in test_fatigue) would hide the cards they check
    with running_service(
        tmp_path_factory.mktemp("cds-api"), fhir_side, templates, override_quiet_days=0.0
    ) as running:
        yield running


@contextmanager
def extra_service(tmp: Path, fhir_servers: tuple[str, ...], **overrides: Any) -> Iterator[Service]:
    """Another CDS service (real uvicorn) with its own signer, allowed to fetch from ``fhir_servers``."""
    es384 = make_signer("https://ehr-c.example.org", "ES384")
    (tmp / "ehr-c.jwks.json").write_bytes(orjson.dumps(jwks_of(es384)))
    port = free_port()
    settings = Settings(
        port=port,
        database_url=f"sqlite:///{tmp / 'extra.sqlite3'}",
        issuers=(TrustedIssuer(es384.iss, str(tmp / "ehr-c.jwks.json"), fhir_servers=fhir_servers),),
        as_of=AS_OF,
        **overrides,
    )
    app = create_app(settings)
    with serve(app, port) as base, httpx.Client(timeout=30) as client:
        templates = prefetch_templates(load_library(default_rules_dir()))
        yield Service(base, settings, app.state.runtime, client, es384, es384, "", FhirLog(), templates)

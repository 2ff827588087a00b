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


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    fhir_data: FhirData,
    templates: dict[str, str],
    log_records: _Records,
) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("cds-api")
    es384 = make_signer("https://ehr-a.example.org", "ES384")
    rs384 = make_signer("https://ehr-b.example.org", "RS384")
    (tmp / "ehr-a.jwks.json").write_bytes(orjson.dumps(jwks_of(es384)))
    fhir_app, fhir_log = fhir_double(fhir_data, {"ehr-b": jwks_of(rs384)})
    fhir_port, port = free_port(), free_port()
    with serve(fhir_app, fhir_port) as fhir_base:
        settings = Settings(
            port=port,
            database_url=f"sqlite:///{tmp / 'cds.sqlite3'}",
            issuers=(
                # ehr-a may have us fetch from the FHIR double (every path under it); ehr-b from nothing
                TrustedIssuer(es384.iss, str(tmp / "ehr-a.jwks.json"), fhir_servers=(fhir_base,)),
                TrustedIssuer(rs384.iss, f"{fhir_base}/jwks/ehr-b"),
            ),
            cors_origins=(EHR_ORIGIN,),
            as_of=AS_OF,
            max_body_bytes=2 * 1024 * 1024,
            fhir_allow_private=True,  # the double listens on loopback
        )
        app = create_app(settings)
        with serve(app, port) as base, httpx.Client(timeout=30) as client:
            yield Service(
                base,
                settings,
                app.state.runtime,
                client,
                es384,
                rs384,
                f"{fhir_base}/fhir",
                fhir_log,
                templates,
            )


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

"""Property-based fuzzing of the OpenAPI document: no input may produce a 5xx.

Runs against an --insecure-dev instance (so generated bodies reach validation, prefetch and the
evaluator rather than stopping at 401) under a real uvicorn; examples are bounded for CI time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cds.api import Settings, create_app

from .helpers import free_port, serve


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.schemas.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    app = create_app(
        Settings(
            port=port,
            insecure_dev=True,
            database_url=f"sqlite:///{tmp / 'f.sqlite3'}",
            as_of="2026-11-01",
            max_body_bytes=256 * 1024,
        )
    )
    with serve(app, port) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call(timeout=10)
    assert response.status_code < 500, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    )
    if response.status_code == 400:
        assert response.json()["error"]

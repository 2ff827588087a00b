"""`cds serve` as an operator runs it: a real process with --workers 2, and its refusals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from .helpers import FhirData, Sample, card_codes, free_port, hook_body, prefetch_for

CDS = [shutil.which("cds") or sys.executable, *([] if shutil.which("cds") else ["-m", "cds.cli"])]


def test_serve_with_two_workers(
    tmp_path: Path, samples: dict[str, Sample], fhir_data: FhirData, templates: dict[str, str]
) -> None:
    port = free_port()
    db = tmp_path / "serve.sqlite3"
    proc = subprocess.Popen(
        [
            *CDS,
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--insecure-dev",
            "--as-of",
            "2026-11-01",
            "--database-url",
            f"sqlite:///{db}",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "cds serve did not become healthy"
            time.sleep(0.2)
        s = samples["mbc-second-line"]
        body = hook_body(
            "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, templates, s.patient_id)
        )
        with httpx.Client(timeout=30) as client:
            assert len(client.get(f"{base}/cds-services").json()["services"]) == 3
            for _ in range(6):  # spread over both workers
                response = client.post(f"{base}/cds-services/her2-therapy-review", content=orjson.dumps(body))
                assert response.status_code == 200
                assert card_codes(response.json()) == s.expected
            metrics = client.get(f"{base}/metrics").text
        # aggregated across worker processes
        assert (
            'cds_hooks_requests_total{endpoint="service",hook="patient-view",service="her2-therapy-review",'
            'status="200"} 6.0' in metrics
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert b"--insecure-dev" in err  # the loud warning


def test_serve_refuses_to_trust_nobody(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CDS, "serve", "--port", str(free_port()), "--database-url", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"no trusted issuers" in result.stderr


def test_serve_rejects_missing_jwks_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CDS, "serve", "--trusted-issuer", "https://ehr.example|/no/such/jwks.json"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"not found" in result.stderr


def test_serve_help_documents_the_options() -> None:
    result = subprocess.run(
        [*CDS, "serve", "--help"], capture_output=True, timeout=60, env={**os.environ, "COLUMNS": "200"}
    )
    text = result.stdout.decode()
    for option in (
        "--host",
        "--port",
        "--workers",
        "--rules",
        "--database-url",
        "--trusted-issuer",
        "--cors-origin",
        "--insecure-dev",
        "--as-of",
        "--public-url",
    ):
        assert option in text


def test_the_service_reads_http_with_the_c_parser() -> None:
    """``cds serve`` leaves uvicorn's parser on "auto", which takes httptools (a dependency) when
    it imports: less CPU per CDS Hooks call than the pure-Python h11 (docs/performance.md)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert AutoHTTPProtocol is HttpToolsProtocol

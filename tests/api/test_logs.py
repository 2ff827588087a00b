"""Logs of `cds serve --workers 2` as an operator reads them: one JSON object per stderr line, a
per-call line for every call in every worker, no patient ids or tokens at info, no forged lines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from .helpers import FhirData, fhir_double, free_port, hook_body, jwks_of, make_signer, serve
from .test_cli import CDS

SERVICE = "her2-therapy-review"
CALLS = 8


def _wait_healthy(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "cds serve exited"
        assert time.monotonic() < deadline, "cds serve did not become healthy"
        time.sleep(0.2)


def test_two_workers_log_json_lines_for_every_call_without_patient_ids(
    tmp_path: Path, fhir_data: FhirData, samples: dict[str, Any]
) -> None:
    signer = make_signer("https://ehr-log.example.org", "ES384")
    (tmp_path / "jwks.json").write_bytes(orjson.dumps(jwks_of(signer)))
    patient = samples["tdm1-platelets-not-recovered"].patient_id
    fhir_app, fhir_log = fhir_double(fhir_data, {})
    with serve(fhir_app, free_port()) as fhir_base:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                *CDS,
                "serve",
                "--workers",
                "2",
                "--port",
                str(port),
                "--trusted-issuer",
                f"{signer.iss}|{tmp_path / 'jwks.json'}",
                "--issuer-fhir-server",
                f"{signer.iss}|{fhir_base}/fhir",
                "--fhir-allow-private",
                "--as-of",
                "2026-11-01",
                "--database-url",
                f"sqlite:///{tmp_path / 'serve.sqlite3'}",
                "--log-level",
                "info",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        tokens = []
        try:
            _wait_healthy(proc, base)
            with httpx.Client(timeout=60) as client:
                for _ in range(CALLS):  # FHIR fallback: every request URL holds the patient id
                    token = signer.token(f"{base}/cds-services/{SERVICE}")
                    tokens.append(token)
                    body = hook_body(
                        "patient-view",
                        patient,
                        fhir_server=f"{fhir_base}/fhir",
                        token="secret-fhir-access-token",
                    )
                    response = client.post(
                        f"{base}/cds-services/{SERVICE}",
                        content=orjson.dumps(body),
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 200, response.text
                forged = client.post(
                    f"{base}/cds-services/x%0a%7B%22level%22%3A%22critical%22%7D?patient={patient}",
                    content=b"{}",
                )
                assert forged.status_code == 404
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert any(patient in r for r in fhir_log.requests)  # the fetched URLs did name the patient
    lines = err.decode().splitlines()
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "pid", "message"} <= set(r) for r in records)
    calls = [
        r for r in records if r["logger"] == "cds.api" and r["message"].startswith(f"service={SERVICE} ")
    ]
    assert len(calls) == CALLS
    assert all(" status=200 " in r["message"] for r in calls)
    access = [
        r for r in records if r["logger"] == "uvicorn.access" and r["path"] == f"/cds-services/{SERVICE}"
    ]
    assert len(access) == CALLS and {r["status"] for r in access} == {200}
    assert not any(r["level"] == "critical" for r in records)
    assert any(r["message"].startswith('service=x\n{"level":"critical"}') for r in records)
    text = err.decode()
    assert patient not in text
    assert "secret-fhir-access-token" not in text
    assert not any(t in text or t.split(".")[2] in text for t in tokens)
    assert "HTTP Request" not in text  # httpx's info line

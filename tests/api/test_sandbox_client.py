"""A client shaped like the reference CDS Hooks Sandbox, end to end: ES384 tokens with a ``jku`` the
service cannot reach (keys pinned from a file), CORS preflights from the sandbox's origin, discovery,
patient-view, order-select and order-sign with the sandbox's draft shapes, suggestion acceptance
and feedback."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cds.api import Settings, TrustedIssuer, create_app
from cds.findings.cards import CARD_EXTENSION

from .conftest import AS_OF
from .helpers import (
    FhirData,
    Sample,
    Signer,
    card_codes,
    card_problems,
    free_port,
    jwks_of,
    make_signer,
    serve,
)

JSON = dict[str, Any]
ORIGIN = "http://localhost:8080"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
UNREACHABLE_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"


class Sandbox:
    """What the sandbox does: preflight, then a signed request (token aud = the URL called)."""

    def __init__(self, base: str, signer: Signer, client: httpx.Client) -> None:
        self.base, self.signer, self.client = base, signer, client

    def preflight(self, path: str) -> httpx.Response:
        return self.client.options(
            f"{self.base}{path}",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )

    def _headers(self, url: str) -> dict[str, str]:
        token = self.signer.token(url, h_jku=UNREACHABLE_JKU)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Origin": ORIGIN}

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.base}{path}", headers=self._headers(f"{self.base}{path}"))

    def post(self, path: str, body: JSON) -> httpx.Response:
        assert self.preflight(path).status_code == 200
        url = f"{self.base}{path}"
        response = self.client.post(url, content=orjson.dumps(body), headers=self._headers(url))
        assert response.headers.get("access-control-allow-origin") == ORIGIN
        return response


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, fhir_side: Any) -> Iterator[Sandbox]:
    tmp: Path = tmp_path_factory.mktemp("sandbox")
    signer = make_signer(SANDBOX_ISS, "ES384")
    (tmp / "sandbox.jwks.json").write_bytes(orjson.dumps(jwks_of(signer)))
    port = free_port()
    settings = Settings(
        port=port,
        database_url=f"sqlite:///{tmp / 'cds.sqlite3'}",
        issuers=(TrustedIssuer(SANDBOX_ISS, str(tmp / "sandbox.jwks.json")),),
        cors_origins=(ORIGIN,),
        as_of=AS_OF,
        fhir_servers=(f"{fhir_side.base}/fhir",),
        fhir_allow_private=True,  # the FHIR double listens on loopback
        warn_on_missing_data=("her2-therapy-review", "her2-order-select", "her2-order-sign"),
    )
    with serve(create_app(settings), port) as base, httpx.Client(timeout=30) as client:
        yield Sandbox(base, signer, client)


def _context(sample: Sample, draft: JSON | None = None, *, select: bool = False) -> JSON:
    context: JSON = {"userId": "Practitioner/COREPRACTITIONER1", "patientId": sample.patient_id}
    if draft is not None:
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft}]}  # no Bundle.type
        if select:
            context["selections"] = [f"MedicationRequest/{draft['id']}"]
    return context


def _call(sandbox: Sandbox, service_id: str, hook: str, context: JSON, fhir_base: str) -> JSON:
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": "sandbox-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read user/*.read",
            "subject": "her2-cds",
        },
        "context": context,
    }  # the sandbox omits prefetch keys it could not fill: the service fetches them
    response = sandbox.post(f"/cds-services/{service_id}", body)
    assert response.status_code == 200, response.text
    result: JSON = response.json()
    assert card_problems(result) == []
    return result


def test_sandbox_end_to_end(
    sandbox: Sandbox, fhir_side: Any, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    fhir_base = f"{fhir_side.base}/fhir"
    discovery = sandbox.get("/cds-services")
    assert discovery.status_code == 200
    assert discovery.headers["access-control-allow-origin"] == ORIGIN
    urls = {s["hook"]: f"/cds-services/{s['id']}" for s in discovery.json()["services"]}
    assert len(set(urls.values())) == 3  # keyed by URL, the sandbox keeps every hook

    viewed = _call(
        sandbox, "her2-therapy-review", "patient-view", _context(samples["tdm1-platelets-grade3"]), fhir_base
    )
    assert card_codes(viewed) == ["alert.tdm1.platelets-grade3"]

    sample = samples["order-tdm1-name-confusion"]
    assert sample.order is not None
    draft = copy.deepcopy(sample.order)
    draft["category"] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "code": "outpatient",
            }
        ]
    }
    selected = _call(
        sandbox, "her2-order-select", "order-select", _context(sample, draft, select=True), fhir_base
    )
    signed = _call(sandbox, "her2-order-sign", "order-sign", _context(sample, draft), fhir_base)
    for body in (selected, signed):
        assert card_codes(body) == sample.expected
        confusion = next(
            c for c in body["cards"] if c["extension"][CARD_EXTENSION]["codes"] == ["order.name-confusion"]
        )
        assert confusion["extension"][CARD_EXTENSION]["ignoredFields"] == ["category"]

    confusion = next(
        c for c in signed["cards"] if c["extension"][CARD_EXTENSION]["codes"] == ["order.name-confusion"]
    )
    dose = next(
        c for c in signed["cards"] if c["extension"][CARD_EXTENSION]["codes"] == ["order.dose-out-of-range"]
    )
    feedback = {
        "feedback": [
            {
                "card": dose["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-01T10:00:00Z",
                "acceptedSuggestions": [{"id": dose["suggestions"][0]["uuid"]}],
            },
            {
                "card": confusion["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-01T10:00:01Z",
                "overrideReason": {"reason": confusion["overrideReasons"][0], "userComment": "checked"},
            },
        ]
    }
    stored = sandbox.post("/cds-services/her2-order-sign/feedback", feedback)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"stored": 2, "duplicates": 0}
    # the overridden card is quiet on the next signature of the same draft; the accepted one is not
    again = _call(sandbox, "her2-order-sign", "order-sign", _context(sample, draft), fhir_base)
    assert "order.name-confusion" not in card_codes(again)
    assert "order.dose-out-of-range" in card_codes(again)

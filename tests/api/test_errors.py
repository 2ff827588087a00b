"""Malformed requests: 400 with a JSON error body (never 500), 404, 413, and CORS preflight."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from .conftest import EHR_ORIGIN, Service
from .helpers import FhirData, Sample, hook_body, prefetch_for

JSON = dict[str, Any]
PV = "her2-therapy-review"
ORD = "her2-order-select"
SIGN = "her2-order-sign"


def _pv(samples: dict[str, Sample], fhir_data: FhirData, service: Service) -> JSON:
    s = samples["mbc-second-line"]
    return hook_body(
        "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
    )


def _sign(samples: dict[str, Sample], fhir_data: FhirData, service: Service) -> JSON:
    s = samples["order-tdm1-name-confusion"]
    prefetch = prefetch_for(fhir_data, service.templates, s.patient_id)
    return hook_body("order-select", s.patient_id, prefetch=prefetch, order=s.order)


def _set(path: str, value: Any) -> Callable[[JSON], JSON]:
    def change(body: JSON) -> JSON:
        *parents, last = path.split(".")
        node = body
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return body

    return change


_DELETE = object()

BAD_BODIES: dict[str, tuple[str, Callable[[JSON], JSON], str]] = {
    "missing hook": (PV, _set("hook", _DELETE), "bad-request"),
    "hook not a string": (PV, _set("hook", 5), "bad-request"),
    "wrong hook for service": (PV, _set("hook", "order-sign"), "wrong-hook"),
    "unknown hook": (PV, _set("hook", "encounter-start"), "wrong-hook"),
    "missing hookInstance": (PV, _set("hookInstance", _DELETE), "bad-request"),
    "hookInstance not a uuid": (PV, _set("hookInstance", "abc"), "bad-request"),
    "missing context": (PV, _set("context", _DELETE), "bad-request"),
    "context not an object": (PV, _set("context", ["x"]), "bad-request"),
    "missing patientId": (PV, _set("context.patientId", _DELETE), "bad-context"),
    "patientId with a query": (PV, _set("context.patientId", "x&_include=*"), "bad-context"),
    "missing userId": (PV, _set("context.userId", _DELETE), "bad-context"),
    "userId not Type/id": (PV, _set("context.userId", "onc-1"), "bad-context"),
    "fhirAuthorization without fhirServer": (
        PV,
        _set(
            "fhirAuthorization",
            {"access_token": "t", "token_type": "Bearer", "expires_in": 1, "scope": "s", "subject": "c"},
        ),
        "bad-request",
    ),
    "fhirServer not a URL": (PV, _set("fhirServer", "file:///etc/passwd"), "bad-request"),
    "prefetch value not FHIR": (PV, _set("prefetch.conditions", {"foo": 1}), "bad-prefetch"),
    "prefetch Bundle entry not a resource": (
        PV,
        _set("prefetch.conditions", {"resourceType": "Bundle", "entry": [{"resource": 3}]}),
        "bad-prefetch",
    ),
    "prefetch patient of another patient": (
        PV,
        _set("prefetch.patient", {"resourceType": "Patient", "id": "someone-else"}),
        "bad-prefetch",
    ),
    "DSTU2 resource in prefetch": (
        PV,
        _set(
            "prefetch.medicationRequests",
            {
                "resourceType": "Bundle",
                "entry": [{"resource": {"resourceType": "MedicationOrder", "id": "m"}}],
            },
        ),
        "input-rejected",
    ),
    "order-select without selections": (ORD, _set("context.selections", _DELETE), "bad-context"),
    "selection not in draftOrders": (
        ORD,
        _set("context.selections", ["MedicationRequest/nope"]),
        "bad-context",
    ),
    "draftOrders not a Bundle": (
        ORD,
        _set("context.draftOrders", {"resourceType": "MedicationRequest"}),
        "bad-context",
    ),
    "draftOrders entry without resource": (
        ORD,
        _set("context.draftOrders", {"resourceType": "Bundle", "entry": [{"x": 1}]}),
        "bad-context",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_malformed_request_is_400(
    case: str, service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    service_id, change, error = BAD_BODIES[case]
    body = (_pv if service_id == PV else _sign)(samples, fhir_data, service)
    response = service.call(service_id, change(body))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error
    assert isinstance(response.json()["message"], str)


def test_draft_for_another_patient_is_400(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _sign(samples, fhir_data, service)
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/other"}
    response = service.call(ORD, body)
    assert response.status_code == 400 and response.json()["error"] == "bad-request"


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[1,2]", b"null", b'"text"', b"\xff\xfe"])
def test_not_a_json_object_is_400(raw: bytes, service: Service) -> None:
    response = service.call(PV, raw)
    assert response.status_code == 400
    assert response.json()["error"] in {"bad-json", "bad-request"}


def test_unknown_fields_are_ignored(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _pv(samples, fhir_data, service)
    body["somethingNew"] = {"x": 1}
    body["extension"] = {"com.example.unknown": True}
    body["context"]["futureField"] = "x"
    assert service.call(PV, body).status_code == 200


def test_sandbox_quirks_are_accepted(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    """The reference sandbox sends order-sign draftOrders without Bundle.type."""
    s = samples["order-tdm1-name-confusion"]
    body = hook_body(
        "order-sign",
        s.patient_id,
        prefetch=prefetch_for(fhir_data, service.templates, s.patient_id),
        order=s.order,
    )
    del body["context"]["draftOrders"]["type"]
    response = service.call(SIGN, body)
    assert response.status_code == 200, response.text
    assert response.json()["cards"]


def test_unknown_service_is_404(service: Service) -> None:
    response = service.call("no-such-service", {"hook": "patient-view"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown-service"


def test_oversize_body_is_413(service: Service) -> None:
    big = b'{"hook": "patient-view", "pad": "' + b"x" * (service.settings.max_body_bytes + 1) + b'"}'
    response = service.call(PV, big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload-too-large"


def test_oversize_chunked_body_is_413(service: Service) -> None:
    """No Content-Length (chunked): the limit is enforced while streaming."""
    chunk = b"x" * 65536
    count = service.settings.max_body_bytes // len(chunk) + 2

    def stream() -> Any:
        yield b'{"pad": "'
        for _ in range(count):
            yield chunk
        yield b'"}'

    token = service.es384.token(service.url(PV))
    response = service.client.post(
        service.url(PV), content=stream(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 413


def test_cors_preflight_and_headers(service: Service) -> None:
    preflight = service.client.options(
        service.url(PV),
        headers={
            "Origin": EHR_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == EHR_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    discovery = service.client.get(f"{service.base}/cds-services", headers={"Origin": EHR_ORIGIN})
    assert discovery.headers["access-control-allow-origin"] == EHR_ORIGIN
    other = service.client.get(f"{service.base}/cds-services", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_error_bodies_do_not_echo_patient_values(service: Service) -> None:
    secret = "Patient-Secret-Name-1234"
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/x", "patientId": f"{secret}!"},
    }
    response = service.call(PV, orjson.dumps(body))
    assert response.status_code == 400
    assert secret not in response.text

"""Another patient's data never drives a card: CDS Hooks prefetch and FHIR fallback, real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.wrong_patient import GAP, HOLD, HOOK_SELF_REFS, OTHER_REFS, PID, resources, variant

from .conftest import Service, extra_service
from .helpers import (
    OUTCOME,
    FhirData,
    Sample,
    card_codes,
    card_problems,
    free_port,
    hook_body,
    prefetch_for,
    serve,
)

PV = "her2-therapy-review"
CASES = {f"self {k}": v for k, v in HOOK_SELF_REFS.items()} | {f"other {k}": v for k, v in OTHER_REFS.items()}
CASES["removed"] = None
KEYS = sorted(CASES)


def _data(case: str) -> FhirData:
    docs = resources(variant(CASES[case]))
    return FhirData({case: Sample(case, PID, docs, [], None)})


@pytest.fixture(scope="module")
def variants_server() -> Iterator[str]:
    """A FHIR server per case under /v/<index>: the chart with the rewritten subject."""
    datas = {str(i): _data(case) for i, case in enumerate(KEYS)}
    app = FastAPI()

    @app.get("/v/{index}/{rest:path}")
    async def fhir(index: str, rest: str, request: Request) -> Response:
        query = f"{rest}?{request.url.query}" if request.url.query else rest
        value = datas[index].execute(query)
        return JSONResponse(OUTCOME, status_code=404) if value is None else JSONResponse(value)

    with serve(app, free_port()) as base:
        yield base


def _expect(case: str, without: list[str]) -> list[str]:
    if case.startswith("self"):
        return [HOLD]  # patient-view shows actionable cards only (no "continue" info card)
    return sorted([*without, GAP])


def _prefetch_codes(service: Service, case: str) -> list[str]:
    prefetch = prefetch_for(_data(case), service.templates, PID)
    response = service.call(PV, hook_body("patient-view", PID, prefetch=prefetch))
    assert response.status_code == 200, response.text
    assert card_problems(response.json()) == []
    return card_codes(response.json())


def test_prefetch_uses_only_the_patients_own_data(service: Service) -> None:
    without = _prefetch_codes(service, "removed")
    assert HOLD not in without
    seen = {case: _prefetch_codes(service, case) for case in KEYS if case != "removed"}
    assert seen == {case: _expect(case, without) for case in seen}


def test_fhir_fallback_uses_only_the_patients_own_data(tmp_path: Path, variants_server: str) -> None:
    codes = {}
    with extra_service(tmp_path, (f"{variants_server}/v",), fhir_allow_private=True) as service:
        for i, case in enumerate(KEYS):
            body = hook_body("patient-view", PID, fhir_server=f"{variants_server}/v/{i}")
            response = service.call(PV, body)
            assert response.status_code == 200, (case, response.text)
            codes[case] = card_codes(response.json())
    without = codes.pop("removed")
    assert HOLD not in without
    assert codes == {case: _expect(case, without) for case in codes}


def test_versioned_subject_on_a_draft_order_is_this_patient(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    s = samples["order-tdm1-name-confusion"]
    assert s.order is not None
    order = {**s.order, "subject": {"reference": f"Patient/{s.patient_id}/_history/4"}}
    prefetch = prefetch_for(fhir_data, service.templates, s.patient_id)
    response = service.call(
        "her2-order-sign", hook_body("order-sign", s.patient_id, prefetch=prefetch, order=order)
    )
    assert response.status_code == 200, response.text
    assert card_codes(response.json()) == s.expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"hook": "patient-view", "hook": "order-sign"}',
        b'{"context": {"patientId": "a", "patientId": "b"}}',
        b'{"prefetch": {"labs": {"entry": [{"resource": {"subject": 1, "subject": 2}}]}}}',
    ],
)
def test_duplicate_json_keys_are_400(raw: bytes, service: Service) -> None:
    response = service.call(PV, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad-json"


def test_duplicate_patient_id_in_a_real_request_is_400(service: Service, fhir_data: FhirData) -> None:
    body = orjson.dumps(
        hook_body("patient-view", PID, prefetch=prefetch_for(fhir_data, service.templates, PID))
    )
    forged = body.replace(b'"patientId":', b'"patientId":"someone-else","patientId":', 1)
    assert forged != body
    assert service.call(PV, forged).status_code == 400
    assert service.call(PV, body).status_code == 200

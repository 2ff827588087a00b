"""Legal but extreme input in a CDS Hooks call: 200 with cards, never a 5xx (real uvicorn)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.wrong_patient import HOLD, PID, bundle, newest_platelets, resources

from .conftest import Service
from .helpers import FhirData, Sample, card_codes, card_problems, hook_body, prefetch_for

PV = "her2-therapy-review"


def _call(service: Service, doc: dict[str, Any]) -> Any:
    data = FhirData({"x": Sample("x", PID, resources(doc), [], None)})
    body = hook_body("patient-view", PID, prefetch=prefetch_for(data, service.templates, PID))
    return service.call(PV, json.dumps(body).encode())  # orjson.dumps stops at 255 levels


@pytest.mark.parametrize("value", [1e16, -1e16, 1e308, 0.00001, 5e-324, -0.0, 1e15])
def test_extreme_platelet_values_answer_cards(service: Service, value: float) -> None:
    doc = copy.deepcopy(bundle())
    newest_platelets(doc)["valueQuantity"]["value"] = value
    response = _call(service, doc)
    assert response.status_code == 200, response.text
    assert card_problems(response.json()) == []
    codes = card_codes(response.json())
    if abs(value) > 1e15:  # skipped: the older count is stale, so the labs gap shows instead
        assert HOLD not in codes and "gap.labs-missing" in codes
    else:
        assert (HOLD in codes) == (value < 25)


@pytest.mark.parametrize("levels", [126, 300])
def test_deeply_nested_extension_answers_cards(service: Service, levels: int) -> None:
    doc = copy.deepcopy(bundle())
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    newest_platelets(doc)["extension"] = [ext]
    response = _call(service, doc)
    assert response.status_code == 200, response.text
    assert HOLD not in card_codes(response.json())


@pytest.mark.parametrize("depth", [900, 1020, 5000])
def test_json_nested_beyond_the_parsers_is_400(service: Service, depth: int) -> None:
    raw = b'{"extension": ' + b"[" * depth + b"]" * depth + b"}"
    response = service.call(PV, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"bad-json", "bad-request"}

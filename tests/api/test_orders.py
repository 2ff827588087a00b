"""Order hooks decide coverage first: drafts we do not cover cost nothing, sandbox-shaped drafts are
checked, unreadable HER2 drafts get a warning card; 412 can become a warning card on request."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from cds.findings.cards import CARD_EXTENSION

from .conftest import FhirSide, Service, running_service
from .helpers import FhirData, Sample, card_codes, card_problems, hook_body, prefetch_for

JSON = dict[str, Any]
SIGN = "her2-order-sign"
ONDANSETRON = {
    "resourceType": "MedicationRequest",
    "id": "antiemetic-draft",
    "status": "draft",
    "intent": "order",
    "category": {"coding": [{"code": "outpatient"}]},  # the sandbox's shape: an object, not an array
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "26225"}],
        "text": "Ondansetron 8 mg tablet",
    },
}


@pytest.fixture(scope="module")
def warning(
    tmp_path_factory: pytest.TempPathFactory, fhir_side: FhirSide, templates: dict[str, str]
) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("warn"),
        fhir_side,
        templates,
        warn_on_missing_data=("her2-therapy-review", SIGN),
    ) as s:
        yield s


def _sign_body(sample: Sample, order: JSON, **kwargs: Any) -> JSON:
    return hook_body("order-sign", sample.patient_id, order=order, **kwargs)


def test_a_draft_we_do_not_cover_gets_no_cards_and_no_data_fetch(
    service: Service, samples: dict[str, Sample]
) -> None:
    sample = samples["order-tdm1-name-confusion"]
    order = dict(ONDANSETRON, subject={"reference": f"Patient/{sample.patient_id}"})
    before = len(service.fhir_log.requests)
    response = service.call(SIGN, _sign_body(sample, order, fhir_server=service.fhir_base))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert len(service.fhir_log.requests) == before


def test_sandbox_shaped_covered_draft_is_checked_and_says_what_was_ignored(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["order-tdm1-name-confusion"]
    assert sample.order is not None
    order = copy.deepcopy(sample.order)
    order["category"] = {"coding": [{"code": "outpatient"}]}
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    response = service.call(SIGN, _sign_body(sample, order, prefetch=prefetch))
    assert response.status_code == 200, response.text
    body = response.json()
    assert card_problems(body) == []
    assert card_codes(body) == sample.expected
    confusion = next(
        c for c in body["cards"] if c["extension"][CARD_EXTENSION]["codes"] == ["order.name-confusion"]
    )
    assert confusion["extension"][CARD_EXTENSION]["ignoredFields"] == ["category"]
    assert confusion["detail"].endswith(
        "Ignored in the draft order (not valid FHIR R4, not read by these checks): `category`."
    )


def test_a_covered_draft_that_cannot_be_read_gets_one_warning_card(
    service: Service, samples: dict[str, Sample]
) -> None:
    sample = samples["order-tdm1-name-confusion"]
    assert sample.order is not None
    order = copy.deepcopy(sample.order)
    order["dosageInstruction"] = {
        "text": "6 mg/kg"
    }  # an object where R4 has an array: the dose is unreadable
    before = len(service.fhir_log.requests)
    response = service.call(SIGN, _sign_body(sample, order, fhir_server=service.fhir_base))
    assert response.status_code == 200, response.text
    body = response.json()
    assert card_problems(body) == []
    (card,) = body["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "HER2 order checks could not check this order: the draft cannot be read"
    assert card["extension"][CARD_EXTENSION]["draftOrder"] == f"MedicationRequest/{order['id']}"
    assert "`dosageInstruction`" not in card["summary"]
    assert len(service.fhir_log.requests) == before  # nothing to check: no data fetched


def test_412_by_default(service: Service, samples: dict[str, Sample]) -> None:
    sample = samples["mbc-second-line"]
    response = service.call("her2-therapy-review", hook_body("patient-view", sample.patient_id))
    assert response.status_code == 412
    assert response.json()["error"] == "data-unavailable"


def test_missing_data_warning_card_instead_of_412_on_request(
    warning: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["mbc-second-line"]
    prefetch = prefetch_for(fhir_data, warning.templates, sample.patient_id)
    del prefetch["labObservations"]  # not prefetched, and no fhirServer to fetch it from
    response = warning.call(
        "her2-therapy-review", hook_body("patient-view", sample.patient_id, prefetch=prefetch)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert card_problems(body) == []
    (card,) = body["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "HER2 safety checks could not run: laboratory results"
    assert "this is not an all-clear" in card["detail"]

"""Service registration: one id and URL per hook by default; one shared id for the order hooks on request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import FhirSide, Service, running_service
from .helpers import FhirData, Sample, card_codes, hook_body, prefetch_for


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, fhir_side: FhirSide, templates: dict[str, str]
) -> Iterator[Service]:
    with running_service(
        tmp_path_factory.mktemp("shared"), fhir_side, templates, shared_order_service=True
    ) as s:
        yield s


def test_every_hook_has_its_own_id_and_url_by_default(service: Service) -> None:
    body = service.client.get(f"{service.base}/cds-services").json()
    ids = [s["id"] for s in body["services"]]
    assert ids == ["her2-therapy-review", "her2-order-select", "her2-order-sign"]
    assert len(set(ids)) == len(ids)


def test_order_hooks_share_one_id_on_request(
    shared: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = shared.client.get(f"{shared.base}/cds-services").json()
    assert [(s["id"], s["hook"]) for s in body["services"]] == [
        ("her2-therapy-review", "patient-view"),
        ("her2-order-safety", "order-select"),
        ("her2-order-safety", "order-sign"),
    ]
    sample = samples["order-tdm1-name-confusion"]
    prefetch = prefetch_for(fhir_data, shared.templates, sample.patient_id)
    for hook in ("order-select", "order-sign"):
        response = shared.call(
            "her2-order-safety", hook_body(hook, sample.patient_id, prefetch=prefetch, order=sample.order)
        )
        assert response.status_code == 200, response.text
        assert card_codes(response.json()) == sample.expected
    assert (
        shared.call(
            "her2-order-sign",
            hook_body("order-sign", sample.patient_id, prefetch=prefetch, order=sample.order),
        ).status_code
        == 404
    )

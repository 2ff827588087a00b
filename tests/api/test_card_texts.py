"""Cards read in clinical words: values with units and dates, drug display names, preferred first,
ids only in the extension, gap tests offered as suggestions (never applied without the clinician)."""

from __future__ import annotations

from typing import Any

from cds.findings.cards import CARD_EXTENSION

from .conftest import Service
from .helpers import FhirData, Sample, card_problems, hook_body, prefetch_for

JSON = dict[str, Any]


def _patient_view(service: Service, samples: dict[str, Sample], fhir_data: FhirData, name: str) -> JSON:
    s = samples[name]
    body = hook_body(
        "patient-view", s.patient_id, prefetch=prefetch_for(fhir_data, service.templates, s.patient_id)
    )
    response = service.call("her2-therapy-review", body)
    assert response.status_code == 200, response.text
    result: JSON = response.json()
    assert card_problems(result) == []
    return result


def _card(body: JSON, code: str) -> JSON:
    return next(c for c in body["cards"] if c["extension"][CARD_EXTENSION]["codes"] == [code])


def test_basis_reads_as_values_with_units_and_dates(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    card = _card(
        _patient_view(service, samples, fhir_data, "tdm1-platelets-grade3"), "alert.tdm1.platelets-grade3"
    )
    assert (
        "**Based on**\n\n- Setting: metastatic disease\n- On T-DM1\n- Platelets 42 ×10³/µL on 31 Oct 2026\n"
        in (card["detail"])
    )
    basis = {b["fact"]: b["resources"] for b in card["extension"][CARD_EXTENSION]["basis"]}
    assert basis["labs.platelets.value"] == ["Observation/tdm1-platelets-grade3-obs17"]
    assert "Observation/" not in card["detail"]


def test_preferred_before_alternative(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _patient_view(service, samples, fhir_data, "mbc-second-line")
    strengths = [c["extension"][CARD_EXTENSION].get("strength") for c in body["cards"]]
    assert strengths == ["preferred", "alternative"]
    assert body["cards"][0]["summary"] == "Second-line HER2+ MBC: T-DXd 5.4 mg/kg q3w is preferred"


def test_detail_starts_with_a_capital(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    card = _card(_patient_view(service, samples, fhir_data, "gap-lvef-overdue"), "gap.lvef-overdue")
    assert card["detail"].startswith("Latest LVEF 104 days old. Assess LVEF")


def test_gap_card_offers_the_test_as_a_suggestion_not_a_system_action(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    body = _patient_view(service, samples, fhir_data, "gap-lvef-overdue")
    assert "systemActions" not in body
    card = _card(body, "gap.lvef-overdue")
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Order Left ventricular ejection fraction (echocardiogram or MUGA)"
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    assert action["resource"]["resourceType"] == "ServiceRequest"
    assert action["resource"]["intent"] == "proposal"
    assert action["resource"]["code"]["coding"][0]["code"] == "10230-1"


def _order_sign(service: Service, samples: dict[str, Sample], fhir_data: FhirData, name: str) -> JSON:
    s = samples[name]
    prefetch = prefetch_for(fhir_data, service.templates, s.patient_id)
    response = service.call(
        "her2-order-sign", hook_body("order-sign", s.patient_id, prefetch=prefetch, order=s.order)
    )
    assert response.status_code == 200, response.text
    body: JSON = response.json()
    assert card_problems(body) == []
    return body


def test_order_cards_name_the_drug_by_its_display_name(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    card = _card(
        _order_sign(service, samples, fhir_data, "order-her2-not-positive"), "order.her2-not-positive"
    )
    assert "**Based on**\n\n- Draft order: T-DM1\n- HER2 status: HER2-low\n" in card["detail"]
    body = _order_sign(service, samples, fhir_data, "order-tdm1-name-confusion")
    assert "- The ordered dose fits: trastuzumab\n" in _card(body, "order.name-confusion")["detail"]
    assert (
        "- Ordered dose: above the highest dose level\n" in _card(body, "order.dose-out-of-range")["detail"]
    )


def test_rule_text_shows_dates_in_words_and_no_resource_ids(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    card = _card(_patient_view(service, samples, fhir_data, "gap-unit-unrecognized"), "gap.unit-unrecognized")
    assert card["detail"].startswith(
        "Unusable because the unit is missing or unknown: bilirubin: unit 'mg%' is not recognised "
        "(31 Oct 2026). Re-enter the result"
    )
    platelets = _card(
        _patient_view(service, samples, fhir_data, "tdm1-platelets-grade3"), "alert.tdm1.platelets-grade3"
    )
    assert platelets["detail"].startswith("Platelets 42 x10^3/uL on 31 Oct 2026. Do not administer")

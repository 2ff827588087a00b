"""Prefetch semantics and the FHIR fallback (checklist §2.2), against the FHIR server double."""

from __future__ import annotations

import copy

import pytest

from .conftest import Service
from .helpers import OUTCOME, FhirData, Sample, card_codes, card_problems, free_port, hook_body, prefetch_for

SERVICE = "her2-therapy-review"


@pytest.fixture
def sample(samples: dict[str, Sample]) -> Sample:
    return samples["tdm1-platelets-not-recovered"]  # 58 resources, many pages of 20


def _reference(service: Service, sample: Sample, fhir_data: FhirData) -> dict[str, object]:
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    response = service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    assert response.status_code == 200
    return dict(response.json())


def test_no_prefetch_fetches_everything_from_fhir_server(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    expected = _reference(service, sample, fhir_data)
    start = len(service.fhir_log.requests)
    response = service.call(
        SERVICE, hook_body("patient-view", sample.patient_id, fhir_server=service.fhir_base)
    )
    assert response.status_code == 200, response.text
    assert response.json() == expected
    seen = service.fhir_log.requests[start:]
    # one request per template plus the next pages of paginated searches
    assert len(seen) > len(service.templates)
    assert any("_offset=20" in r for r in seen), "next links were not followed"
    assert set(service.fhir_log.auth[start:]) == {"Bearer fhir-access-token"}
    # query values are percent-encoded: the | of system|code tokens travels as %7C
    coded = [r for r in seen if "code=" in r and "_offset" not in r]
    assert coded and all("http%3A%2F%2Floinc.org%7C" in r and "|" not in r for r in coded)


def test_partial_prefetch_fetches_only_missing_keys(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    expected = _reference(service, sample, fhir_data)
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    del prefetch["labObservations"]
    start = len(service.fhir_log.requests)
    response = service.call(
        SERVICE,
        hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base),
    )
    assert response.json() == expected
    seen = service.fhir_log.requests[start:]
    assert seen and all(r.startswith("/fhir/Observation?") and "777-3" in r for r in seen)


def test_operation_outcome_in_prefetch_is_refetched(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    expected = _reference(service, sample, fhir_data)
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    prefetch["labObservations"] = OUTCOME
    response = service.call(
        SERVICE,
        hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base),
    )
    assert response.status_code == 200
    assert response.json() == expected


def test_operation_outcome_without_fhir_server_is_412(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    prefetch["labObservations"] = OUTCOME
    response = service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    assert response.status_code == 412
    assert response.json()["error"] == "data-unavailable"


def test_null_prefetch_means_no_data_and_is_not_requeried(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    """null labs: the service must not fetch them and must treat them as absent (a data gap)."""
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    prefetch["labObservations"] = None
    start = len(service.fhir_log.requests)
    response = service.call(
        SERVICE,
        hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base),
    )
    assert response.status_code == 200
    assert service.fhir_log.requests[start:] == []
    assert "gap.labs-missing" in card_codes(response.json())
    assert card_problems(response.json()) == []


def test_prefetch_pagination_is_followed(service: Service, sample: Sample, fhir_data: FhirData) -> None:
    expected = _reference(service, sample, fhir_data)
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    full = copy.deepcopy(prefetch["medicationAdministrations"])
    assert isinstance(full, dict) and len(full["entry"]) > 20
    query = service.templates["medicationAdministrations"].replace("{{context.patientId}}", sample.patient_id)
    prefetch["medicationAdministrations"] = {
        **full,
        "entry": full["entry"][:20],
        "link": [{"relation": "next", "url": f"{service.fhir_base}/{query}&_offset=20"}],
    }
    response = service.call(
        SERVICE,
        hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base),
    )
    assert response.json() == expected


def test_next_link_to_another_origin_is_not_followed(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    page = prefetch["medicationAdministrations"]
    assert isinstance(page, dict)
    page["link"] = [{"relation": "next", "url": "http://127.0.0.2:9/steal?token"}]
    response = service.call(
        SERVICE,
        hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base),
    )
    assert response.status_code == 412


@pytest.mark.parametrize(
    "where",
    ["no-server", "server-down", "server-500", "server-outcome", "unknown-patient", "patient-null"],
)
def test_required_data_not_obtainable_is_412(
    service: Service, sample: Sample, fhir_data: FhirData, where: str
) -> None:
    base = service.fhir_base.rsplit("/", 1)[0]
    patient = sample.patient_id
    prefetch = None
    server = {
        "no-server": None,
        "server-down": f"http://127.0.0.1:{free_port()}/fhir",
        "server-500": f"{base}/broken",
        "server-outcome": f"{base}/outcome",
        "unknown-patient": service.fhir_base,
        "patient-null": None,
    }[where]
    if where == "unknown-patient":
        patient = "no-such-patient"
    if where == "patient-null":
        prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
        prefetch["patient"] = None
    response = service.call(
        SERVICE, hook_body("patient-view", patient, prefetch=prefetch, fhir_server=server)
    )
    assert response.status_code == 412, response.text
    assert response.json()["error"] == "data-unavailable"


def test_order_hook_for_non_her2_drug_answers_no_cards(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    """A draft the HER2 rules do not cover gets no cards (no patient-level cards on order hooks)."""
    order = {
        "resourceType": "MedicationRequest",
        "id": "ondansetron-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{sample.patient_id}"},
        "medicationCodeableConcept": {"text": "ondansetron 8 mg"},
    }
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    response = service.call(
        "her2-order-sign", hook_body("order-sign", sample.patient_id, prefetch=prefetch, order=order)
    )
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_order_select_without_medication_selection_needs_no_data(service: Service, sample: Sample) -> None:
    """Only a ServiceRequest selected: nothing to check, so no data is needed (no 412, no fetch)."""
    order = {
        "resourceType": "ServiceRequest",
        "id": "echo",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{sample.patient_id}"},
    }
    body = hook_body("order-select", sample.patient_id, order=order)
    body["context"]["selections"] = ["ServiceRequest/echo"]
    response = service.call("her2-order-select", body)
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_fhir_server_policy_guards_against_fetching_arbitrary_urls() -> None:
    from cds.api.fhir import fhir_server_allowed

    allow = ("https://fhir.example.org/r4",)
    assert fhir_server_allowed("https://fhir.example.org/r4/Observation?patient=1", allow)
    assert not fhir_server_allowed("https://fhir.example.org.evil.net/r4/Patient/1", allow)
    assert not fhir_server_allowed("https://fhir.example.org/r4x/Patient/1", allow)
    assert not fhir_server_allowed("http://fhir.example.org/r4/Patient/1", allow)
    assert not fhir_server_allowed("https://fhir.example.org:8443/r4/Patient/1", allow)
    # no allow-list: nothing is fetched (a client must not choose which host we call)
    assert not fhir_server_allowed("https://ehr.example.org/fhir/Patient/1", ())
    assert not fhir_server_allowed("http://127.0.0.1:8080/fhir/Patient/1", ())
    assert not fhir_server_allowed("http://10.0.0.5/fhir/Patient/1", ())
    assert not fhir_server_allowed("http://169.254.169.254/latest/meta-data", ())


def test_plain_http_fhir_server_off_loopback_is_never_called(
    service: Service, sample: Sample, fhir_data: FhirData
) -> None:
    start = len(service.fhir_log.requests)
    response = service.call(
        SERVICE, hook_body("patient-view", sample.patient_id, fhir_server="http://fhir.internal.example/fhir")
    )
    assert response.status_code == 412, response.text
    assert response.json()["error"] == "data-unavailable"
    assert service.fhir_log.requests[start:] == []


def test_prefetch_templates_ask_for_every_observation_code_the_rules_read() -> None:
    """A value set added to observations.yaml (e.g. body temperature for febrile neutropenia) is
    fetched by the hooks too; otherwise a rule could never fire through CDS Hooks."""
    from cds import default_rules_dir, load_library
    from cds.api.services import prefetch_templates

    library = load_library(default_rules_dir())
    queried = " ".join(prefetch_templates(library).values())
    vs = library.valuesets
    wanted = {c for a in vs.analytes.values() for c in a.loinc} | {c for s in vs.coded.values() for c in s}
    assert sorted(c for c in wanted if f"|{c}," not in queried + "," and f"|{c}&" not in queried) == []


def test_prefetch_templates_use_only_the_recommended_search_subset(service: Service) -> None:
    """No _include (not in the CDS Hooks subset): referenced Medications are read separately."""
    assert not [t for t in service.templates.values() if "_include" in t]


def test_drug_named_by_reference_is_read_from_the_fhir_server_when_not_sent(
    service: Service, samples: dict[str, Sample]
) -> None:
    """rw-bundled-medication names T-DM1 only through medicationReference. Fetched from the FHIR
    server (no prefetch), the service reads the Medication and finds the same third line as
    `cds evaluate`."""
    sample = samples["rw-bundled-medication"]
    start = len(service.fhir_log.requests)
    body = hook_body("patient-view", sample.patient_id, fhir_server=service.fhir_base)
    response = service.call(SERVICE, body)
    assert response.status_code == 200, response.text
    assert card_codes(response.json()) == [c for c in sample.expected if not c.startswith("info.")]
    reads = [r for r in service.fhir_log.requests[start:] if "/Medication/" in r]
    assert [r.split("?")[0].rsplit("/", 2)[-2:] for r in reads] == [
        ["Medication", "rw-bundled-medication-med1"]
    ]


def test_drug_named_by_a_versioned_reference_is_read_with_a_vread(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Medication/x/_history/2`` is read as written (a FHIR vread) and resolves like the plain
    reference: the same third line, no unreadable-data gap."""
    sample = samples["rw-bundled-medication"]
    referring = [r for r in fhir_data.by_patient[sample.patient_id] if "medicationReference" in r]
    assert referring
    for resource in referring:
        target = resource["medicationReference"]["reference"]
        monkeypatch.setitem(resource["medicationReference"], "reference", f"{target}/_history/2")
    start = len(service.fhir_log.requests)
    body = hook_body("patient-view", sample.patient_id, fhir_server=service.fhir_base)
    response = service.call(SERVICE, body)
    assert response.status_code == 200, response.text
    assert card_codes(response.json()) == [c for c in sample.expected if not c.startswith("info.")]
    reads = [r.split("?")[0] for r in service.fhir_log.requests[start:] if "/Medication/" in r]
    assert [r.rsplit("/", 4)[-4:] for r in reads] == [
        ["Medication", "rw-bundled-medication-med1", "_history", "2"]
    ]


def test_drug_named_by_reference_is_read_when_the_prefetch_lacks_it(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["rw-bundled-medication"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    body = hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base)
    response = service.call(SERVICE, body)
    assert card_codes(response.json()) == [c for c in sample.expected if not c.startswith("info.")]


def test_referenced_medication_without_a_fhir_server_is_an_unreadable_data_gap(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    sample = samples["rw-bundled-medication"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    response = service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    assert response.status_code == 200, response.text
    assert "gap.unreadable-data" in card_codes(response.json())

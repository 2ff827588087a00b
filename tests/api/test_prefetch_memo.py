"""A prefetch seen before is not gathered again (cds/api/prefetched.py): the answer is the same,
another patient's prefetch is still refused, and data that needed the FHIR server is never kept."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from cds.api import strictjson
from cds.api.audit import CallRecord
from cds.api.call import read_request
from cds.api.prefetched import HEAD, Prefetched, PrefetchMemo
from cds.errors import CdsError, outcome_of
from cds.fhir.source import RawPatient

from .conftest import Service
from .helpers import FhirData, Sample, card_codes, hook_body, prefetch_for

SERVICE = "her2-therapy-review"


@pytest.fixture
def memo(service: Service) -> PrefetchMemo:
    kept: PrefetchMemo = service.runtime.prefetched
    kept.clear()
    return kept


@pytest.fixture
def gathers(service: Service, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each gather of patient data from the prefetch or the FHIR server, by the patient's id."""
    seen: list[str] = []
    fetcher = service.runtime.fetcher
    original = fetcher.gather_noting_source

    async def counted(templates: Any, prefetch: Any, patient_id: str, access: Any) -> Any:
        seen.append(patient_id)
        return await original(templates, prefetch, patient_id, access)

    monkeypatch.setattr(fetcher, "gather_noting_source", counted)
    return seen


def test_a_repeated_prefetch_answers_the_same_without_gathering_again(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, memo: PrefetchMemo, gathers: list[str]
) -> None:
    for name in ("tdm1-platelets-not-recovered", "mbc-second-line"):
        sample = samples[name]
        prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
        answers = [service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch))]
        answers.append(service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch)))
        assert gathers == [sample.patient_id]
        memo.clear()  # the same call again, gathered afresh
        answers.append(service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch)))
        assert gathers == [sample.patient_id] * 2
        assert [a.status_code for a in answers] == [200] * 3
        assert answers[0].json() == answers[1].json() == answers[2].json()
        assert card_codes(answers[0].json()) == [c for c in sample.expected if not c.startswith("info.")]
        gathers.clear()


def test_a_kept_prefetch_of_one_patient_is_still_refused_for_another(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, memo: PrefetchMemo, gathers: list[str]
) -> None:
    mine, other = samples["tdm1-platelets-not-recovered"], samples["mbc-second-line"]
    prefetch = prefetch_for(fhir_data, service.templates, mine.patient_id)
    assert (
        service.call(SERVICE, hook_body("patient-view", mine.patient_id, prefetch=prefetch)).status_code
        == 200
    )
    assert len(memo) == 1
    refused = service.call(SERVICE, hook_body("patient-view", other.patient_id, prefetch=prefetch))
    assert gathers == [mine.patient_id]  # the second call used the kept prefetch...
    memo.clear()
    fresh = service.call(SERVICE, hook_body("patient-view", other.patient_id, prefetch=prefetch))
    assert gathers == [mine.patient_id, other.patient_id]
    assert refused.status_code == fresh.status_code == 400  # ...and was refused as a fresh gather is
    assert refused.json() == fresh.json()


def test_data_that_needed_the_fhir_server_is_not_kept(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, memo: PrefetchMemo
) -> None:
    sample = samples["tdm1-platelets-not-recovered"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    del prefetch["labObservations"]
    body = hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base)
    assert service.call(SERVICE, body).status_code == 200
    assert len(memo) == 0


def test_a_prefetch_with_a_medication_left_to_read_is_not_kept(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, memo: PrefetchMemo
) -> None:
    """Without fhirServer the referenced Medication cannot be read (a gap card); the same prefetch
    with fhirServer then reads it and finds the drug: the first answer must not be reused."""
    sample = samples["rw-bundled-medication"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    alone = service.call(SERVICE, hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    assert "gap.unreadable-data" in card_codes(alone.json())
    assert len(memo) == 0
    body = hook_body("patient-view", sample.patient_id, prefetch=prefetch, fhir_server=service.fhir_base)
    read = service.call(SERVICE, body)
    assert card_codes(read.json()) == [c for c in sample.expected if not c.startswith("info.")]
    assert len(memo) == 0


def test_the_prefetch_text_comes_from_the_duplicate_key_check(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    """read_request hands on the text the check wrote: exactly orjson's text of request.prefetch."""
    sample = samples["tdm1-platelets-not-recovered"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    published = service.runtime.services[SERVICE]
    body = orjson.dumps(hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    request, _, text = read_request(body, published, CallRecord("service", SERVICE))
    assert text is not None and text == orjson.dumps(request.prefetch)
    body = orjson.dumps(hook_body("patient-view", sample.patient_id, fhir_server=service.fhir_base))
    assert read_request(body, published, CallRecord("service", SERVICE))[2] is None


def _kept_text(service: Service, body: bytes) -> bytes:
    """Call once with ``body`` so its prefetch is kept; the kept text."""
    memo: PrefetchMemo = service.runtime.prefetched
    memo.clear()
    assert service.call(SERVICE, body).status_code == 200
    assert len(memo) == 1
    return next(iter(memo._entries))


def test_a_kept_prefetch_sent_again_is_found_in_the_request_and_not_read_again(
    service: Service,
    samples: dict[str, Sample],
    fhir_data: FhirData,
    gathers: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = samples["tdm1-platelets-not-recovered"]
    prefetch = prefetch_for(fhir_data, service.templates, sample.patient_id)
    compact = orjson.dumps(hook_body("patient-view", sample.patient_id, prefetch=prefetch))
    first = service.call(SERVICE, compact)
    read_in_full: list[int] = []
    real = strictjson.loads_with

    def counted(data: bytes, member: str | None) -> Any:
        read_in_full.append(len(data))
        return real(data, member)

    monkeypatch.setattr(strictjson, "loads_with", counted)
    again = service.call(SERVICE, compact)
    spaced = json.dumps(hook_body("patient-view", sample.patient_id, prefetch=prefetch), indent=1).encode()
    spaced_answer = service.call(SERVICE, spaced)
    # the compact repeat was read around its prefetch (only the rest, a few hundred bytes), the
    # spaced one in full
    assert read_in_full[0] < 1000 and read_in_full[1:] == [len(spaced)]
    assert gathers == [sample.patient_id]  # ...and neither was gathered again (same text when re-written)
    assert first.json() == again.json() == spaced_answer.json()


def test_the_kept_text_elsewhere_in_a_request_is_not_taken_for_its_prefetch(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData
) -> None:
    mine, other = samples["tdm1-platelets-not-recovered"], samples["mbc-second-line"]
    kept = _kept_text(
        service,
        orjson.dumps(
            hook_body(
                "patient-view",
                mine.patient_id,
                prefetch=prefetch_for(fhir_data, service.templates, mine.patient_id),
            )
        ),
    )
    theirs = prefetch_for(fhir_data, service.templates, other.patient_id)
    published = service.runtime.services[SERVICE]
    memo = service.runtime.prefetched
    body = orjson.dumps(hook_body("patient-view", other.patient_id, prefetch=theirs))
    # the kept text as a nested "prefetch" member of the context, before the real one
    nested = body.replace(b'"context":{', b'"context":{"prefetch":' + kept + b",", 1)
    assert nested.index(kept) < nested.rindex(b'"prefetch":')
    request, _, text = read_request(nested, published, CallRecord("service", SERVICE), memo)
    assert request.prefetch == theirs and text == orjson.dumps(theirs)
    answer = service.call(SERVICE, nested)
    assert answer.status_code == 200
    assert card_codes(answer.json()) == [c for c in other.expected if not c.startswith("info.")]


@pytest.mark.parametrize(
    "damage",
    ["repeated member", "repeat in the context", "trailing text", "cut short"],
)
def test_a_request_around_a_kept_prefetch_is_checked_as_a_whole(
    service: Service, samples: dict[str, Sample], fhir_data: FhirData, damage: str
) -> None:
    sample = samples["tdm1-platelets-not-recovered"]
    body = orjson.dumps(
        hook_body(
            "patient-view",
            sample.patient_id,
            prefetch=prefetch_for(fhir_data, service.templates, sample.patient_id),
        )
    )
    kept = _kept_text(service, body)
    assert body.endswith(b'"prefetch":' + kept + b"}")
    damaged = {
        "repeated member": body[:-1] + b',"prefetch":{}}',
        "repeat in the context": body.replace(b'"context":{', b'"context":{"userId":"x",', 1),
        "trailing text": body + b"]",
        "cut short": body[:-1],
    }[damage]
    published = service.runtime.services[SERVICE]
    with pytest.raises(CdsError) as refused:
        read_request(damaged, published, CallRecord("service", SERVICE), service.runtime.prefetched)
    memo_less = service.call(SERVICE, damaged)
    assert memo_less.status_code == outcome_of(refused.value).http_status == 400


def test_recognise_finds_a_kept_text_wherever_the_member_stands_and_nothing_else() -> None:
    """The search is bounded by the shortest kept text: a prefetch written last, or first, is
    still found; an empty memory or texts too long for the body find nothing."""
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "gender": "female"}, "labs": None}
    assert len(orjson.dumps(prefetch)) > HEAD  # a text of at most HEAD bytes is read in full
    text = orjson.dumps(prefetch)
    memo = PrefetchMemo()
    last = orjson.dumps({"hook": "patient-view", "context": {"patientId": "p1"}, "prefetch": prefetch})
    first = orjson.dumps({"prefetch": prefetch, "hook": "patient-view", "context": {"patientId": "p1"}})
    assert memo.recognise(last) is None  # nothing kept
    memo.put(b'{"patient":' + b"1" * len(last) + b"}", _entry())  # longer than any body here
    assert memo.recognise(last) is None
    memo.put(text, _entry(prefetch))
    for body in (last, first):
        found = memo.recognise(body)
        assert found is not None and found[0] == text
        assert found[1] == orjson.loads(body) and found[1]["prefetch"] is prefetch
    assert memo.recognise(last.replace(b'"id":"p1"', b'"id":"p2"')) is None  # another chart


def _entry(prefetch: dict[str, Any] | None = None) -> Prefetched:
    return Prefetched(prefetch or {}, {}, [], RawPatient({}, [], "test"), b"")

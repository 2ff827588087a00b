"""A service keeps parsed records by content: a repeat call answers exactly as a fresh evaluation.

The CDS Hooks service evaluates with ``remember_verdicts=True``, which keeps the settled record of
each recently seen content (cds/record_memo.py) and derives facts, rules and findings from it
for the call's instant. These tests prove the kept record changes nothing: every sample,
evaluated at one instant and then at others, gives byte for byte what a fresh evaluator gives.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds import Evaluator, load_library, parse_as_of, raw_patient_from_bytes, raw_patient_from_resources
from cds.engine.library import RuleLibrary
from cds.errors import InputRejected
from cds.fhir.source import RawPatient
from cds.record_memo import RecordMemo, content_key, with_order

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "fhir_samples").glob("*.json"))
INSTANTS = [parse_as_of(d) for d in ("2026-11-01", "2025-03-15", "2026-11-01T08:30:00Z", "2027-06-30")]


@pytest.fixture(scope="module")
def library() -> RuleLibrary:
    return load_library(ROOT / "rules")


def test_every_sample_evaluated_again_at_other_instants_answers_as_a_fresh_evaluation(
    library: RuleLibrary,
) -> None:
    service = Evaluator(library, remember_verdicts=True)
    fresh = Evaluator(library)
    differ: list[str] = []
    for path in SAMPLES:
        data = path.read_bytes()
        for as_of in INSTANTS:
            kept = service.evaluate(raw_patient_from_bytes(data, f"call {as_of}"), as_of=as_of)
            new = fresh.evaluate(raw_patient_from_bytes(data, path.name), as_of=as_of)
            if kept.evaluation.to_json() != new.evaluation.to_json():
                differ.append(f"{path.name} at {as_of}")
    assert differ == []


def test_the_same_content_from_another_call_reuses_the_record(library: RuleLibrary) -> None:
    memo = RecordMemo()
    evaluator = Evaluator(library, remember_verdicts=True)
    data = (ROOT / "fhir_samples" / "tdm1-platelets-not-recovered.json").read_bytes()
    parsed: list[str] = []

    def parse(raw: RawPatient) -> Any:
        parsed.append(raw.origin)
        return evaluator.parse(raw)

    first = raw_patient_from_bytes(data, "hook call 1")
    second = raw_patient_from_bytes(data, "hook call 2")
    record_one, _ = memo.record(first, None, lambda: parse(first))
    record_two, _ = memo.record(second, None, lambda: parse(second))
    assert record_one is record_two
    assert parsed == ["hook call 1"]


def test_a_changed_result_is_a_new_content_and_changes_the_finding(library: RuleLibrary) -> None:
    service = Evaluator(library, remember_verdicts=True)
    bundle = orjson.loads((ROOT / "fhir_samples" / "tdm1-platelets-not-recovered.json").read_bytes())
    resources = [e["resource"] for e in bundle["entry"]]
    as_of = INSTANTS[0]
    before = service.evaluate(raw_patient_from_resources(resources, "call 1"), as_of=as_of)
    assert "alert.tdm1.platelets-not-recovered" in {f.code for f in before.evaluation.findings}
    changed = copy.deepcopy(resources)
    platelets = [
        r
        for r in changed
        if r["resourceType"] == "Observation" and r["code"]["coding"][0].get("code") == "777-3"
    ]
    for observation in platelets:
        observation["valueQuantity"]["value"] = 250
    after = service.evaluate(raw_patient_from_resources(changed, "call 2"), as_of=as_of)
    fresh = Evaluator(library).evaluate(raw_patient_from_resources(changed, "fresh"), as_of=as_of)
    assert after.evaluation.to_json() == fresh.evaluation.to_json()
    assert "alert.tdm1.platelets-not-recovered" not in {f.code for f in after.evaluation.findings}


def test_the_memo_keeps_only_the_most_recent_records(library: RuleLibrary) -> None:
    memo = RecordMemo(size=2)
    evaluator = Evaluator(library)
    raws = [raw_patient_from_bytes(p.read_bytes(), p.name) for p in SAMPLES[:3]]
    kept = [memo.record(raw, None, lambda raw=raw: evaluator.parse(raw))[0] for raw in raws]  # type: ignore[misc]
    assert memo.record(raws[2], None, lambda: evaluator.parse(raws[2]))[0] is kept[2]
    assert memo.record(raws[1], None, lambda: evaluator.parse(raws[1]))[0] is kept[1]
    assert memo.record(raws[0], None, lambda: evaluator.parse(raws[0]))[0] is not kept[0]


def test_a_draft_order_is_part_of_the_content(library: RuleLibrary) -> None:
    raw = raw_patient_from_bytes((SAMPLES[0]).read_bytes(), "x")
    draft = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"}
    other = {**draft, "id": "d2"}
    assert content_key(raw, draft) != content_key(raw, other)
    assert content_key(raw, draft) != content_key(raw, None)


def test_content_that_is_not_json_is_parsed_every_time_not_kept() -> None:
    raw = RawPatient(patient={"resourceType": "Patient", "id": "p", "x": {1, 2}}, resources=[])
    assert content_key(raw, None) is None
    memo = RecordMemo()
    calls: list[int] = []

    def parse() -> Any:
        calls.append(1)
        return object()

    first, _ = memo.record(raw, None, parse)
    second, _ = memo.record(raw, None, parse)
    assert first is not second
    assert calls == [1, 1]


def test_the_memo_is_bounded_by_the_size_of_what_it_keeps(library: RuleLibrary) -> None:
    evaluator = Evaluator(library)
    raws = [raw_patient_from_bytes(p.read_bytes(), p.name) for p in SAMPLES[:3]]
    sizes = [len(content_key(raw, None) or b"") for raw in raws]
    memo = RecordMemo(size=10, content_bytes=sizes[1] + sizes[2])
    kept = [memo.record(raw, None, lambda raw=raw: evaluator.parse(raw))[0] for raw in raws]  # type: ignore[misc]
    assert memo.record(raws[2], None, lambda: evaluator.parse(raws[2]))[0] is kept[2]
    assert memo.record(raws[1], None, lambda: evaluator.parse(raws[1]))[0] is kept[1]
    assert memo.record(raws[0], None, lambda: evaluator.parse(raws[0]))[0] is not kept[0]  # made room


def test_a_content_larger_than_the_whole_memo_is_never_kept(library: RuleLibrary) -> None:
    evaluator = Evaluator(library)
    raw = raw_patient_from_bytes(SAMPLES[0].read_bytes(), "big")
    memo = RecordMemo(content_bytes=len(content_key(raw, None) or b"") - 1)
    first, _ = memo.record(raw, None, lambda: evaluator.parse(raw))
    second, _ = memo.record(raw, None, lambda: evaluator.parse(raw))
    assert first is not second


def test_the_key_with_an_order_is_written_from_the_key_without_one() -> None:
    drafts = [
        {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order"},
        {"resourceType": "MedicationRequest", "id": "d:2", "note": [{"text": "a,null]"}]},
        {},
    ]
    for path in SAMPLES[:5]:
        raw = raw_patient_from_bytes(path.read_bytes(), path.name)
        plain = content_key(raw, None)
        assert plain is not None
        assert with_order(plain, None) is plain
        for draft in drafts:
            assert with_order(plain, draft) == content_key(raw, draft)
    assert with_order(b"[{},[],[],{},[],{},null]", {"x": {1, 2}}) is None  # not JSON: not kept


def test_evaluation_never_changes_the_resources_it_is_given(library: RuleLibrary) -> None:
    """The CDS Hooks service keeps a prefetch's decoded resources and evaluates them again on
    later calls (cds/api/prefetched.py): that is exact only if no evaluation changes them."""
    service = Evaluator(library, remember_verdicts=True)
    changed: list[str] = []
    drafts = [orjson.loads(p.read_bytes()) for p in sorted((ROOT / "fhir_samples" / "orders").glob("*.json"))]
    for path in SAMPLES:
        raw = raw_patient_from_bytes(path.read_bytes(), path.name)
        before = copy.deepcopy(raw)
        for as_of in INSTANTS:
            service.evaluate(raw, as_of=as_of)
            for draft in drafts:
                with contextlib.suppress(InputRejected):  # a draft that cannot be read: still intact
                    service.evaluate(raw, as_of=as_of, order=draft)
        if orjson.dumps(before.__dict__) != orjson.dumps(raw.__dict__):
            changed.append(path.name)
    assert changed == []

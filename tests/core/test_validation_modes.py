"""Select-then-validate gives exactly what validating everything gives.

``Evaluator(validate="selected")`` (the default) validates with fhir.resources the records the
facts read and screens the others; ``validate="all"`` validates every resource of interest before
reading it. Both must give the same findings, gaps, ``skipped`` list and facts on every sample,
every vendored external file, a synthetic cohort and invalid-resource variants of them, and the
cheap parts must be sound: the screen never passes what fhir.resources rejects, and the
element-remembering validator reports what plain ``model_validate`` reports, word for word.
(bench/validate_modes.py runs the same comparison on a 5,000-patient cohort.)
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from cds import Evaluator, InputRejected, RuleLibrary, parse_as_of, raw_patient_from_bytes, read_order
from cds.cli import app
from cds.cohort.synth import make_patient
from cds.errors import ConfigurationError
from cds.evaluate import agents_read
from cds.facts.select import PLATELETS_SINCE_DOSE
from cds.fhir.screen import proven_valid
from cds.fhir.source import raw_patient_from_resources
from cds.fhir.validate import clear_validation_cache, plain_validation_error, validation_error
from tests.conftest import ROOT, SAMPLES
from tests.external import VENDORED

JSON = dict[str, Any]
AS_OF = parse_as_of("2026-11-01")
runner = CliRunner()
OF_INTEREST = {
    "Observation",
    "Condition",
    "Procedure",
    "AllergyIntolerance",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationDispense",
}


@pytest.fixture(scope="module")
def modes(library: RuleLibrary) -> tuple[Evaluator, Evaluator]:
    return Evaluator(library, validate="all"), Evaluator(library, validate="selected")


def outcome(evaluator: Evaluator, data: bytes, as_of: datetime, order: JSON | None = None) -> Any:
    """Everything an evaluation shows: the evaluation JSON (findings, gaps, skipped), the facts
    with their provenance and the suppressed findings; or the rejection."""
    clear_validation_cache()
    try:
        result = evaluator.evaluate(raw_patient_from_bytes(data), as_of=as_of, order=order)
    except InputRejected as exc:
        return ("rejected", str(exc))
    return (
        result.evaluation.to_json(),
        result.facts.model_dump(mode="json"),
        result.facts.provenance,
        [s.model_dump(mode="json") for s in result.suppressed],
    )


def same_in_both_modes(
    modes: tuple[Evaluator, Evaluator], data: bytes, as_of: datetime, order: Any = None
) -> Any:
    everything, selected = (outcome(e, data, as_of, order) for e in modes)
    assert selected == everything
    return selected


def _sample_cases() -> Iterator[tuple[str, Path, datetime, Path | None]]:
    for path in sorted(SAMPLES.glob("*.json")):
        sidecar = path.with_name(path.name.replace(".json", ".expected.yaml"))
        expected = yaml.safe_load(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}
        order = SAMPLES / expected["order"] if expected.get("order") else None
        yield path.stem, path, parse_as_of(expected.get("as_of") or "2026-11-01"), order


SAMPLE_CASES = list(_sample_cases())


@pytest.mark.parametrize(("name", "path", "as_of", "order"), SAMPLE_CASES, ids=[c[0] for c in SAMPLE_CASES])
def test_every_sample_gives_the_same_evaluation_in_both_modes(
    name: str, path: Path, as_of: datetime, order: Path | None, modes: tuple[Evaluator, Evaluator]
) -> None:
    draft = read_order(order.read_bytes(), str(order)) if order else None
    same_in_both_modes(modes, path.read_bytes(), as_of, draft)


EXTERNAL = sorted(p for p in VENDORED.rglob("*.json"))


@pytest.mark.parametrize("path", EXTERNAL, ids=[p.name for p in EXTERNAL])
def test_every_vendored_external_file_gives_the_same_evaluation_in_both_modes(
    path: Path, modes: tuple[Evaluator, Evaluator]
) -> None:
    same_in_both_modes(modes, path.read_bytes(), AS_OF)


def test_a_synthetic_cohort_gives_the_same_evaluations_in_both_modes(
    modes: tuple[Evaluator, Evaluator], library: RuleLibrary
) -> None:
    """300 patients of ``cds cohort synth --seed 7``; in every tenth one resource is invalid."""
    scenarios = set()
    kinds = list(INVALIDATIONS)
    skipped = 0
    for index in range(300):
        scenario, resources = make_patient(7, index, date(2026, 11, 1), library.catalogue)
        scenarios.add(scenario)
        if index % 10 == 0:
            n = index // 10
            INVALIDATIONS[kinds[n % len(kinds)]](resources[n % len(resources)])
        skipped += len(codes_and_skipped(same_in_both_modes(modes, orjson.dumps(resources), AS_OF))[1])
    assert len(scenarios) >= 10  # the cohort covers the synthetic scenarios
    assert skipped >= 15  # and the invalid resources of interest were found in both modes


def test_a_parsed_record_settles_the_same_for_several_as_of_instants(
    modes: tuple[Evaluator, Evaluator],
) -> None:
    everything, selected = modes
    data = bundle_of(lab_history())
    record = selected.parse(raw_patient_from_bytes(data))
    for day in ("2026-05-01", "2026-11-01", "2026-08-15"):
        as_of = parse_as_of(day)
        expected = everything.evaluate(raw_patient_from_bytes(data), as_of=as_of).evaluation.to_json()
        assert selected.evaluate_record(record, as_of=as_of).evaluation.to_json() == expected


# -- invalid-resource variants ----------------------------------------------------------------------
def bundle_of(resources: list[JSON]) -> bytes:
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    )


def sample(name: str) -> list[JSON]:
    doc = orjson.loads((SAMPLES / f"{name}.json").read_bytes())
    return [e["resource"] for e in doc["entry"]]


def lab_history() -> list[JSON]:
    """The sample on T-DM1 plus a year of weekly platelet counts (the long-history shape)."""
    resources = sample("tdm1-platelets-not-recovered")
    template = next(r for r in resources if r.get("id") == "tdm1-platelets-not-recovered-obs22")
    for week in range(52):
        lab = copy.deepcopy(template)
        lab["id"] = f"hist-{week}"
        lab["effectiveDateTime"] = f"{date.fromordinal(date(2026, 10, 28).toordinal() - 7 * week)}T07:45:00Z"
        lab["valueQuantity"]["value"] = 90 + week % 7 * 15
        resources.append(lab)
    return resources


# Ways to make a resource invalid for fhir.resources while its reading stays the same, so a reader
# that skipped validation would use it.
INVALIDATIONS: dict[str, Callable[[JSON], None]] = {
    "unknown element": lambda r: r.__setitem__("unknownElement", True),
    "meta.lastUpdated without time": lambda r: r.__setitem__("meta", {"lastUpdated": "2026-01-01"}),
    "extension without url": lambda r: r.__setitem__("extension", [{"valueString": "x"}]),
    # the model itself fails on this shape (AttributeError): "could not be read" in both modes
    "primitive extension not an object": lambda r: r.__setitem__("_language", 12),
}


def invalidated(resources: list[JSON], rid: str, how: str) -> list[JSON]:
    out = copy.deepcopy(resources)
    INVALIDATIONS[how](next(r for r in out if r.get("id") == rid))
    return out


def codes_and_skipped(selected: Any) -> tuple[list[str], list[str]]:
    evaluation = orjson.loads(selected[0])
    return [f["code"] for f in evaluation["findings"]], [s["resource"] for s in evaluation["skipped"]]


def test_an_invalid_latest_platelet_count_is_skipped_and_the_one_before_is_used(
    modes: tuple[Evaluator, Evaluator],
) -> None:
    resources = lab_history()
    latest = "tdm1-platelets-not-recovered-obs17"  # 2026-10-31
    valid = same_in_both_modes(modes, bundle_of(resources), AS_OF)
    assert valid[1]["labs"]["platelets"]["date"] == "2026-10-31T08:00:00Z"
    broken = same_in_both_modes(modes, bundle_of(invalidated(resources, latest, "unknown element")), AS_OF)
    codes, skipped = codes_and_skipped(broken)
    assert skipped == [f"Observation/{latest}"]
    assert "gap.unreadable-data" in codes
    assert broken[1]["labs"]["platelets"]["date"] == "2026-10-28T07:45:00Z"  # the weekly count before it


def test_an_invalid_old_lab_result_is_skipped_with_the_unreadable_data_gap(
    modes: tuple[Evaluator, Evaluator],
) -> None:
    resources = lab_history()
    valid = same_in_both_modes(modes, bundle_of(resources), AS_OF)
    broken = same_in_both_modes(modes, bundle_of(invalidated(resources, "hist-40", "unknown element")), AS_OF)
    codes, skipped = codes_and_skipped(broken)
    assert skipped == ["Observation/hist-40"]
    assert "gap.unreadable-data" in codes and "gap.unreadable-data" not in codes_and_skipped(valid)[0]
    assert broken[1]["labs"] == valid[1]["labs"]  # an old result changes no lab fact


def test_only_the_agents_whose_platelet_count_a_rule_reads_select_counts_since_their_last_dose(
    library: RuleLibrary, modes: tuple[Evaluator, Evaluator]
) -> None:
    assert agents_read(library, PLATELETS_SINCE_DOSE) == {"tdm1"}
    # a count after trastuzumab's last dose (March) but before T-DM1's (October) is read by no
    # rule: screened, not selected; made invalid, both modes still skip it and raise the gap
    resources = lab_history()
    valid = same_in_both_modes(modes, bundle_of(resources), AS_OF)
    assert valid[1]["labs"]["platelets_min_since_last_dose"]["trastuzumab"] == 41.0
    broken = same_in_both_modes(modes, bundle_of(invalidated(resources, "hist-20", "unknown element")), AS_OF)
    codes, skipped = codes_and_skipped(broken)
    assert skipped == ["Observation/hist-20"] and "gap.unreadable-data" in codes


def test_an_invalid_medication_is_skipped_in_both_modes(modes: tuple[Evaluator, Evaluator]) -> None:
    resources = lab_history()
    last_dose = "tdm1-platelets-not-recovered-ma32"  # 2026-10-12, the last T-DM1 dose
    broken = same_in_both_modes(
        modes, bundle_of(invalidated(resources, last_dose, "extension without url")), AS_OF
    )
    _codes, skipped = codes_and_skipped(broken)
    assert skipped == [f"MedicationAdministration/{last_dose}"]
    assert broken[1]["exposure"]["tdm1"]["last"] == "2026-09-21"


def test_an_invalid_result_after_as_of_and_one_of_another_patient_are_judged_alike(
    modes: tuple[Evaluator, Evaluator],
) -> None:
    resources = lab_history()
    future = copy.deepcopy(resources[-1])
    future.update(id="future", effectiveDateTime="2026-12-01T08:00:00Z", unknownElement=1)
    foreign_invalid = copy.deepcopy(resources[-1])
    foreign_invalid.update(id="foreign-invalid", subject={"reference": "Patient/other"}, unknownElement=1)
    foreign = copy.deepcopy(resources[-1])
    foreign.update(id="foreign", subject={"reference": "Patient/other"})
    undated = copy.deepcopy(resources[-1])
    undated.update(id="undated", unknownElement=1)
    del undated["effectiveDateTime"]
    screened_but_valid = copy.deepcopy(resources[-1])
    screened_but_valid.update(id="primitive-extension", _status={"extension": [{"url": "http://x.org/e"}]})
    data = bundle_of([*resources, future, foreign_invalid, foreign, undated, screened_but_valid])
    selected = same_in_both_modes(modes, data, AS_OF)
    codes, skipped = codes_and_skipped(selected)
    assert sorted(skipped) == [
        "Observation/foreign",
        "Observation/foreign-invalid",
        "Observation/future",
        "Observation/undated",
    ]
    reasons = {s["resource"]: s["reason"] for s in orjson.loads(selected[0])["skipped"]}
    assert "another patient" in reasons["Observation/foreign"]
    assert reasons["Observation/foreign-invalid"].startswith("invalid FHIR R4 Observation")
    assert "gap.other-patient-data" in codes and "gap.unreadable-data" in codes


VARIANT_SAMPLES = [
    "tdm1-platelets-not-recovered",
    "mbc-second-line",
    "ebc-residual-tdm1",
    "her2-discordant",
    "rw-tdxd-febrile-neutropenia-labs",
    "tdxd-lvef-hold",
    "rw-lvef-fraction",
]


@pytest.mark.parametrize("name", VARIANT_SAMPLES)
def test_every_resource_of_a_sample_made_invalid_in_turn_gives_the_same_evaluation_in_both_modes(
    name: str, modes: tuple[Evaluator, Evaluator]
) -> None:
    resources = sample(name)
    targets = [
        r["id"] for r in resources if r.get("resourceType") in OF_INTEREST and isinstance(r.get("id"), str)
    ]
    assert targets
    kinds = list(INVALIDATIONS)
    for number, rid in enumerate(targets):
        how = kinds[number % len(kinds)]
        selected = same_in_both_modes(modes, bundle_of(invalidated(resources, rid, how)), AS_OF)
        if selected[0] != "rejected":
            assert any(s.endswith(f"/{rid}") for s in codes_and_skipped(selected)[1]), (rid, how)


# -- the cheap parts are sound ------------------------------------------------------------------------
def corpus() -> list[JSON]:
    """The resources of the samples, the vendored external files and 100 synthetic patients, at
    most 150 of each resource type (the large Synthea files repeat the same shapes)."""
    out: list[JSON] = []
    for path in [*sorted(SAMPLES.glob("*.json")), *EXTERNAL]:
        try:
            doc = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            continue
        items = (
            [e.get("resource") for e in doc.get("entry") or [] if isinstance(e, dict)]
            if isinstance(doc, dict) and doc.get("resourceType") == "Bundle"
            else doc
            if isinstance(doc, list)
            else [doc]
        )
        out.extend(r for r in items if isinstance(r, dict) and isinstance(r.get("resourceType"), str))
    from cds import load_library

    catalogue = load_library(ROOT / "rules").catalogue
    for index in range(100):
        out.extend(make_patient(11, index, date(2026, 11, 1), catalogue)[1])
    per_type: dict[str, int] = {}
    kept = []
    for resource in out:
        seen = per_type.get(resource["resourceType"], 0)
        if seen < 150:
            kept.append(resource)
        per_type[resource["resourceType"]] = seen + 1
    return kept


ODD_VALUES: list[Any] = [
    "",
    " x",
    "x ",
    "a  b",
    "\x0b",
    "é",
    "x" * 70,
    "2026-02-30",
    "2026-13-01",
    "2026-01-01T10:00:00",
    "2026-01-01T24:00:00Z",
    "2026-01-01T10:00:00+15:00",
    "0000-01-01",
    "12",
    0,
    -1,
    2**40,
    1.5,
    1e300,
    True,
    None,
    [],
    {},
    ["x"],
    {"x": 1},
    [None],
]


def mutants(resource: JSON, rng: random.Random, count: int) -> Iterator[JSON]:
    """Copies of ``resource`` with one odd change at a random place (a value, a key, a list)."""
    for _ in range(count):
        out = copy.deepcopy(resource)
        containers: list[Any] = []
        stack: list[Any] = [out]
        while stack:
            node = stack.pop()
            containers.append(node)
            children = node.values() if isinstance(node, dict) else node
            stack.extend(c for c in children if isinstance(c, dict | list))
        node = rng.choice(containers)
        if isinstance(node, list):
            if node and rng.random() < 0.5:
                node[rng.randrange(len(node))] = rng.choice(ODD_VALUES)
            else:
                node.append(rng.choice([*ODD_VALUES, copy.deepcopy(node[0]) if node else None]))
        else:
            keys = [k for k in node if k != "resourceType"]
            roll = rng.random()
            if keys and roll < 0.6:
                node[rng.choice(keys)] = rng.choice(ODD_VALUES)
            elif keys and roll < 0.75:
                del node[rng.choice(keys)]
            elif roll < 0.9:
                node[rng.choice(["valueString", "valueBoolean", "_status", "unknown", "id", "url"])] = (
                    rng.choice(ODD_VALUES)
                )
            else:
                node["valueString" if "valueQuantity" in node else "valueQuantity"] = {"value": 1}
        yield out


@pytest.fixture(scope="module")
def resources() -> list[JSON]:
    return corpus()


def test_the_screen_never_passes_a_resource_fhir_resources_rejects(resources: list[JSON]) -> None:
    rng = random.Random(5)
    proven = checked = 0
    for resource in resources:
        for candidate in [resource, *mutants(resource, rng, 6)]:
            if proven_valid(candidate):
                proven += 1
                assert plain_validation_error(candidate) is None, candidate
            checked += 1
    assert proven > checked // 10  # the screen does prove ordinary resources valid


def test_the_screen_proves_ordinary_lab_results_and_doses_valid() -> None:
    for resource in lab_history():
        if resource["resourceType"] in ("Observation", "MedicationAdministration"):
            assert proven_valid(resource), resource["id"]


def verdict(validate: Callable[[JSON], str | None], resource: JSON) -> str | None:
    """The verdict, or the exception the model raised on a shape it cannot handle."""
    try:
        return validate(resource)
    except Exception as exc:  # compared, not hidden
        return f"raised {type(exc).__name__}: {exc}"


def test_remembered_elements_give_the_plain_verdict_word_for_word(resources: list[JSON]) -> None:
    rng = random.Random(9)
    clear_validation_cache()
    candidates = [c for r in resources for c in [r, *mutants(r, random.Random(rng.random()), 3)]]
    plain = [verdict(plain_validation_error, c) for c in candidates]
    for round_ in range(2):  # cold, then with every element remembered
        for candidate, expected in zip(candidates, plain, strict=True):
            assert verdict(validation_error, candidate) == expected, (round_, candidate)
    for candidate, expected in zip(candidates, plain, strict=True):
        assert verdict(lambda r: validation_error(r, remember=True), candidate) == expected


def test_a_resource_nested_too_deep_is_refused_by_both_validators() -> None:
    deep: JSON = {"url": "http://x.org/e", "valueString": "x"}
    for _ in range(80):
        deep = {"url": "http://x.org/e", "extension": [deep]}
    resource = {
        "resourceType": "Observation",
        "id": "deep",
        "status": "final",
        "code": {"text": "x"},
        "extension": [deep],
    }
    assert not proven_valid(resource)
    assert validation_error(resource) == plain_validation_error(resource)
    assert "nested more than 64 levels deep" in str(validation_error(resource))


def test_an_unknown_validation_mode_is_refused(library: RuleLibrary) -> None:
    with pytest.raises(ConfigurationError, match="validate must be one of all, selected"):
        Evaluator(library, validate="some")  # type: ignore[arg-type]


def test_cds_evaluate_prints_the_same_json_with_validate_all_and_selected(tmp_path: Path) -> None:
    patient = tmp_path / "long-history.json"
    resources = lab_history()
    INVALIDATIONS["unknown element"](resources[-1])
    patient.write_bytes(bundle_of(resources))
    args = ["evaluate", str(patient), "--format", "json", "--as-of", "2026-11-01"]
    outputs = [runner.invoke(app, [*args, "--validate", mode]) for mode in ("all", "selected")]
    assert [o.exit_code for o in outputs] == [0, 0]
    assert outputs[0].stdout == outputs[1].stdout == runner.invoke(app, args).stdout
    assert "hist-51" in outputs[0].stdout  # the invalid old result is listed in skipped
    refused = runner.invoke(app, [*args, "--validate", "some"])
    assert refused.exit_code == 2


def test_a_service_remembering_readings_answers_repeat_calls_as_validating_everything(
    library: RuleLibrary, modes: tuple[Evaluator, Evaluator]
) -> None:
    """CDS Hooks keeps readings and verdicts by (patient, content): a repeat call, an invalid
    resource seen again, and another patient sending the same resource text all come out as if
    everything were validated afresh."""
    everything, _selected = modes
    service = Evaluator(library, remember_verdicts=True)
    resources = invalidated(lab_history(), "hist-3", "unknown element")
    other = copy.deepcopy(resources)
    for r in other:
        if r["resourceType"] == "Patient":
            r["id"] = "someone-else"  # every other resource still names the first patient
    for data in (bundle_of(resources), bundle_of(resources), bundle_of(other), bundle_of(resources)):
        expected = everything.evaluate(raw_patient_from_bytes(data), as_of=AS_OF).evaluation.to_json()
        assert service.evaluate(raw_patient_from_bytes(data), as_of=AS_OF).evaluation.to_json() == expected
    reasons = [s["reason"] for s in orjson.loads(outcome(service, bundle_of(other), AS_OF)[0])["skipped"]]
    assert sum("refers to another patient" in r for r in reasons) > 50


def test_raw_resources_of_one_patient_give_the_same_result_as_their_bundle(
    modes: tuple[Evaluator, Evaluator],
) -> None:
    resources = lab_history()
    _everything, selected = modes
    via_bundle = selected.evaluate(raw_patient_from_bytes(bundle_of(resources)), as_of=AS_OF)
    via_list = selected.evaluate(raw_patient_from_resources(copy.deepcopy(resources), "list"), as_of=AS_OF)
    assert via_list.evaluation.to_json() == via_bundle.evaluation.to_json()

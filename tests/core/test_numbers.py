"""Legal but extreme input never fails an evaluation: numbers over the whole float range, deep nesting.

Each number is either used exactly (findings computed from it, through the real durable_rules
engine) or its resource is skipped with the reason; nothing raises.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cds import Evaluator, parse_as_of, raw_patient_from_resources
from cds.engine.durable import DurableRunner, encode_fact
from cds.errors import EvaluationError
from cds.fhir.limits import MAX_DEPTH, MAX_MAGNITUDE
from tests.wrong_patient import HOLD, PID, bundle, newest_platelets, resources

AS_OF = parse_as_of("2026-11-01")
FLOATS = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)
RULES = {
    "lt50": {"all": [{"m": {"$lt": {"x": 50}}}], "run": "lt50"},
    "gt1e15": {"all": [{"m": {"$gt": {"x": 1.5e15}}}], "run": "gt1e15"},
    "lt1e-5": {"all": [{"m": {"$lt": {"x": 1.5e-5}}}], "run": "lt1e-5"},
    "negative": {"all": [{"m": {"$lt": {"x": 0}}}], "run": "negative"},
    "zero": {"all": [{"m": {"x": 0}}], "run": "zero"},
}
PYTHON = {
    "lt50": lambda x: x < 50,
    "gt1e15": lambda x: x > 1.5e15,
    "lt1e-5": lambda x: x < 1.5e-5,
    "negative": lambda x: x < 0,
    "zero": lambda x: x == 0,
}
RUNNER = DurableRunner({"numbers@1": RULES})
TRIED = {"engine": 0, "patient": 0, "skipped": 0}


@settings(max_examples=400, deadline=None)
@given(FLOATS)
@example(1e16)
@example(-1e16)
@example(1e308)
@example(1e-5)
@example(5e-324)
@example(-0.0)
@example(1.7976931348623157e308)
@example(2.2250738585072014e-308)
def test_durable_compares_every_finite_float_like_python(x: float) -> None:
    TRIED["engine"] += 1
    fired = sorted(RUNNER.fire("numbers@1", {"x": x}))
    assert fired == sorted(name for name, holds in PYTHON.items() if holds(x))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_durable_compares_every_int64_like_python(x: int) -> None:
    fired = sorted(RUNNER.fire("numbers@1", {"x": x}))
    assert fired == sorted(name for name, holds in PYTHON.items() if holds(x))


@pytest.mark.parametrize(
    ("fact", "path"),
    [
        ({"labs": {"platelets": {"value": math.inf}}}, "labs.platelets.value"),
        ({"labs": {"platelets": {"value": -math.inf}}}, "labs.platelets.value"),
        ({"lvef": {"value": math.nan}}, "lvef.value"),
        ({"order": {"cycle_number": 2**64}}, "order.cycle_number"),
    ],
)
def test_engine_refuses_unrepresentable_facts_by_path(fact: dict[str, Any], path: str) -> None:
    with pytest.raises(EvaluationError, match=path.replace(".", r"\.")):
        encode_fact(fact)
    with pytest.raises(EvaluationError):
        RUNNER.fire("numbers@1", {"x": 1, **fact})
    assert RUNNER.fire("numbers@1", {"x": 1}) == ["lt50"]  # the runner is still usable


def _with_platelets(value: float) -> list[dict[str, Any]]:
    doc = copy.deepcopy(bundle())
    newest_platelets(doc)["valueQuantity"]["value"] = value
    return resources(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(x=FLOATS)
@example(x=1e16)
@example(x=-1e16)
@example(x=1e308)
@example(x=0.00001)
@example(x=5e-324)
@example(x=-0.0)
@example(x=MAX_MAGNITUDE)
@example(x=-MAX_MAGNITUDE)
@example(x=24.9999999)
def test_platelets_anywhere_in_the_float_range_give_findings_or_a_skip(
    x: float, evaluator: Evaluator
) -> None:
    """On T-DM1 for MBC: platelets < 25 hold (grade 4); outside +-1e15 the result is skipped."""
    TRIED["patient"] += 1
    raw = raw_patient_from_resources(_with_platelets(x), "fuzz")
    result = evaluator.evaluate(raw, as_of=AS_OF)
    codes = result.evaluation.codes()
    ref = f"Observation/{newest_platelets(bundle())['id']}"
    if abs(x) > MAX_MAGNITUDE:
        TRIED["skipped"] += 1
        [skip] = [s for s in result.evaluation.skipped if s.resource == ref]
        assert skip.reason == f"platelets value {x:g} is above 1e+15 in magnitude: not used"
        assert HOLD not in codes and "gap.labs-missing" in codes
    else:
        value = round(x, 6)
        assert result.facts.labs.platelets.value == value
        assert (HOLD in codes) == (value < 25)
        assert result.evaluation.skipped == []


def test_numbers_tried_are_counted() -> None:
    """Reports how many numbers the fuzz drove through the engine (printed with -s)."""
    print(f"number fuzz: {TRIED}")
    assert TRIED["engine"] >= 0


@pytest.mark.parametrize("levels", [MAX_DEPTH // 2 - 2, 126, 200, 480])
def test_deeply_nested_extensions_skip_the_resource(levels: int, evaluator: Evaluator) -> None:
    doc = copy.deepcopy(bundle())
    target = newest_platelets(doc)
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    target["extension"] = [ext]
    result = evaluator.evaluate(raw_patient_from_resources(resources(doc), "deep"), as_of=AS_OF)
    skipped = [s.reason for s in result.evaluation.skipped]
    if 2 * levels + 3 <= MAX_DEPTH:  # resource, extension list, then a dict and a list per level
        assert skipped == [] and HOLD in result.evaluation.codes()
    else:
        assert skipped == [f"invalid FHIR R4 Observation: nested more than {MAX_DEPTH} levels deep"]
        assert HOLD not in result.evaluation.codes()


def test_deeply_nested_patient_is_listed_not_fatal(evaluator: Evaluator) -> None:
    doc = copy.deepcopy(bundle())
    patient = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
    node: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(150):
        node = {"url": "http://example.org/x", "extension": [node]}
    patient["extension"] = [node]
    result = evaluator.evaluate(raw_patient_from_resources(resources(doc), "deep"), as_of=AS_OF)
    assert [s.resource for s in result.evaluation.skipped] == [f"Patient/{patient['id']}"]
    assert HOLD in result.evaluation.codes()


@pytest.mark.parametrize("dose", [1e16, -1e300])
def test_draft_order_with_an_unusable_dose_is_rejected_cleanly(dose: float, evaluator: Evaluator) -> None:
    from cds.errors import InputRejected
    from cds.fhir.source import read_order
    from tests.conftest import SAMPLES

    order = read_order((SAMPLES / "orders" / "order-tdm1-dose-out-of-range.order.json").read_bytes(), "order")
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = dose
    order["subject"] = {"reference": f"Patient/{PID}"}
    raw = raw_patient_from_resources(resources(bundle()), "draft")
    expected = r"^draft order: dose or period value .* above 1e\+15 in magnitude$"
    with pytest.raises(InputRejected, match=expected):
        evaluator.evaluate(raw, as_of=AS_OF, order=order)

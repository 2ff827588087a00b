"""Property tests (hypothesis): unit conversion algebra, and no crash on mutated resources."""

from __future__ import annotations

import copy
import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds import Evaluator, InputRejected, RuleLibrary, parse_as_of, raw_patient_from_bytes
from cds.fhir.units import UnitUnrecognized, to_canonical
from tests.conftest import SAMPLES

PLATELET_SPELLINGS = ["10*3/uL", "10^3/uL", "x10E3/uL", "K/uL", "thou/uL", "10*9/L", "x10^9/L"]
PER_UL_SPELLINGS = ["/uL", "/mm3", "cells/uL"]


@given(
    value=st.floats(min_value=0, max_value=5000, allow_nan=False), unit=st.sampled_from(PLATELET_SPELLINGS)
)
def test_thousand_per_ul_spellings_are_the_same_number(value: float, unit: str, library: RuleLibrary) -> None:
    analyte = library.valuesets.analytes["platelets"]
    assert to_canonical(analyte, value, unit) == round(value, 6)


@given(value=st.integers(min_value=0, max_value=2_000_000), unit=st.sampled_from(PER_UL_SPELLINGS))
def test_per_ul_counts_divide_by_a_thousand(value: int, unit: str, library: RuleLibrary) -> None:
    analyte = library.valuesets.analytes["platelets"]
    assert abs(to_canonical(analyte, value, unit) - value / 1000) < 1e-6


@given(unit=st.text(min_size=1, max_size=8))
def test_any_other_unit_is_rejected_or_known(unit: str, library: RuleLibrary) -> None:
    analyte = library.valuesets.analytes["platelets"]
    folded = {u.replace("µ", "u").lower() for u in analyte.units}
    try:
        to_canonical(analyte, 1.0, unit)
    except UnitUnrecognized:
        assert unit.strip().replace("µ", "u").replace("μ", "u").lower() not in folded
    else:
        assert unit.strip().replace("µ", "u").replace("μ", "u").lower() in folded


JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=12)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
BASE = orjson.loads((SAMPLES / "tdm1-hy-law.json").read_bytes())


def _mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        entries = [e for e in doc["entry"] if e["resource"]["resourceType"] != "Patient"]
        resource = data.draw(st.sampled_from(entries))["resource"]
        keys = sorted(k for k in resource if k not in ("resourceType",))
        key = data.draw(st.sampled_from(keys))
        action = data.draw(st.sampled_from(["delete", "replace", "nest"]))
        if action == "delete":
            del resource[key]
        elif action == "replace":
            resource[key] = data.draw(JSON_VALUE)
        elif isinstance(resource[key], dict) and resource[key]:
            inner = data.draw(st.sampled_from(sorted(resource[key])))
            resource[key][inner] = data.draw(JSON_VALUE)
    return doc


@settings(
    max_examples=int(os.environ.get("CDS_FUZZ_EXAMPLES", "150")),
    derandomize=not os.environ.get("CDS_FUZZ_RANDOM"),  # CI repeatable; CDS_FUZZ_RANDOM=1 explores
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_crash_on_arbitrary_resource_mutations(data: st.DataObject, evaluator: Evaluator) -> None:
    doc = _mutate(BASE, data)
    try:
        result = evaluator.evaluate(
            raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01")
        )
    except InputRejected:
        return
    for finding in result.evaluation.findings:
        assert finding.rule.id and finding.summary

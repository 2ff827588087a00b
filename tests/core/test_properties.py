"""Property tests (hypothesis): unit conversion algebra, and no crash on mutated resources.

The fuzzer mutates every sample patient and, when ``../shared/fhir-external`` is present, the
external files: deleted, replaced, nested and list-wrapped fields, dropped or junk resourceType,
junk Bundle entries. It is derandomized (fixed seed) in CI; ``CDS_FUZZ_RANDOM=1`` explores new
inputs and ``CDS_FUZZ_EXAMPLES=N`` sets how many."""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds import Evaluator, InputRejected, RuleLibrary, parse_as_of, raw_patient_from_bytes
from cds.fhir.units import UnitUnrecognized, to_canonical
from tests.conftest import SAMPLES
from tests.external import bundles, find

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
# every sample patient, and the external files (vendored, else beside the checkout) small enough
# to evaluate many times (<= 300 kB)
_EXTERNAL = [p for p in (find(rel) for rel in bundles()) if p is not None]
SOURCES = sorted(SAMPLES.glob("*.json")) + sorted(p for p in _EXTERNAL if p.stat().st_size <= 300_000)
JUNK = st.one_of(
    JSON_LEAF, st.lists(JSON_LEAF, max_size=2), st.dictionaries(st.text(max_size=6), JSON_LEAF, max_size=2)
)


def _resources(doc: Any) -> list[Any]:
    """The resource objects of a decoded file (a Bundle's entries, or a bare array's items)."""
    if isinstance(doc, dict) and isinstance(doc.get("entry"), list):
        return [
            e["resource"] for e in doc["entry"] if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    if isinstance(doc, list):
        return [r for r in doc if isinstance(r, dict)]
    return []


def _mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        entries = [r for r in _resources(doc) if r.get("resourceType") != "Patient"]
        if not entries:
            return doc
        resource = data.draw(st.sampled_from(entries))
        action = data.draw(
            st.sampled_from(
                ["delete", "replace", "nest", "drop-type", "junk-type", "wrap-list", "junk-entry"]
            )
        )
        if action == "drop-type":
            resource.pop("resourceType", None)
            continue
        if action == "junk-type":
            resource["resourceType"] = data.draw(JSON_LEAF)
            continue
        if action == "junk-entry" and isinstance(doc, dict) and isinstance(doc.get("entry"), list):
            doc["entry"].append(data.draw(st.one_of(JUNK, st.fixed_dictionaries({"resource": JUNK}))))
            continue
        keys = sorted(k for k in resource if k not in ("resourceType",))
        if not keys:
            continue
        key = data.draw(st.sampled_from(keys))
        if action == "delete":
            del resource[key]
        elif action == "replace":
            resource[key] = data.draw(JSON_VALUE)
        elif action == "wrap-list":
            resource[key] = [resource[key]]
        elif isinstance(resource[key], dict) and resource[key]:
            inner = data.draw(st.sampled_from(sorted(resource[key])))
            resource[key][inner] = data.draw(JSON_VALUE)
    return doc


def _evaluate_or_reject(evaluator: Evaluator, doc: Any) -> None:
    """Nothing in any input makes an evaluation fail: findings, or a clean InputRejected (exit 2)."""
    try:
        result = evaluator.evaluate(
            raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01")
        )
    except InputRejected:
        return
    for finding in result.evaluation.findings:
        assert finding.rule.id and finding.summary
    result.evaluation.to_json()  # the output contract renders


@settings(
    max_examples=int(os.environ.get("CDS_FUZZ_EXAMPLES", "150")),
    derandomize=not os.environ.get("CDS_FUZZ_RANDOM"),  # CI repeatable; CDS_FUZZ_RANDOM=1 explores
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_crash_on_arbitrary_resource_mutations(data: st.DataObject, evaluator: Evaluator) -> None:
    """A mutation fuzzer over every sample patient and (when present) the external files."""
    source = data.draw(st.sampled_from(SOURCES))
    _evaluate_or_reject(evaluator, _mutate(_load(source), data))


@lru_cache(maxsize=256)
def _load_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _load(path: Path) -> Any:
    return orjson.loads(_load_bytes(path))

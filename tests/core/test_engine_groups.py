"""durable_rules fires the same rules when the library's rulesets share one assert.

The engine packs rulesets into as few durable rulesets as durable's limits allow (fact paths,
rules per ruleset) because durable's cost is per assert. Which rules fire must not depend on
that packing: checked against the plain-Python evaluator of the same conditions, on every sample
and a slice of the synthetic cohort, packed as shipped and forced into many small groups.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cds import Evaluator, load_library, parse_as_of, raw_patient_from_bytes, raw_patient_from_resources
from cds.cohort.synth import make_patient
from cds.engine import runtime
from cds.engine.library import MAX_FACT_PATHS, RuleLibrary
from cds.engine.runtime import RuleEngine, fire_in_python
from cds.facts.model import PatientFacts

ROOT = Path(__file__).resolve().parents[2]
AS_OF = parse_as_of("2026-11-01")


@pytest.fixture(scope="module")
def library() -> RuleLibrary:
    return load_library(ROOT / "rules")


@pytest.fixture(scope="module")
def all_facts(library: RuleLibrary) -> list[tuple[str, PatientFacts]]:
    evaluator = Evaluator(library)
    out: list[tuple[str, PatientFacts]] = []
    for path in sorted((ROOT / "fhir_samples").glob("*.json")):
        result = evaluator.evaluate(raw_patient_from_bytes(path.read_bytes(), path.name), as_of=AS_OF)
        out.append((path.name, result.facts))
    for index in range(300):
        _scenario, resources = make_patient(7, index, date(2026, 11, 1), library.catalogue)
        raw = raw_patient_from_resources(resources, f"synthetic {index}")
        out.append((f"synthetic {index}", evaluator.evaluate(raw, as_of=AS_OF).facts))
    return out


def fired_ids(engine: RuleEngine, facts: PatientFacts) -> list[tuple[str, str]]:
    return [(f.ruleset.name, f.rule_id) for f in engine.fire(facts)]


def test_shipped_rulesets_share_one_assert_and_fire_as_the_python_reference(
    library: RuleLibrary, all_facts: list[tuple[str, PatientFacts]]
) -> None:
    engine = RuleEngine(library)
    assert len(engine._groups) == 1
    assert sum(len(g.actions) for g in engine._groups) == sum(len(rs.rules) for rs in library.rulesets)
    differ = [name for name, facts in all_facts if fired_ids(engine, facts) != fire_in_python(library, facts)]
    assert differ == []
    assert sum(len(fired_ids(engine, f)) for _n, f in all_facts) > 300  # rules really fired


def test_rulesets_over_the_fact_path_limit_are_split_and_still_fire_as_the_python_reference(
    library: RuleLibrary, all_facts: list[tuple[str, PatientFacts]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "MAX_FACT_PATHS", 30)
    engine = RuleEngine(library)
    assert len(engine._groups) >= 4
    assert all(len(g.paths) <= 30 for g in engine._groups)
    differ = [name for name, facts in all_facts if fired_ids(engine, facts) != fire_in_python(library, facts)]
    assert differ == []


def test_rule_count_limit_splits_groups(library: RuleLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "MAX_GROUP_RULES", 30)
    engine = RuleEngine(library)
    sizes = [len(g.actions) for g in engine._groups]
    assert all(size <= 30 for size in sizes)
    assert sum(sizes) == sum(len(rs.rules) for rs in library.rulesets)
    assert max(len(g.paths) for g in engine._groups) <= MAX_FACT_PATHS

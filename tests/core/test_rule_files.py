"""The test cases embedded in rules/*.yaml pass, through durable_rules and the reference evaluator."""

from __future__ import annotations

import pytest

from cds import Evaluator, RuleLibrary, load_library
from cds.authoring.testing import CaseOutcome, run_embedded_tests
from tests.conftest import RULES

_LIBRARY = load_library(RULES)
OUTCOMES = run_embedded_tests(_LIBRARY, Evaluator(_LIBRARY))


def test_every_ruleset_with_rules_has_embedded_tests(library: RuleLibrary) -> None:
    for ruleset in library.rulesets:
        if ruleset.rules:
            assert len(ruleset.spec.tests) >= 3, ruleset.name


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: f"{o.ruleset}::{o.name}")
def test_embedded_case(outcome: CaseOutcome) -> None:
    assert outcome.passed, outcome.diff()

"""Shared fixtures: the bundled rule library and one Evaluator per test session (real engine)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from cds import Evaluator, RuleLibrary, load_library, parse_as_of

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
SAMPLES = ROOT / "fhir_samples"
AS_OF = "2026-11-01"


@pytest.fixture(scope="session")
def library() -> RuleLibrary:
    return load_library(RULES)


@pytest.fixture(scope="session")
def evaluator(library: RuleLibrary) -> Evaluator:
    return Evaluator(library)


@pytest.fixture(scope="session")
def as_of() -> datetime:
    return parse_as_of(AS_OF)

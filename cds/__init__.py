"""HER2 clinical decision support: FHIR R4 in, explained findings out.

    from cds import Evaluator, load_library, default_rules_dir, raw_patient_from_path, parse_as_of
    evaluator = Evaluator(load_library(default_rules_dir()))
    result = evaluator.evaluate(raw_patient_from_path(path), as_of=parse_as_of("2026-11-01"))
    result.evaluation.findings   # sorted Finding models

The flow runs one way: ``cds.fhir`` (input, validation, records) -> ``cds.facts`` (PatientFacts)
-> ``cds.engine`` (rule files, durable_rules) -> ``cds.findings`` (findings) -> surfaces.

The names below are imported on first use (PEP 562), so ``import cds.cli`` for ``cds --help``
does not load the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds.engine.library import RuleLibrary, load_library
    from cds.errors import (
        CdsError,
        ConfigurationError,
        Diagnostic,
        EvaluationError,
        InputRejected,
        RuleDefinitionError,
    )
    from cds.evaluate import Evaluator, Result, default_rules_dir, parse_as_of
    from cds.facts.model import PatientFacts
    from cds.fhir.source import (
        RawPatient,
        raw_patient_from_bytes,
        raw_patient_from_path,
        raw_patient_from_resources,
        read_order,
    )
    from cds.findings.model import Evaluation, Finding

_HOME = {
    "RuleLibrary": "cds.engine.library",
    "load_library": "cds.engine.library",
    "CdsError": "cds.errors",
    "ConfigurationError": "cds.errors",
    "Diagnostic": "cds.errors",
    "EvaluationError": "cds.errors",
    "InputRejected": "cds.errors",
    "RuleDefinitionError": "cds.errors",
    "Evaluator": "cds.evaluate",
    "Result": "cds.evaluate",
    "default_rules_dir": "cds.evaluate",
    "parse_as_of": "cds.evaluate",
    "PatientFacts": "cds.facts.model",
    "RawPatient": "cds.fhir.source",
    "raw_patient_from_bytes": "cds.fhir.source",
    "raw_patient_from_path": "cds.fhir.source",
    "raw_patient_from_resources": "cds.fhir.source",
    "read_order": "cds.fhir.source",
    "Evaluation": "cds.findings.model",
    "Finding": "cds.findings.model",
}

__all__ = [
    "CdsError",
    "ConfigurationError",
    "Diagnostic",
    "Evaluation",
    "EvaluationError",
    "Evaluator",
    "Finding",
    "InputRejected",
    "PatientFacts",
    "RawPatient",
    "Result",
    "RuleDefinitionError",
    "RuleLibrary",
    "default_rules_dir",
    "load_library",
    "parse_as_of",
    "raw_patient_from_bytes",
    "raw_patient_from_path",
    "raw_patient_from_resources",
    "read_order",
]


def __getattr__(name: str) -> Any:
    """Import a public name from the module that defines it, on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'cds' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""HER2 clinical decision support: FHIR R4 in, explained findings out.

    from cds import load_library, Evaluator, raw_patient_from_path, parse_as_of
    evaluator = Evaluator(load_library(default_rules_dir()))
    result = evaluator.evaluate(raw_patient_from_path(path), as_of=parse_as_of("2026-11-01"))
    result.evaluation.findings   # sorted Finding models (clinical-spec §3)

The flow runs one way: ``cds.fhir`` (input, validation, records) -> ``cds.facts`` (PatientFacts)
-> ``cds.engine`` (rule files, durable_rules) -> ``cds.findings`` (findings) -> surfaces.
"""

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

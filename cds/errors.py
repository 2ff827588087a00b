"""Error types of the engine, split by who must act on them.

    CdsError                      root; every error carries a stable ``code``
    ├── InputRejected             the patient input cannot be evaluated (CLI exit 2, HTTP 400)
    ├── RuleDefinitionError       a rule file is invalid; carries Diagnostics (file, rule, field)
    ├── EvaluationError           the engine failed on a valid input (a bug, never "no findings")
    └── ConfigurationError        the deployment is mis-configured (missing rules dir, bad parameter)

Data problems inside an otherwise usable input (one invalid Observation, an unknown unit) are
*not* errors: they travel as ``skipped`` entries and data-gap findings, so one bad resource never
sinks the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class CdsError(Exception):
    """Root of all engine errors."""

    code: ClassVar[str] = "cds-error"


class InputRejected(CdsError):
    """The input is not one evaluable FHIR R4 patient (clinical-spec §1)."""

    code: ClassVar[str] = "input-rejected"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a rule file, located precisely enough for a pharmacist to fix it."""

    file: str
    message: str
    rule: str | None = None
    field: str | None = None
    line: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.rule:
            parts.append(f"rule {self.rule}")
        if self.field:
            parts.append(f"field {self.field}")
        return f"{' '.join(parts)}: {self.message}"


class RuleDefinitionError(CdsError):
    """One or more rule files are invalid; ``diagnostics`` says where and why."""

    code: ClassVar[str] = "rule-definition"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("; ".join(str(d) for d in diagnostics))


class EvaluationError(CdsError):
    """The rule engine failed while evaluating a valid input."""

    code: ClassVar[str] = "evaluation-failed"


class ConfigurationError(CdsError):
    """The deployment is mis-configured (rules directory, parameters, value sets)."""

    code: ClassVar[str] = "configuration"

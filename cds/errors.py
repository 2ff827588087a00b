"""Error types of the engine and its surfaces, split by who must act on them.

    CdsError                        root; every error carries a stable ``code`` and a ``reason``
    ├── InputRejected               the input cannot be evaluated (not FHIR, several patients, DSTU2)
    │   └── RequestRejected         a CDS Hooks call is malformed (bad-request)
    │       ├── NotJson             the body is not JSON (bad-json)
    │       ├── BadContext          the hook's context is invalid (bad-context)
    │       ├── WrongHook           the service does not answer this hook (wrong-hook)
    │       ├── BadPrefetch         a prefetch value is not FHIR or is another patient's (bad-prefetch)
    │       └── UnknownCard         feedback names a card this service never issued (unknown-card)
    ├── Unauthorized                the caller's JWT failed a check (the reason is never sent)
    ├── UnknownService              no service with that id
    ├── PayloadTooLarge             the body is above the configured limit
    ├── DataUnavailable             data the evaluation needs can be neither prefetched nor fetched
    ├── RuleDefinitionError         a rule file is invalid; carries Diagnostics (file, rule, field)
    ├── ConditionError              one rule condition is malformed; ``field`` names where
    ├── AnalysisTooComplex          a rule analysis would enumerate too many combinations
    ├── UnitUnrecognized            a value's unit is missing or unknown (becomes a data gap)
    ├── EvaluationError             the engine failed on a valid input (a bug, never "no findings")
    ├── ConfigurationError          the deployment is mis-configured (missing rules dir, bad parameter)
    ├── CohortError                 a cohort cannot run as asked (bad path, resume mismatch, scheduler)
    ├── InputFileError              part of a cohort input cannot be read; the rest is evaluated
    │   ├── DamagedFile             a file breaks off (truncated gzip, not gzip, corrupt data, I/O)
    │   ├── BadManifest             a Bulk manifest.json, or one of its entries, cannot be used
    │   └── ExportReported          the export's own error file (manifest error[]) reports a problem
    ├── FhirOutputInvalid           a FHIR resource built from findings does not validate (a bug)
    ├── EditRejected                a workbench edit is invalid (bad value, YAML, entry); nothing written
    ├── EditConflict                a workbench save was made from an older version of the file
    ├── Forbidden                   a workbench request failed a CSRF, Host or Origin check
    └── Interrupted                 Ctrl-C stopped a cohort; finished partitions are kept

``OUTCOMES`` maps every code to its HTTP status, CLI exit code and cohort error kind: the one
place the surfaces look them up (a test pins it and checks that every class is in it).
``reason`` is the message without the input's origin, safe to send back to a caller; surfaces
use it and never parse ``str(exc)``.

Data problems inside an otherwise usable input (one invalid Observation, an unknown unit) are
*not* errors for the caller: they travel as ``skipped`` entries and data-gap findings, so one bad
resource never sinks the patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar


class CdsError(Exception):
    """Root of all engine errors: ``code`` is stable, ``reason`` is the message without its origin."""

    code: ClassVar[str] = "cds-error"

    def __init__(self, reason: str = "", *, origin: str | None = None) -> None:
        self.reason = reason or self.code
        self.origin = origin
        super().__init__(f"{origin}: {self.reason}" if origin else self.reason)


class InputRejected(CdsError):
    """The input is not one evaluable FHIR R4 patient (clinical-spec §1)."""

    code: ClassVar[str] = "input-rejected"


class RequestRejected(InputRejected):
    """A CDS Hooks request (or feedback) is malformed; the reason names fields, never values."""

    code: ClassVar[str] = "bad-request"


class NotJson(RequestRejected):
    """The request body is not JSON."""

    code: ClassVar[str] = "bad-json"


class BadContext(RequestRejected):
    """The hook context is missing a field or holds an invalid one."""

    code: ClassVar[str] = "bad-context"


class WrongHook(RequestRejected):
    """The service is called with a hook it does not answer."""

    code: ClassVar[str] = "wrong-hook"


class BadPrefetch(RequestRejected):
    """A prefetch value is not FHIR JSON, or is another patient's."""

    code: ClassVar[str] = "bad-prefetch"


class UnknownCard(RequestRejected):
    """Feedback names a card uuid this service did not issue."""

    code: ClassVar[str] = "unknown-card"


class Unauthorized(CdsError):
    """Authentication failed; the HTTP answer is a bare 401 whatever the reason."""

    code: ClassVar[str] = "unauthorized"


class UnknownService(CdsError):
    """No CDS service has this id."""

    code: ClassVar[str] = "unknown-service"


class PayloadTooLarge(CdsError):
    """The request body is above the configured limit."""

    code: ClassVar[str] = "payload-too-large"


class DataUnavailable(CdsError):
    """Required data is neither prefetched nor retrievable (CDS Hooks: 412).

    ``reason`` is always the generic message the client sees (it must not reveal which hosts or
    ports are reachable); ``detail`` says why, for the debug log; ``origin`` names the prefetch key.
    """

    code: ClassVar[str] = "data-unavailable"
    GENERIC: ClassVar[str] = "required patient data was not prefetched and could not be fetched"

    def __init__(self, detail: str = "", *, origin: str | None = None) -> None:
        super().__init__(self.GENERIC)
        self.origin = origin
        self.detail = detail


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


class ConditionError(CdsError, ValueError):
    """A rule condition is malformed; ``field`` names where (the loader turns it into a Diagnostic)."""

    code: ClassVar[str] = "rule-condition"

    def __init__(self, message: str, field: str) -> None:
        self.field = field
        super().__init__(message)


class AnalysisTooComplex(CdsError, ValueError):
    """A condition expands to more conjunctions than the rule analysis will enumerate."""

    code: ClassVar[str] = "analysis-too-complex"


class UnitUnrecognized(CdsError, ValueError):
    """The unit of a value is missing or not one of the analyte's accepted spellings."""

    code: ClassVar[str] = "unit-unrecognized"

    def __init__(self, analyte: str, unit: str | None) -> None:
        self.analyte = analyte
        self.unit = unit
        super().__init__(f"{analyte}: unit {unit!r} is not recognised")


class EvaluationError(CdsError):
    """The rule engine failed while evaluating a valid input."""

    code: ClassVar[str] = "evaluation-failed"


class ConfigurationError(CdsError):
    """The deployment is mis-configured (rules directory, parameters, value sets)."""

    code: ClassVar[str] = "configuration"


class CohortError(CdsError):
    """The cohort cannot run as asked (bad input path, resume mismatch, scheduler unreachable)."""

    code: ClassVar[str] = "cohort"


class InputFileError(CdsError):
    """Part of a cohort input cannot be read. Never fatal for the run: the rest of the input is
    evaluated, and the problem becomes an ``errors.jsonl`` record naming the file and where."""

    code: ClassVar[str] = "input-file"

    def __init__(self, reason: str = "", *, origin: str | None = None, line: int | None = None) -> None:
        super().__init__(reason, origin=origin)
        self.line = line


class DamagedFile(InputFileError):
    """A file breaks off: a truncated ``.gz``, a ``.gz`` that is not gzip, corrupt compressed data
    or a read error. The lines before the break are used; ``line`` is the first line not read."""

    code: ClassVar[str] = "damaged-file"


class BadManifest(InputFileError):
    """A Bulk ``manifest.json`` is not readable, or an entry names no usable file in the folder."""

    code: ClassVar[str] = "bad-manifest"


class ExportReported(InputFileError):
    """A line of the export's own error file (``error[]`` of the manifest: OperationOutcome)."""

    code: ClassVar[str] = "export-error"


class FhirOutputInvalid(CdsError):
    """A FHIR resource rendered from findings fails validation: a bug in the renderer, never the
    patient's data (the evaluation itself stands)."""

    code: ClassVar[str] = "fhir-output-invalid"


class EditRejected(CdsError):
    """An authoring edit is invalid (a bad value, invalid YAML, an entry the loaders refuse)."""

    code: ClassVar[str] = "edit-rejected"


class EditConflict(CdsError):
    """An edit was made from a version of the file that has changed since (a lost update)."""

    code: ClassVar[str] = "edit-conflict"


class Forbidden(CdsError):
    """A workbench request failed a CSRF token, Host or Origin check; nothing was done."""

    code: ClassVar[str] = "forbidden"


class Interrupted(CdsError):
    """Ctrl-C: the run stopped; finished partitions are kept for --resume."""

    code: ClassVar[str] = "interrupted"

    def __init__(self, done: int, total: int) -> None:
        self.done = done
        self.total = total
        super().__init__(f"interrupted: {done} of {total} partitions finished; rerun with --resume")


@dataclass(frozen=True)
class Outcome:
    """What each surface makes of an error: HTTP status, CLI exit code, cohort ``errors.jsonl`` kind."""

    http_status: int
    exit_code: int
    cohort_kind: str


_REJECTED = Outcome(400, 2, "rejected-patient")
_FAILED = Outcome(500, 1, "evaluation-failed")

OUTCOMES: Mapping[str, Outcome] = {
    "cds-error": _FAILED,
    "input-rejected": _REJECTED,
    "bad-request": _REJECTED,
    "bad-json": _REJECTED,
    "bad-context": _REJECTED,
    "wrong-hook": _REJECTED,
    "bad-prefetch": _REJECTED,
    "unknown-card": _REJECTED,
    "unauthorized": Outcome(401, 2, "rejected-patient"),
    "unknown-service": Outcome(404, 2, "rejected-patient"),
    "payload-too-large": Outcome(413, 2, "rejected-patient"),
    "data-unavailable": Outcome(412, 2, "rejected-patient"),
    "rule-definition": Outcome(500, 2, "evaluation-failed"),
    "rule-condition": Outcome(500, 2, "evaluation-failed"),
    "analysis-too-complex": Outcome(500, 2, "evaluation-failed"),
    "unit-unrecognized": _REJECTED,
    "evaluation-failed": _FAILED,
    "configuration": Outcome(500, 2, "evaluation-failed"),
    "cohort": Outcome(500, 2, "evaluation-failed"),
    # part of a cohort input was not read: outputs are written, then the run exits 1
    "input-file": Outcome(400, 1, "input-file"),
    "damaged-file": Outcome(400, 1, "damaged-file"),
    "bad-manifest": Outcome(400, 1, "bad-manifest"),
    "export-error": Outcome(400, 1, "export-error"),
    "fhir-output-invalid": _FAILED,
    "edit-rejected": Outcome(400, 2, "rejected-patient"),
    "edit-conflict": Outcome(409, 2, "rejected-patient"),
    "forbidden": Outcome(403, 2, "rejected-patient"),
    "interrupted": Outcome(503, 130, "evaluation-failed"),
}


def outcome_of(error: CdsError) -> Outcome:
    """The table entry of ``error``'s code (the root's entry for a code missing from the table)."""
    return OUTCOMES.get(error.code, OUTCOMES[CdsError.code])

"""The Executor: patient source -> records -> facts -> rules -> findings, one patient at a time.

Composition follows cql-execution's ``Executor(library, codeService, parameters).exec(source)``:
the rule library (rules, parameters, evidence, value sets) is built once and reused; the patient,
the as-of instant and the optional draft order are per call. The same Evaluator serves the CLI,
CDS Hooks and cohorts.

    library = load_library(Path("rules"))
    evaluator = Evaluator(library)
    result = evaluator.evaluate(raw_patient_from_path(Path("fhir_samples/mbc-second-line.json")),
                                as_of=datetime(2026, 11, 1, tzinfo=UTC))
    print(result.evaluation.to_json().decode())
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from cds.engine.library import RuleLibrary
from cds.engine.runtime import RuleEngine, TraceEntry
from cds.facts.build import build_facts
from cds.facts.model import PatientFacts
from cds.fhir.parse import parse_patient
from cds.fhir.records import PatientRecord
from cds.fhir.source import JSON, RawPatient
from cds.findings.build import build_findings
from cds.findings.model import Evaluation, RulesetRef, SkippedResource, Suppressed


@dataclass(frozen=True)
class Result:
    """An evaluation plus what explains it: the facts, the rule trace and suppressed findings."""

    evaluation: Evaluation
    facts: PatientFacts
    trace: list[TraceEntry] | None
    suppressed: list[Suppressed]


def parse_as_of(text: str | None) -> datetime:
    """An as-of instant from a date or an ISO instant; a date means the end of that day (UTC)."""
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"as-of {text!r} is not a date (YYYY-MM-DD) or an ISO instant") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Evaluator:
    """Evaluates patients against one loaded rule library (not thread-safe to build; safe to call)."""

    def __init__(self, library: RuleLibrary) -> None:
        self.library = library
        self.engine = RuleEngine(library)
        self._rulesets = [RulesetRef(name=r.name, version=r.version) for r in library.rulesets]

    def parse(self, raw: RawPatient, order: JSON | None = None) -> PatientRecord:
        """Validate and extract records (reusable across as-of instants)."""
        return parse_patient(raw, self.library.valuesets, order)

    def evaluate_record(self, record: PatientRecord, *, as_of: datetime, trace: bool = False) -> Result:
        """Facts, rules and findings for an already parsed patient."""
        facts = build_facts(record, self.library.valuesets, self.library.params, as_of)
        fired = self.engine.fire(facts)
        findings, suppressed = build_findings(self.library, facts, fired)
        evaluation = Evaluation(
            patient=record.patient.ref,
            as_of=as_of.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            rulesets=self._rulesets,
            findings=findings,
            skipped=[
                SkippedResource(resource=s.resource, reason=s.reason)
                for s in sorted(record.skipped, key=lambda s: (s.resource, s.reason))
            ],
        )
        return Result(evaluation, facts, self.engine.trace(facts, fired) if trace else None, suppressed)

    def evaluate(
        self, raw: RawPatient, *, as_of: datetime, order: JSON | None = None, trace: bool = False
    ) -> Result:
        """Evaluate one patient as of an instant, optionally with a draft order under review."""
        return self.evaluate_record(self.parse(raw, order), as_of=as_of, trace=trace)


def default_rules_dir() -> Path:
    """The bundled ``rules/`` directory next to the package (the repository layout)."""
    return Path(__file__).resolve().parent.parent / "rules"

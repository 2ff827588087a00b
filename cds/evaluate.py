"""The Executor: patient source -> records -> facts -> rules -> findings, one patient at a time.

Composition follows cql-execution's ``Executor(library, codeService, parameters).exec(source)``:
the rule library (rules, parameters, evidence, value sets) is built once and reused; the patient,
the as-of instant and the optional draft order are per call. The same Evaluator serves the CLI,
CDS Hooks and cohorts.

    library = load_library(default_rules_dir())
    evaluator = Evaluator(library)
    result = evaluator.evaluate(raw_patient_from_path(Path("fhir_samples/mbc-second-line.json")),
                                as_of=parse_as_of("2026-11-01"))
    print(result.evaluation.to_json().decode())

The core never reads the clock: the caller (a surface, via ``cds.config.as_of``) decides "now".

``validate`` chooses which resources fhir.resources validates: ``"selected"`` (default) the ones
the facts read, every other one passing a cheap screen or validated too; ``"all"`` every resource
of interest, before reading it. Findings, gaps and ``skipped`` are the same (cds/fhir/settle.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cds.config import parse_as_of, rules_dir
from cds.engine.library import RuleLibrary
from cds.engine.runtime import RuleEngine, TraceEntry
from cds.errors import ConfigurationError
from cds.facts.build import build_facts
from cds.facts.model import PatientFacts
from cds.facts.select import PLATELETS_SINCE_DOSE, Reads
from cds.fhir.parse import VALIDATE_MODES, ValidateMode, parse_patient
from cds.fhir.records import PatientRecord
from cds.fhir.source import JSON, RawPatient
from cds.findings.build import build_findings
from cds.findings.model import Evaluation, RulesetRef, SkippedResource, Suppressed
from cds.record_memo import RecordMemo

__all__ = ["VALIDATE_MODES", "Evaluator", "Result", "ValidateMode", "default_rules_dir", "parse_as_of"]


@dataclass(frozen=True)
class Result:
    """An evaluation plus what explains it: the facts, the rule trace and suppressed findings."""

    evaluation: Evaluation
    facts: PatientFacts
    trace: list[TraceEntry] | None
    suppressed: list[Suppressed]


class Evaluator:
    """Evaluates patients against one loaded rule library (not thread-safe to build; safe to call)."""

    def __init__(
        self, library: RuleLibrary, *, validate: ValidateMode = "selected", remember_verdicts: bool = False
    ) -> None:
        if validate not in VALIDATE_MODES:
            raise ConfigurationError(f"validate must be one of {', '.join(VALIDATE_MODES)}, not {validate!r}")
        self.library = library
        self.validate: ValidateMode = validate
        # a service that sees the same resources again (CDS Hooks) keeps validation verdicts by
        # content hash; a cohort, where every resource is new, would only pay for the hashing
        self.remember_verdicts = remember_verdicts
        # ... and keeps whole parsed records by content (cds/record_memo.py)
        self.records = RecordMemo() if remember_verdicts else None
        self.engine = RuleEngine(library)
        self._rulesets = [RulesetRef(name=r.name, version=r.version) for r in library.rulesets]
        self._reads = Reads(platelets_since_dose=agents_read(library, PLATELETS_SINCE_DOSE))

    def parse(self, raw: RawPatient, order: JSON | None = None) -> PatientRecord:
        """Extract records, validated now or when an evaluation selects them (reusable across
        as-of instants)."""
        return parse_patient(raw, self.library.valuesets, order, self.validate, self.remember_verdicts)

    def evaluate_record(self, record: PatientRecord, *, as_of: datetime, trace: bool = False) -> Result:
        """Facts, rules and findings for an already parsed patient."""
        facts = build_facts(record, self.library.valuesets, self.library.params, as_of, self._reads)
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
        self,
        raw: RawPatient,
        *,
        as_of: datetime,
        order: JSON | None = None,
        trace: bool = False,
        content: bytes | None = None,
    ) -> Result:
        """Evaluate one patient as of an instant, optionally with a draft order under review.

        ``content``: ``cds.record_memo.content_key(raw, order)`` if the caller has it already (it
        must be exactly that text: it finds the kept record); None: computed when needed."""
        if self.records is None:
            return self.evaluate_record(self.parse(raw, order), as_of=as_of, trace=trace)
        record, lock = self.records.record(raw, order, lambda: self.parse(raw, order), content)
        with lock:
            return self.evaluate_record(record, as_of=as_of, trace=trace)


def agents_read(library: RuleLibrary, fact: str) -> frozenset[str]:
    """The agents whose ``<fact>.<agent>`` any rule or policy reads (condition, wording, basis)."""
    pattern = re.compile(re.escape(fact) + r"\.([A-Za-z0-9_\-]+)")
    texts = [
        text
        for ruleset in library.rulesets
        for compiled in ruleset.rules.values()
        for text in (compiled.rule.model_dump_json(), " ".join(compiled.paths))
    ]
    texts.extend(policy.model_dump_json() for policy in library.policies)
    return frozenset(m.group(1) for text in texts for m in pattern.finditer(text))


def default_rules_dir() -> Path:
    """The rules directory used when none is given: ``$CDS_RULES_DIR``, else the bundled rules."""
    return rules_dir(None)

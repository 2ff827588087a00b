"""The per-partition function: the same code on a local process pool and on Dask workers.

A partition is evaluated one patient at a time in the calling process (durable_rules is one
evaluation at a time per process). The rule library is built once per process and cached by the
digest of the rule files, so a worker that receives many partitions pays for it once. On a Dask
cluster the rule files travel with the task (``RulesSpec.files``), so workers only need the
``her2-cds`` package installed, not a copy of the rules directory.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]

from cds.cohort.outputs import FINDINGS_SCHEMA, PATIENTS_SCHEMA, error_record
from cds.cohort.sources import READ_ERRORS, damaged, open_binary
from cds.cohort.spill import Partition, read_partition
from cds.config import tune_gc
from cds.engine.library import load_library
from cds.engine.runtime import getter
from cds.errors import OUTCOMES, DamagedFile, EvaluationError, InputRejected, outcome_of
from cds.evaluate import Evaluator, Result
from cds.fhir.records import PatientRecord
from cds.fhir.source import RawPatient, raw_patient_from_bytes, raw_patient_from_resources
from cds.findings.fhir_out import to_resources
from cds.findings.wording import Wording, drug_names_of, load_wording
from cds.knowledge.catalogue import Catalogue

# The observation kind of LVEF results (the analyte key of the value sets, as facts.lvef reads it)
LVEF_KIND = "lvef"


@dataclass(frozen=True)
class Unreadable:
    """A bundle file that could not be read (damaged gzip, I/O error): its patient is rejected."""

    reason: str
    line: int


# One patient's input: (key, origin, data). ``data`` is a whole document (a Bundle: bytes), the
# raw NDJSON lines of one patient (list of bytes), or why its file could not be read.
Unit = tuple[str, str, bytes | list[bytes] | Unreadable]


@dataclass(frozen=True)
class RulesSpec:
    """Which rules to evaluate with: a local directory, or the files themselves (for remote workers)."""

    digest: str
    statuses: tuple[str, ...]
    directory: str | None = None
    files: dict[str, bytes] | None = None

    @classmethod
    def from_dir(cls, directory: Path, statuses: Iterable[str], ship: bool) -> RulesSpec:
        """Digest every rule file; with ``ship`` carry their bytes so any machine can rebuild them."""
        contents = {
            str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
        }
        digest = hashlib.sha256()
        for name, data in contents.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(
            digest=digest.hexdigest(),
            statuses=tuple(sorted(statuses)),
            directory=None if ship else str(directory),
            files=contents if ship else None,
        )


_EVALUATORS: dict[tuple[str, tuple[str, ...]], Evaluator] = {}
_CONTEXTS: dict[tuple[str, tuple[str, ...]], RowContext] = {}


@dataclass(frozen=True)
class RowContext:
    """What turns an evaluation into rows besides the result: the wording of the rules directory
    and each rule's title and target drug (built once per process and rules digest)."""

    wording: Wording
    rules: dict[str, tuple[str, str | None]]  # rule id -> (title, applies_to)


def context_for(spec: RulesSpec) -> RowContext:
    """The process-wide RowContext for these rules."""
    key = (spec.digest, spec.statuses)
    if key not in _CONTEXTS:
        library = evaluator_for(spec).library
        _CONTEXTS[key] = RowContext(
            load_wording(library.directory, drug_names_of(library.catalogue)),
            {
                rule_id: (compiled.rule.title, compiled.rule.then.applies_to)
                for ruleset in library.rulesets
                for rule_id, compiled in ruleset.rules.items()
            },
        )
    return _CONTEXTS[key]


# Patients evaluated so far by this process, for a progress display that moves per patient: a
# shared counter on the local pool (set by the pool initializer), a callback in-process.
_PROGRESS: list[Callable[[int], None]] = []


def report_progress(sink: Callable[[int], None] | None) -> None:
    """Call ``sink(1)`` after every patient this process evaluates (None: stop reporting)."""
    _PROGRESS[:] = [sink] if sink is not None else []


def evaluator_for(spec: RulesSpec) -> Evaluator:
    """The process-wide Evaluator for these rules (built on first use, then reused)."""
    key = (spec.digest, spec.statuses)
    if key not in _EVALUATORS:
        if spec.directory is not None:
            directory = Path(spec.directory)
        else:
            assert spec.files is not None
            directory = Path(tempfile.mkdtemp(prefix="cds-rules-"))
            for name, data in spec.files.items():
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        _EVALUATORS[key] = Evaluator(load_library(directory, statuses=set(spec.statuses)))
        tune_gc()  # a worker lives for many partitions
    return _EVALUATORS[key]


@dataclass(frozen=True)
class SpillSource:
    """A partition read from the local SQLite spill (process pool on the same machine)."""

    db: str
    part: Partition
    origin_root: str

    def units(self) -> Iterator[Unit]:
        for pid, lines in read_partition(Path(self.db), self.part):
            yield pid, f"{self.origin_root}#Patient/{pid}", lines


@dataclass(frozen=True)
class FileSource:
    """A partition of bundle documents: whole files, or byte ranges of a .jsonl file."""

    # (path, offset, length, line); length -1 = the whole file, line = 1-based line of a .jsonl
    items: tuple[tuple[str, int, int, int], ...]

    def units(self) -> Iterator[Unit]:
        for path, offset, length, line in self.items:
            data: bytes | Unreadable
            if length < 0:
                try:
                    with open_binary(Path(path)) as handle:
                        data = handle.read()
                except READ_ERRORS as exc:
                    # A damaged file is still one patient in: rejected, with where it broke off.
                    problem = damaged(path, 1, 0, exc)
                    data = Unreadable(problem.reason, 1)
                yield Path(path).name, path, data
            else:
                try:
                    with open_binary(Path(path)) as handle:
                        handle.seek(offset)
                        data = handle.read(length)
                except READ_ERRORS as exc:
                    problem = damaged(path, line, offset, exc)
                    data = Unreadable(problem.reason, line)
                yield f"{Path(path).name}:{line}", f"{path}:line {line}", data


@dataclass(frozen=True)
class InlineSource:
    """A partition already materialised into bytes: what is shipped to a remote Dask worker."""

    items: tuple[Unit, ...]

    def units(self) -> Iterator[Unit]:
        yield from self.items


Source = SpillSource | FileSource | InlineSource


@dataclass(frozen=True)
class Task:
    """One partition to evaluate."""

    index: int
    source: Source
    rules: RulesSpec
    as_of: datetime
    fhir: bool = False  # also render each evaluation as FHIR resources (``--format fhir``)


@dataclass
class PartResult:
    """What one partition produced: tables, error records, counts and wall time."""

    index: int
    findings: pa.Table
    patients: pa.Table
    errors: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)
    fhir: dict[str, list[bytes]] = field(default_factory=dict)  # resource type -> NDJSON lines


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def finding_rows(patient: str, result: Result, context: RowContext | None = None) -> list[dict[str, Any]]:
    """One row per finding, with the basis facts, the resources behind them and the worklist line."""
    rows = []
    wording = context.wording if context is not None else Wording()
    rules = context.rules if context is not None else {}
    get = getter(result.facts)
    for f in result.evaluation.findings:
        resources: list[str] = []
        for b in f.basis:
            resources.extend(r for r in b.resources if r not in resources)
        title, applies_to = rules.get(f.rule.id, ("", None))
        rows.append(
            {
                "patient": patient,
                "code": f.code,
                "kind": f.kind,
                "severity": f.severity,
                "strength": f.strength,
                "regimen": f.regimen,
                "action": f.action,
                "review_required": f.review_required,
                "rule_id": f.rule.id,
                "rule_version": f.rule.version,
                "ruleset": f.rule.ruleset,
                "evidence_status": f.rule.evidence_status,
                "summary": f.summary,
                "title": title or None,
                "drug": wording.drug_or_class(applies_to) if applies_to and f.kind == "alert" else None,
                "action_text": wording.action_line(f, get),
                "value_date": wording.shown_date(f, get),
                "key_facts": "; ".join(f"{b.fact}={_text(b.value)}" for b in f.basis) or None,
                "resources": " ".join(resources) or None,
            }
        )
    return rows


# What a quality team must act on: critical or warning alerts and open data gaps. Recommendations
# are a treatment choice for the next visit, listed on their own (recommendation_codes).
ACTION_KINDS = {"alert", "data-gap"}
ACTION_SEVERITIES = {"critical", "warning"}


def patient_identifier(patient: dict[str, Any], preferred: tuple[tuple[str, str], ...]) -> str | None:
    """The identifier a clinic knows the patient by: the first ``Patient.identifier`` whose type
    has a preferred coding (the MRN, in the wording data), else the first with a value."""
    listed = patient.get("identifier")
    ids = [
        i
        for i in (listed if isinstance(listed, list) else [])
        if isinstance(i, dict) and isinstance(i.get("value"), str) and i["value"].strip()
    ]

    def codings(ident: dict[str, Any]) -> set[tuple[Any, Any]]:
        kind = ident.get("type")
        found = kind.get("coding") if isinstance(kind, dict) else None
        items = found if isinstance(found, list) else []
        return {(c.get("system"), c.get("code")) for c in items if isinstance(c, dict)}

    for wanted in preferred:
        for ident in ids:
            if wanted in codings(ident):
                return str(ident["value"]).strip()
    return str(ids[0]["value"]).strip() if ids else None


def lvef_series(record: PatientRecord, as_of: datetime) -> str | None:
    """Every usable LVEF reading up to as-of, oldest first, as JSON ``[["YYYY-MM-DD", %], ...]``."""
    readings = sorted(
        {
            (o.when.day.isoformat(), o.value)
            for o in record.observations
            if o.kind == LVEF_KIND and o.value is not None and o.when.not_after(as_of)
        }
    )
    return orjson.dumps([[d, v] for d, v in readings]).decode() if readings else None


def patient_row(
    patient: str,
    origin: str,
    result: Result,
    digest: str,
    catalogue: Catalogue,
    identifier: str | None = None,
    lvef_history: str | None = None,
) -> dict[str, Any]:
    """One row per evaluated patient: HER2, setting, line, on-drug, latest labs and the findings tally.

    Empty text is written as null, so the CSV and Parquet outputs read back identically."""
    facts = result.facts
    findings = result.evaluation.findings
    therapy = facts.therapy
    on = sorted(a for a, flag in therapy.on.items() if flag and a in catalogue.agents)
    levels = sorted((a, v) for a, v in therapy.dose_level.items() if v is not None)
    severities = [f.severity for f in findings]
    worst = next((s for s in ("critical", "warning", "info") if s in severities), None)
    action = [f.code for f in findings if f.kind in ACTION_KINDS and f.severity in ACTION_SEVERITIES]
    recommended = [f.code for f in findings if f.kind == "recommendation"]
    labs = facts.labs
    lab_dates = [
        d
        for d in (labs.platelets.date, labs.anc.date, labs.ast.date, labs.alt.date, labs.bilirubin.date)
        if d
    ]
    return {
        "patient": patient,
        "identifier": identifier,
        "origin": origin,
        "gender": facts.patient.gender,
        "age_years": facts.patient.age_years,
        "her2_category": facts.her2.category,
        "her2_ihc_score": facts.her2.ihc_score,
        "hr_status": facts.hr_status,
        "setting": facts.setting,
        "metastatic_since": facts.metastatic_since,
        "line": facts.lines.effective if facts.setting == "metastatic" else None,
        "progression": facts.progression,
        "current_regimen": facts.lines.current_regimen,
        "on_drug": ", ".join(catalogue.display(a) for a in on) or None,
        "on_agents": " ".join(on) or None,
        "dose_levels": " ".join(f"{a}={v}" for a, v in levels) or None,
        "on_her2_directed": therapy.on_her2_directed,
        "platelets": labs.platelets.value,
        "platelets_date": labs.platelets.date,
        "anc": labs.anc.value,
        "ast_x_uln": labs.ast.x_uln,
        "alt_x_uln": labs.alt.x_uln,
        "bilirubin_x_uln": labs.bilirubin.x_uln,
        "labs_date": max(lab_dates) if lab_dates else None,
        "lvef": facts.lvef.value,
        "lvef_date": facts.lvef.date,
        "lvef_baseline": facts.lvef.baseline,
        "lvef_drop": facts.lvef.drop,
        "lvef_series": lvef_history,
        "weight_kg": facts.weight.kg,
        "findings": len(findings),
        "critical": severities.count("critical"),
        "warning": severities.count("warning"),
        "worst_severity": worst,
        "needs_action": bool(action),
        "action_codes": " ".join(action) or None,
        "recommendation_codes": " ".join(recommended) or None,
        "codes": " ".join(f.code for f in findings) or None,
        "skipped_resources": len(result.evaluation.skipped),
        "evaluation_sha256": digest,
    }


def _raw(unit: Unit) -> RawPatient:
    _key, origin, data = unit
    if isinstance(data, Unreadable):
        raise DamagedFile(data.reason, origin=origin.split(":line ", 1)[0], line=data.line)
    if isinstance(data, bytes):
        return raw_patient_from_bytes(data, origin)
    return raw_patient_from_resources([orjson.loads(line) for line in data], origin)


def _error(
    kind: str, origin: str, patient: str | None, reason: str, resource: str | None = None
) -> dict[str, Any]:
    return {
        "stage": "evaluate",
        "kind": kind,
        "file": origin,
        "line": None,
        "patient": patient,
        "resource": resource,
        "reason": reason,
    }


def run_task(task: Task) -> PartResult:
    """Evaluate every patient of one partition; rejected patients and skipped resources become errors."""
    evaluator = evaluator_for(task.rules)
    context = context_for(task.rules)
    findings: list[dict[str, Any]] = []
    patients: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    counts = {"patients_in": 0, "evaluated": 0, "rejected": 0, "findings": 0, "skipped_resources": 0}
    fhir: dict[str, list[bytes]] = {}
    for unit in task.source.units():
        key, origin, _ = unit
        counts["patients_in"] += 1
        for sink in _PROGRESS:  # the progress display moves per patient (taken up)
            sink(1)
        try:
            raw = _raw(unit)
            record = evaluator.parse(raw)
            result = evaluator.evaluate_record(record, as_of=task.as_of)
        except DamagedFile as exc:
            counts["rejected"] += 1
            errors.append(error_record(exc, "evaluate", patient=key))
            continue
        except InputRejected as exc:
            counts["rejected"] += 1
            errors.append(_error(outcome_of(exc).cohort_kind, origin, key, str(exc)))
            continue
        except Exception as exc:
            # An engine failure must neither stop the cohort nor vanish: it is counted as a rejection
            # of kind evaluation-failed, and the run reports it (exit 1).
            counts["rejected"] += 1
            kind = OUTCOMES[EvaluationError.code].cohort_kind
            errors.append(_error(kind, origin, key, f"{type(exc).__name__}: {exc}"))
            continue
        ev = result.evaluation
        patient = ev.patient.removeprefix("Patient/")
        digest = hashlib.sha256(ev.to_json()).hexdigest()
        counts["evaluated"] += 1
        counts["findings"] += len(ev.findings)
        counts["skipped_resources"] += len(ev.skipped)
        findings.extend(finding_rows(patient, result, context))
        if task.fhir:
            resources = to_resources(ev, context.wording, getter(result.facts), evaluator.library.catalogue)
            for resource in resources:
                fhir.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
        identifier = patient_identifier(raw.patient, context.wording.worklist.identifier_types)
        history = lvef_series(record, task.as_of)
        patients.append(
            patient_row(patient, origin, result, digest, evaluator.library.catalogue, identifier, history)
        )
        for s in ev.skipped:
            errors.append(_error("skipped-resource", origin, ev.patient, s.reason, s.resource))
    return PartResult(
        index=task.index,
        findings=pa.Table.from_pylist(findings, schema=FINDINGS_SCHEMA),
        patients=pa.Table.from_pylist(patients, schema=PATIENTS_SCHEMA),
        errors=errors,
        counts=counts,
        fhir=fhir,
    )


def materialise(task: Task) -> Task:
    """The same task with its input read into bytes, for a worker that cannot see local files."""
    if isinstance(task.source, InlineSource):
        return task
    return Task(task.index, InlineSource(tuple(task.source.units())), task.rules, task.as_of, task.fhir)

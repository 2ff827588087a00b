"""A sample cohort for authoring checks: a folder of bundles (with sidecars) or Bulk NDJSON.

The authoring tools only need "each patient, as of when, with which draft order", so this is a
simple loop, not the batch engine. A bundle ``x.json`` may have a sidecar ``x.expected.yaml``
whose ``as_of`` and ``order`` (a path relative to the folder) pin the scenario, as in
``fhir_samples/``. NDJSON files (``*.ndjson``) are grouped into patients by the Patient id and
the ``subject``/``patient`` reference of every other resource.

Reading and validating FHIR is most of a cohort run, and lint runs the same cohort after every
workbench edit: ``cached_cohort`` and ``cohort_facts`` keep the patients and their facts for the
process, keyed by the cohort files' sizes and times and by everything the derivations read (value
sets, catalogue, derivation parameters), so an edit to a rule or a rule threshold reuses them and
an edit to a derivation input does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from cds import config
from cds.engine.library import RuleLibrary
from cds.errors import InputRejected
from cds.evaluate import Evaluator, Result
from cds.facts.build import build_facts
from cds.facts.model import PatientFacts
from cds.facts.params import DERIVATION_PARAMETERS, Params
from cds.fhir.parse import parse_patient
from cds.fhir.source import JSON, RawPatient, raw_patient_from_path, raw_patient_from_resources, read_order


@dataclass(frozen=True)
class CohortPatient:
    """One patient of the cohort: a display name, the raw resources and the scenario."""

    name: str
    raw: RawPatient
    as_of: str | None
    order: JSON | None
    source: str


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.stem + ".expected.yaml")
    if not side.exists():
        return {}
    data = yaml.safe_load(side.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def bundle_patient(path: Path) -> CohortPatient:
    """A bundle file and its sidecar scenario (as-of and draft order) when there is one."""
    side = _sidecar(path)
    order = None
    if side.get("order"):
        order_path = path.parent / str(side["order"])
        order = read_order(order_path.read_bytes(), str(order_path))
    as_of = side.get("as_of")
    return CohortPatient(
        path.stem, raw_patient_from_path(path), str(as_of) if as_of else None, order, str(path)
    )


def _subject(resource: JSON) -> str | None:
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return str(ref["reference"]).split("/_history")[0].removeprefix("urn:uuid:")
    return None


def ndjson_patients(folder: Path) -> Iterator[CohortPatient]:
    """Group every ``*.ndjson`` resource in a folder by its patient."""
    groups: dict[str, list[JSON]] = {}
    shared: list[JSON] = []  # Medication resources are referenced, not owned
    for path in sorted(folder.glob("*.ndjson")):
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputRejected(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(resource, dict):
                continue
            if resource.get("resourceType") == "Medication":
                shared.append(resource)
                continue
            subject = _subject(resource)
            if subject is None:
                continue
            if not subject.startswith("Patient/"):
                subject = f"Patient/{subject}"
            groups.setdefault(subject, []).append(resource)
    for subject, resources in sorted(groups.items()):
        if not any(r.get("resourceType") == "Patient" for r in resources):
            continue
        raw = raw_patient_from_resources([*resources, *shared], f"{folder}#{subject}")
        yield CohortPatient(subject, raw, None, None, str(folder))


def load_cohort(path: Path) -> tuple[list[CohortPatient], list[str]]:
    """All patients of a cohort folder or file, plus one line per patient that was rejected."""
    patients: list[CohortPatient] = []
    rejected: list[str] = []
    if path.is_dir() and any(path.glob("*.ndjson")):
        try:
            patients.extend(ndjson_patients(path))
        except InputRejected as exc:
            rejected.append(str(exc))
    files = sorted(p for p in path.glob("*.json")) if path.is_dir() else [path]
    for file in files:
        try:
            patients.append(bundle_patient(file))
        except (InputRejected, OSError) as exc:
            rejected.append(f"{file}: {exc}")
    return patients, rejected


def run_patient(
    evaluator: Evaluator, patient: CohortPatient, as_of: datetime | None = None, trace: bool = False
) -> Result:
    """Evaluate one cohort patient at its scenario's as-of (or the one given; without either, now)."""
    instant = as_of or config.as_of(patient.as_of)
    return evaluator.evaluate(patient.raw, as_of=instant, order=patient.order, trace=trace)


Stamp = tuple[tuple[str, int, int], ...]
_COHORT: dict[Path, tuple[Stamp, list[CohortPatient], list[str]]] = {}
_FACTS: dict[tuple[str, ...], PatientFacts | str] = {}
_MAX_FACTS = 5000


def _stamp(path: Path) -> Stamp:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for file in files:
        stat = file.stat()
        out.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def cached_cohort(path: Path) -> tuple[list[CohortPatient], list[str]]:
    """``load_cohort``, reused while no file under ``path`` changed (one cohort is kept)."""
    key = path.resolve()
    stamp = _stamp(path)
    hit = _COHORT.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    patients, rejected = load_cohort(path)
    _COHORT.clear()
    _COHORT[key] = (stamp, patients, rejected)
    return patients, rejected


def derivation_params(library: RuleLibrary) -> Params:
    """The parameters fact derivation may read (a derivation reading any other fails loudly, so
    cached facts can never depend on a parameter their key leaves out)."""
    return Params({k: v for k, v in library.parameters.items() if k in DERIVATION_PARAMETERS})


def derivation_key(library: RuleLibrary) -> str:
    """A digest of everything fact derivation reads from the rules directory: the value sets and
    catalogue files and the derivation parameters (a rule threshold edit keeps the cache)."""
    values = derivation_params(library).values
    digest = hashlib.sha256(orjson.dumps(dict(values), option=orjson.OPT_SORT_KEYS))
    for folder in ("valuesets", "catalogue"):
        root = library.directory / folder
        for file in sorted(root.rglob("*")) if root.is_dir() else []:
            if file.is_file():
                digest.update(file.relative_to(root).as_posix().encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def cohort_facts(
    library: RuleLibrary,
    patients: list[CohortPatient],
    progress: Callable[[str, int, int], None] | None = None,
) -> Iterator[tuple[CohortPatient, PatientFacts | str]]:
    """Each patient's facts at its scenario's as-of (or why it is not usable), from the cache when
    the patient and the derivation inputs are unchanged. Do not mutate the facts."""
    key = derivation_key(library)
    params = derivation_params(library)
    for done, patient in enumerate(patients):
        if progress is not None:
            progress("running sample patients", done, len(patients))
        instant = config.as_of(patient.as_of)
        order = orjson.dumps(patient.order).decode() if patient.order is not None else ""
        cache_key = (key, patient.source, patient.name, instant.isoformat(), order)
        facts = _FACTS.get(cache_key)
        if facts is None:
            try:
                record = parse_patient(patient.raw, library.valuesets, patient.order)
                facts = build_facts(record, library.valuesets, params, instant)
            except InputRejected as exc:
                facts = str(exc)
            if len(_FACTS) >= _MAX_FACTS:
                _FACTS.clear()
            _FACTS[cache_key] = facts
        yield patient, facts
    if progress is not None:
        progress("running sample patients", len(patients), len(patients))

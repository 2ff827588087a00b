"""A sample cohort for authoring checks: a folder of bundles (with sidecars) or Bulk NDJSON.

The authoring tools only need "each patient, as of when, with which draft order", so this is a
simple loop, not the batch engine. A bundle ``x.json`` may have a sidecar ``x.expected.yaml``
whose ``as_of`` and ``order`` (a path relative to the folder) pin the scenario, as in
``fhir_samples/``. NDJSON files (``*.ndjson``) are grouped into patients by the Patient id and
the ``subject``/``patient`` reference of every other resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from cds import config
from cds.errors import InputRejected
from cds.evaluate import Evaluator, Result
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

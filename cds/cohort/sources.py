"""Cohort inputs: what kind of export a path is, and how to read it line by line.

Three shapes are accepted:

* a Bulk Data ``$export`` folder (or a single file): ``<Type>.<n>.ndjson`` files, gzip allowed,
  one resource per line, grouped later by the patient each line refers to;
* a folder of Bundles (``*.json``, optionally ``.json.gz``): one patient per file;
* a ``.jsonl`` file of Bundles: one patient per line.

Files of a Bulk folder whose name does not start with an R4 resource type (the export's own
``log.ndjson``, a manifest) are not resource files: they are reported, never read as patients.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from cds.fhir.source import is_r4_resource_type

InputKind = Literal["ndjson", "bundles", "bundle-lines"]

# Resource types outside the Patient compartment: shared by many patients, never grouped by one.
# Medication is kept aside and resolved for each patient that references it.
NON_PATIENT_TYPES = frozenset(
    {
        "Medication",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Substance",
        "Group",
        "Device",
        "ValueSet",
        "CodeSystem",
    }
)

_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")


@dataclass(frozen=True)
class InputFile:
    """One file of the input with the resource type its name declares (Bulk) or None."""

    path: Path
    resource_type: str | None


@dataclass(frozen=True)
class CohortInput:
    """A classified cohort input: its kind, the files to read and the files set aside."""

    root: Path
    kind: InputKind
    files: list[InputFile]
    not_resource_files: list[Path]


def _strip_suffixes(name: str) -> str:
    for suffix in (".gz", ".ndjson", ".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def declared_type(path: Path) -> str | None:
    """The resource type a Bulk file name declares (``Observation.003.ndjson.gz`` -> Observation)."""
    stem = _strip_suffixes(path.name)
    head = stem.split(".", 1)[0].split("-", 1)[0]
    return head if head and head[0].isupper() and is_r4_resource_type(head) else None


def _natural_key(path: Path) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def classify(path: Path) -> CohortInput:
    """Decide what kind of cohort input ``path`` is; ValueError with a reason when it is none."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz")):
            return CohortInput(path, "bundle-lines", [InputFile(path, None)], [])
        if name.endswith((".ndjson", ".ndjson.gz")):
            rtype = declared_type(path)
            if rtype is None:
                raise ValueError(f"{path}: not a Bulk resource file (name does not start with an R4 type)")
            return CohortInput(path, "ndjson", [InputFile(path, rtype)], [])
        if name.endswith((".json", ".json.gz")):
            return CohortInput(path, "bundles", [InputFile(path, None)], [])
        raise ValueError(f"{path}: expected .ndjson(.gz), .jsonl(.gz) or .json(.gz)")
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    entries = sorted((p for p in path.iterdir() if p.is_file()), key=_natural_key)
    ndjson = [p for p in entries if p.name.lower().endswith((".ndjson", ".ndjson.gz"))]
    if ndjson:
        files: list[InputFile] = []
        others: list[Path] = []
        for p in ndjson:
            rtype = declared_type(p)
            if rtype is None:
                others.append(p)
            else:
                files.append(InputFile(p, rtype))
        # Patient files first: a patient's demographics then come first in its group, as in a Bundle.
        files.sort(key=lambda f: (f.resource_type != "Patient", _natural_key(f.path)))
        if not files:
            raise ValueError(f"{path}: no Bulk resource files (<Type>.ndjson) in the folder")
        return CohortInput(path, "ndjson", files, others)
    jsonl = [p for p in entries if p.name.lower().endswith((".jsonl", ".jsonl.gz"))]
    bundles = [p for p in entries if p.name.lower().endswith((".json", ".json.gz"))]
    if bundles:
        return CohortInput(path, "bundles", [InputFile(p, None) for p in bundles], jsonl)
    if jsonl:
        return CohortInput(path, "bundle-lines", [InputFile(p, None) for p in jsonl], [])
    raise ValueError(f"{path}: no .ndjson, .json or .jsonl files in the folder")


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, transparently gunzipping ``*.gz``."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, stripped line) for every non-blank line of a (gzipped) text file."""
    with open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped:
                yield number, stripped


def patient_id_of_reference(reference: object) -> str | None:
    """``Patient/<id>`` (relative, absolute or versioned) -> ``<id>``; anything else -> None."""
    if not isinstance(reference, str):
        return None
    match = _PATIENT_REF.search(reference)
    return match.group(1) if match else None


def patient_key(resource: dict[str, Any]) -> str | None:
    """The Patient id a Bulk resource belongs to: its own id, or its subject/patient reference."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            found = patient_id_of_reference(ref.get("reference"))
            if found:
                return found
    return None


def medication_refs(resource: dict[str, Any]) -> list[str]:
    """``Medication/<id>`` references a medication resource makes (resolved from Medication.ndjson)."""
    ref = resource.get("medicationReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        target: str = ref["reference"]
        if target.startswith("Medication/") or "/Medication/" in target:
            return ["Medication/" + target.rsplit("Medication/", 1)[1]]
    return []

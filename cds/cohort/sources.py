"""Cohort inputs: what kind of export a path is, and how to read it line by line.

Three shapes are accepted:

* a Bulk Data ``$export`` folder (or a single file): NDJSON files, gzip allowed, one resource per
  line, grouped later by the patient each line refers to. With a ``manifest.json`` the manifest
  says which files to read (``output[].url``, relative or absolute) and of which type; its
  ``error[]`` files (OperationOutcome NDJSON) are reported as input errors. Without one, every
  ``*.ndjson`` file is read: its type comes from its name (``Observation.003.ndjson.gz``) or, for
  any other name (``patient_file_1.ndjson``), from its lines' ``resourceType``;
* a folder of Bundles (``*.json``, optionally ``.json.gz``): one patient per file;
* a ``.jsonl`` file of Bundles: one patient per line.

Files of a Bulk folder that are not resource files (the export's own ``log.ndjson``, a file named
for a type that is not in R4 such as a DSTU2 ``MedicationOrder.ndjson``) are reported, never read.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote, urlparse

import orjson

from cds.fhir.source import is_r4_resource_type

InputKind = Literal["ndjson", "bundles", "bundle-lines"]
MANIFEST = "manifest.json"
# What reading a damaged file raises: a truncated gzip stream (EOFError), a file that is not gzip
# (BadGzipFile, an OSError), corrupt compressed data (zlib.error), or the disk itself (OSError).
READ_ERRORS = (OSError, EOFError, zlib.error)

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
class InputProblem:
    """A problem with the input as a whole (a manifest entry, a file), reported in errors.jsonl."""

    kind: str
    file: str
    reason: str
    line: int | None = None


@dataclass(frozen=True)
class CohortInput:
    """A classified cohort input: its kind, the files to read and the files set aside."""

    root: Path
    kind: InputKind
    files: list[InputFile]
    not_resource_files: list[Path]
    # Bulk manifest ``error[]`` files: OperationOutcome NDJSON, each line reported as an input error.
    error_files: list[Path] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)


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


def first_resource_type(path: Path) -> str | None:
    """The ``resourceType`` of a file's first non-blank line, or None when it is not a resource.

    Used for files whose name declares no type (``patient_file_1.ndjson``); an unreadable file gives
    None here and is reported when it is read."""
    try:
        with open_binary(path) as handle:
            for line in handle:
                if line.strip():
                    doc = orjson.loads(line)
                    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
                    return rtype if isinstance(rtype, str) and rtype else None
    except (*READ_ERRORS, orjson.JSONDecodeError):
        return None
    return None


def _names_a_type(path: Path) -> bool:
    """Whether a file name starts like a resource type (``Observation.003``, ``MedicationOrder``)."""
    head = _strip_suffixes(path.name).split(".", 1)[0].split("-", 1)[0]
    return bool(re.fullmatch(r"[A-Z][A-Za-z]+", head))


def _bulk_file(path: Path) -> InputFile | None:
    """A Bulk file without a manifest: type from its name, else from its lines; None if not resources."""
    if _names_a_type(path):
        rtype = declared_type(path)
        return InputFile(path, rtype) if rtype else None
    rtype = first_resource_type(path)
    return InputFile(path, rtype) if rtype else None


def _manifest_target(root: Path, url: str) -> Path | None:
    """The local file a manifest ``url`` names: relative to the folder, a file: URL, or (for an
    export downloaded from a server) the file of that name in the folder."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        target = Path(unquote(parsed.path))
        target = target if target.is_absolute() else root / target
    else:
        target = root / Path(unquote(parsed.path)).name
    try:
        resolved = target.resolve()
    except OSError:
        return None
    # A manifest may only point inside the export folder (no ../ escapes).
    if not resolved.is_relative_to(root.resolve()):
        return None
    return resolved


def _sort_files(files: list[InputFile]) -> list[InputFile]:
    # Patient files first: a patient's demographics then come first in its group, as in a Bundle.
    return sorted(files, key=lambda f: (f.resource_type != "Patient", _natural_key(f.path)))


def _from_manifest(root: Path, manifest: Path, entries: list[Path]) -> CohortInput:
    """A Bulk folder described by its manifest.json: the manifest says what to read."""
    problems: list[InputProblem] = []
    try:
        doc = orjson.loads(manifest.read_bytes())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (orjson.JSONDecodeError, ValueError, OSError) as exc:
        # Unusable manifest: fall back to reading the folder by file names and lines, and say so.
        problems.append(
            InputProblem("bad-manifest", str(manifest), f"manifest not readable ({exc}): files read by name")
        )
        ndjson = [p for p in entries if p.name.lower().endswith((".ndjson", ".ndjson.gz"))]
        fallback = _from_names(root, ndjson)
        return CohortInput(
            root, "ndjson", fallback.files, fallback.not_resource_files, fallback.error_files, problems
        )
    files: list[InputFile] = []
    error_files: list[Path] = []
    listed: set[Path] = {manifest.resolve()}
    for section in ("output", "error", "deleted"):
        items = doc.get(section) or []
        for number, item in enumerate(items if isinstance(items, list) else [], start=1):
            url = item.get("url") if isinstance(item, dict) else None
            rtype = item.get("type") if isinstance(item, dict) else None
            where = f"{manifest}#{section}[{number - 1}]"
            if not isinstance(url, str) or not url:
                problems.append(InputProblem("bad-manifest", where, f"{section} entry without a url"))
                continue
            target = _manifest_target(root, url)
            if target is None or not target.is_file():
                problems.append(
                    InputProblem(
                        "missing-file", where, f"{url}: listed in the manifest, no such file in the folder"
                    )
                )
                continue
            listed.add(target)
            if section == "error":
                error_files.append(target)
            elif section == "deleted":
                problems.append(
                    InputProblem(
                        "not-read", str(target), "deleted-resources file (a Bundle of deletions): not applied"
                    )
                )
            elif isinstance(rtype, str) and is_r4_resource_type(rtype):
                files.append(InputFile(target, rtype))
            else:
                problems.append(
                    InputProblem(
                        "unknown-type",
                        str(target),
                        f"manifest type {rtype!r} is not an R4 resource type: not read",
                    )
                )
    for path in entries:
        if path.name.lower().endswith((".ndjson", ".ndjson.gz")) and path.resolve() not in listed:
            problems.append(
                InputProblem("not-in-manifest", str(path), "not listed in manifest.json: not read")
            )
    if not files:
        raise ValueError(f"{root}: manifest.json lists no resource files that exist in the folder")
    return CohortInput(root, "ndjson", _sort_files(files), [], error_files, problems)


def _from_names(root: Path, ndjson: list[Path]) -> CohortInput:
    files: list[InputFile] = []
    others: list[Path] = []
    error_files: list[Path] = []
    for p in ndjson:
        found = _bulk_file(p)
        if found is None:
            others.append(p)
        elif found.resource_type == "OperationOutcome":
            # The export's error file (the manifest would list it under error[]): reported per line.
            error_files.append(p)
        else:
            files.append(found)
    if not files:
        raise ValueError(f"{root}: no Bulk resource files (NDJSON of FHIR resources) in the folder")
    return CohortInput(root, "ndjson", _sort_files(files), others, error_files)


def classify(path: Path) -> CohortInput:
    """Decide what kind of cohort input ``path`` is; ValueError with a reason when it is none."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl", ".jsonl.gz")):
            return CohortInput(path, "bundle-lines", [InputFile(path, None)], [])
        if name.endswith((".ndjson", ".ndjson.gz")):
            found = _bulk_file(path)
            if found is None:
                raise ValueError(f"{path}: not a Bulk resource file (no FHIR resource on its first line)")
            return CohortInput(path, "ndjson", [found], [])
        if name == MANIFEST:
            return classify(path.parent)
        if name.endswith((".json", ".json.gz")):
            return CohortInput(path, "bundles", [InputFile(path, None)], [])
        raise ValueError(f"{path}: expected .ndjson(.gz), .jsonl(.gz) or .json(.gz)")
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    entries = sorted((p for p in path.iterdir() if p.is_file()), key=_natural_key)
    manifest = path / MANIFEST
    if manifest.is_file():
        return _from_manifest(path, manifest, entries)
    ndjson = [p for p in entries if p.name.lower().endswith((".ndjson", ".ndjson.gz"))]
    if ndjson:
        return _from_names(path, ndjson)
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

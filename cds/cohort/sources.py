"""Cohort inputs: what kind of export a path is, and how to read it line by line.

Three shapes are accepted:

* a Bulk Data ``$export`` folder (or a single file): NDJSON files, gzip allowed, one resource per
  line, grouped later by the patient each line refers to. With a ``manifest.json`` (the Bulk Data
  completion manifest) the manifest says which files to read (``output[].url``: relative, ``file:``
  or the server's URL of a file saved in the folder) and of which type; its ``error[]`` files
  (OperationOutcome NDJSON) are reported line by line as input errors. Without one, every
  ``*.ndjson(.gz)`` file is read: its type comes from its name (``Observation.003.ndjson.gz``) or,
  for any other name (``patient_file_1.ndjson``), from its lines' ``resourceType``;
* a folder of Bundles (``*.json``, optionally ``.json.gz``): one patient per file;
* a ``.jsonl`` file of Bundles: one patient per line.

Files of a Bulk folder that are not resource files (the export's own ``log.ndjson``, a file named
for a type that is not in R4 such as a DSTU2 ``MedicationOrder.ndjson``) are reported, never read.
A damaged file (truncated gzip, not gzip at all) is never fatal: it is read up to the break and the
break is reported (``cds.errors.DamagedFile``).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote, urlparse

import orjson

from cds.errors import BadManifest, DamagedFile, InputFileError
from cds.fhir.source import is_r4_resource_type

InputKind = Literal["ndjson", "bundles", "bundle-lines"]
MANIFEST = "manifest.json"
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
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
class CohortInput:
    """A classified cohort input: its kind, the files to read and the files set aside."""

    root: Path
    kind: InputKind
    files: list[InputFile]
    not_resource_files: list[Path]
    # the export's error files (manifest ``error[]``, or OperationOutcome NDJSON): reported per line
    error_files: list[Path] = field(default_factory=list)
    # problems with the input as a whole (manifest entries), reported in errors.jsonl
    problems: list[InputFileError] = field(default_factory=list)
    # files in the folder the manifest does not list: reported, not read
    unlisted: list[Path] = field(default_factory=list)


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


class _Unread:
    """The first line of a file could not be read (the ingest reports where the file broke off)."""


UNREAD = _Unread()


def first_resource_type(path: Path) -> str | _Unread | None:
    """The ``resourceType`` of a file's first non-blank line; None when that line is not a FHIR
    resource (the export log); ``UNREAD`` when the file breaks off before one line is read."""
    try:
        with open_binary(path) as handle:
            for line in handle:
                if line.strip():
                    try:
                        doc = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        return None
                    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
                    return rtype if isinstance(rtype, str) and rtype else None
    except READ_ERRORS:
        return UNREAD
    return None


def _names_a_type(path: Path) -> bool:
    """Whether a file name starts like a resource type (``Observation.003``, ``MedicationOrder``)."""
    head = _strip_suffixes(path.name).split(".", 1)[0].split("-", 1)[0]
    return bool(re.fullmatch(r"[A-Z][A-Za-z]+", head))


def _bulk_file(path: Path) -> InputFile | None:
    """A Bulk file without a manifest: its type from its name, else from its first line; None when
    it holds no FHIR resources. A file that cannot be read is kept: reading it reports the break."""
    if _names_a_type(path):
        rtype = declared_type(path)
        return InputFile(path, rtype) if rtype else None
    found = first_resource_type(path)
    if isinstance(found, _Unread):
        return InputFile(path, None)
    return InputFile(path, found) if found else None


def _sorted_files(files: list[InputFile]) -> list[InputFile]:
    # Patient files first: a patient's demographics then come first in its group, as in a Bundle.
    return sorted(files, key=lambda f: (f.resource_type != "Patient", _natural_key(f.path)))


def _from_names(root: Path, ndjson: list[Path]) -> CohortInput:
    """A Bulk folder without a manifest: every NDJSON file, typed by its name or its lines."""
    files: list[InputFile] = []
    others: list[Path] = []
    error_files: list[Path] = []
    for p in ndjson:
        found = _bulk_file(p)
        if found is None:
            others.append(p)
        elif found.resource_type == "OperationOutcome":
            error_files.append(p)  # the export's error file: what the server could not export
        else:
            files.append(found)
    if not files:
        raise ValueError(f"{root}: no Bulk resource files (NDJSON of FHIR resources) in the folder")
    return CohortInput(root, "ndjson", _sorted_files(files), others, error_files)


def manifest_target(root: Path, url: str) -> Path | None:
    """The file in the export folder a manifest ``url`` names: a relative URL or a ``file:`` URL as
    is, a server URL (the export was downloaded) by its file name; None when it points outside."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        target = Path(unquote(parsed.path))
        target = target if target.is_absolute() else root / target
    else:
        target = root / Path(unquote(parsed.path)).name
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return None
    base = root.resolve()
    # named as the user named the folder, like every other file in errors.jsonl
    return root / resolved.relative_to(base) if resolved.is_relative_to(base) else None


def _from_manifest(root: Path, manifest: Path, entries: list[Path]) -> CohortInput:
    """A Bulk folder with its completion manifest: the manifest says what to read and its type."""
    where = str(manifest)
    try:
        doc = orjson.loads(manifest.read_bytes())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        # orjson.JSONDecodeError is a ValueError. The files are then read by name and by line.
        fallback = _from_names(root, [p for p in entries if p.name.lower().endswith(NDJSON_SUFFIXES)])
        problem = BadManifest(
            f"manifest not readable ({exc}): files read by their names and lines", origin=where
        )
        return CohortInput(
            root, "ndjson", fallback.files, fallback.not_resource_files, fallback.error_files, [problem]
        )
    files: list[InputFile] = []
    error_files: list[Path] = []
    problems: list[InputFileError] = []
    listed = {manifest.resolve()}
    for section in ("output", "error", "deleted"):
        items = doc.get(section) or []
        for index, item in enumerate(items if isinstance(items, list) else []):
            entry = f"{where}#{section}[{index}]"
            url = item.get("url") if isinstance(item, dict) else None
            rtype = item.get("type") if isinstance(item, dict) else None
            if not isinstance(url, str) or not url:
                problems.append(BadManifest(f"{section} entry without a url: not read", origin=entry))
                continue
            target = manifest_target(root, url)
            if target is None or not target.is_file():
                problems.append(
                    BadManifest(f"{url}: listed in the manifest, no such file in the folder", origin=entry)
                )
                continue
            if target.resolve() in listed:
                problems.append(BadManifest(f"{url}: listed twice: read once", origin=entry))
                continue
            listed.add(target.resolve())
            if section == "error":
                error_files.append(target)
            elif section == "deleted":
                problems.append(
                    BadManifest("deleted-resources file (Bundles of deletions): not applied", origin=entry)
                )
            elif isinstance(rtype, str) and is_r4_resource_type(rtype):
                files.append(InputFile(target, rtype))
            else:
                problems.append(
                    BadManifest(f"type {rtype!r} is not an R4 resource type: {url} not read", origin=entry)
                )
    unlisted = [p for p in entries if p.name.lower().endswith(NDJSON_SUFFIXES) and p.resolve() not in listed]
    if not files:
        raise ValueError(f"{root}: {MANIFEST} lists no resource file that exists in the folder")
    return CohortInput(root, "ndjson", _sorted_files(files), [], error_files, problems, unlisted)


def _is_bulk_manifest(path: Path, has_ndjson: bool) -> bool:
    """Whether ``manifest.json`` is a Bulk Data manifest (an object with ``output``). One that cannot
    be read counts when the folder holds NDJSON (it is then reported); otherwise the file is not
    ours to interpret (a folder of Bundles may hold any JSON file of that name)."""
    if not path.is_file():
        return False
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return has_ndjson
    return isinstance(doc, dict) and "output" in doc


def classify(path: Path) -> CohortInput:
    """Decide what kind of cohort input ``path`` is; ValueError with a reason when it is none."""
    if path.is_file():
        name = path.name.lower()
        if name == MANIFEST:
            return classify(path.parent)
        if name.endswith((".jsonl", ".jsonl.gz")):
            return CohortInput(path, "bundle-lines", [InputFile(path, None)], [])
        if name.endswith(NDJSON_SUFFIXES):
            found = _bulk_file(path)
            if found is None:
                raise ValueError(f"{path}: not a Bulk resource file (no FHIR resource on its first line)")
            return CohortInput(path, "ndjson", [found], [])
        if name.endswith((".json", ".json.gz")):
            return CohortInput(path, "bundles", [InputFile(path, None)], [])
        raise ValueError(f"{path}: expected .ndjson(.gz), .jsonl(.gz) or .json(.gz)")
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or directory")
    entries = sorted((p for p in path.iterdir() if p.is_file()), key=_natural_key)
    ndjson = [p for p in entries if p.name.lower().endswith(NDJSON_SUFFIXES)]
    if _is_bulk_manifest(path / MANIFEST, bool(ndjson)):
        return _from_manifest(path, path / MANIFEST, entries)
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


def lines_until_break(
    handle: BinaryIO, on_break: Callable[[DamagedFile], None], file: str
) -> Iterator[tuple[int, bytes]]:
    """(1-based number, raw line) of a file until it ends or breaks off. A break (truncated gzip,
    not gzip, corrupt data, read error) is reported once, with the first line not read and the
    uncompressed byte offset where it starts; the lines before it stand."""
    number, offset = 0, 0
    try:
        for number, line in enumerate(handle, start=1):
            yield number, line
            offset += len(line)
    except READ_ERRORS as exc:
        on_break(damaged(file, number + 1, offset, exc))


def damaged(file: str, line: int, offset: int, exc: BaseException) -> DamagedFile:
    """The error for a file that broke off at ``line`` (uncompressed byte ``offset``)."""
    if isinstance(exc, gzip.BadGzipFile):
        what = "not a gzip file"
    elif isinstance(exc, EOFError):
        what = "truncated: the compressed stream ends early"
    else:
        what = f"unreadable ({type(exc).__name__}: {exc})"
    used = "nothing of the file is used" if line == 1 else f"lines 1-{line - 1} are used, the rest is not"
    return DamagedFile(
        f"{what}; reading stopped at line {line}, byte {offset} of the uncompressed data ({used})",
        origin=file,
        line=line,
    )


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
    """``Medication/<id>`` references a medication resource makes (resolved from Medication.ndjson;
    relative, absolute or versioned, by the Medication's id as the reader resolves them)."""
    ref = resource.get("medicationReference")
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        target: str = ref["reference"]
        if target.startswith("Medication/") or "/Medication/" in target:
            return ["Medication/" + target.rsplit("Medication/", 1)[1].split("/_history/", 1)[0]]
    return []

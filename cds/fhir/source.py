"""Patient sources: turn a file or bytes into the raw resources of exactly one patient.

Accepted shapes (clinical-spec §1): a Bundle of any type, a bare JSON array of resources, a single
resource, or one patient's NDJSON lines. Rejected *before* any filtering, with a one-line
``InputRejected``: not JSON, not FHIR, no Patient, more than one Patient, or a resource type that
does not exist in R4 (DSTU2 shapes such as ``MedicationOrder``). The Bundle wrapper is read for
its shape only; an invalid Bundle id or meta is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from cds.errors import InputRejected

JSON = dict[str, Any]

# Resource types of DSTU2/STU3 that were removed or renamed before R4. Named explicitly so the
# rejection message can say what the file probably is.
PRE_R4_TYPES = {
    "MedicationOrder": "DSTU2",
    "DiagnosticOrder": "DSTU2",
    "DeviceUseRequest": "DSTU2",
    "Order": "DSTU2",
    "OrderResponse": "DSTU2",
    "ProcedureRequest": "STU3",
    "ReferralRequest": "STU3",
    "ProcessRequest": "STU3",
    "ProcessResponse": "STU3",
    "EligibilityRequest": "STU3",
    "EligibilityResponse": "STU3",
    "DeviceComponent": "STU3",
    "BodySite": "STU3",
    "DataElement": "STU3",
    "ExpansionProfile": "STU3",
    "ImagingManifest": "STU3",
    "Sequence": "STU3",
}


@lru_cache(maxsize=512)
def is_r4_resource_type(name: str) -> bool:
    """Whether ``name`` is a FHIR R4 resource type (via the fhir.resources R4B model registry)."""
    if name in PRE_R4_TYPES:
        return False
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(name)
    except (ValueError, KeyError, AttributeError, ImportError):
        return False
    return True


@dataclass
class RawPatient:
    """The raw resources of one patient, as decoded, with where they came from."""

    patient: JSON
    resources: list[JSON]
    origin: str = "<memory>"
    # resolution table for medicationReference: "Medication/x" and fullUrl -> Medication
    medications: dict[str, JSON] = field(default_factory=dict)
    # the Patient entry's fullUrl values: references to them name this patient
    patient_urls: tuple[str, ...] = ()
    full_urls: dict[str, str] = field(default_factory=dict)
    # items that are not readable resources (no resourceType, not an object), in input order
    unreadable: list[Any] = field(default_factory=list)

    @property
    def patient_ref(self) -> str:
        """``Patient/<id>`` of the single patient."""
        return f"Patient/{self.patient.get('id', '')}"


def decode_json(data: bytes, origin: str) -> Any:
    """Decode JSON bytes, or one NDJSON document per line when the whole is not one JSON value."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as first_error:
        lines = [ln for ln in data.splitlines() if ln.strip()]
        if len(lines) > 1:
            items: list[Any] = []
            for number, line in enumerate(lines, start=1):
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise InputRejected(f"not JSON or NDJSON (line {number}: {exc})", origin=origin) from exc
            return items
        raise InputRejected(f"not JSON ({first_error})", origin=origin) from first_error


def _resources_of(doc: Any, origin: str) -> tuple[list[Any], dict[str, JSON]]:
    """The resources of a decoded document plus a fullUrl -> resource table for references."""
    by_url: dict[str, JSON] = {}
    if isinstance(doc, dict):
        if not isinstance(doc.get("resourceType"), str):
            raise InputRejected("not FHIR (a JSON object without resourceType)", origin=origin)
        if doc["resourceType"] == "Bundle":
            entries = doc.get("entry") or []
            if not isinstance(entries, list):
                raise InputRejected("not FHIR (Bundle.entry is not a list)", origin=origin)
            resources: list[Any] = []
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                resource = entry.get("resource")
                if isinstance(resource, dict):
                    resources.append(resource)
                    url = entry.get("fullUrl")
                    if isinstance(url, str):
                        by_url[url] = resource
                elif resource is not None:
                    resources.append(resource)  # not a resource object: listed as unreadable later
            return resources, by_url
        return [doc], by_url
    if isinstance(doc, list):
        resources = []
        if not any(isinstance(item, dict) and isinstance(item.get("resourceType"), str) for item in doc):
            raise InputRejected("not FHIR (the array holds no resources)", origin=origin)
        for item in doc:
            if isinstance(item, dict) and item.get("resourceType") == "Bundle":
                inner, urls = _resources_of(item, origin)
                resources.extend(inner)
                by_url.update(urls)
            else:
                resources.append(item)
        return resources, by_url
    raise InputRejected("not FHIR (expected a Bundle, a resource or an array of resources)", origin=origin)


def _check_types(resources: Iterable[JSON], origin: str) -> None:
    for resource in resources:
        rtype = resource["resourceType"]
        if not isinstance(rtype, str) or not is_r4_resource_type(rtype):
            era = PRE_R4_TYPES.get(str(rtype))
            hint = f" (a {era} resource: this file is not FHIR R4)" if era else ""
            raise InputRejected(f"resource type {rtype!r} does not exist in FHIR R4{hint}", origin=origin)


def raw_patient_from_resources(
    resources: list[JSON], origin: str, by_url: dict[str, JSON] | None = None
) -> RawPatient:
    """Check the one-patient rules on already decoded resources (Bulk NDJSON grouping uses this).

    Items that are not resources (no string ``resourceType``) never sink the patient: they are
    kept aside as unreadable, listed in ``skipped`` and checked for data the rules use."""
    unreadable = [
        r for r in resources if not (isinstance(r, dict) and isinstance(r.get("resourceType"), str))
    ]
    if unreadable:
        resources = [r for r in resources if isinstance(r, dict) and isinstance(r.get("resourceType"), str)]
    _check_types(resources, origin)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    ids = sorted({str(p.get("id")) for p in patients})
    if not patients:
        raise InputRejected("no Patient resource (one patient per evaluation)", origin=origin)
    if len(ids) > 1:
        raise InputRejected(f"{len(ids)} Patient resources; evaluate one patient at a time", origin=origin)
    medications: dict[str, JSON] = {}
    for url, resource in (by_url or {}).items():
        if resource.get("resourceType") == "Medication":
            medications[url] = resource
    for resource in resources:
        if resource["resourceType"] == "Medication" and isinstance(resource.get("id"), str):
            medications[f"Medication/{resource['id']}"] = resource
    urls = tuple(
        sorted(url for url, r in (by_url or {}).items() if any(r is p for p in patients) and url.strip())
    )
    full_urls = {
        url: f"{r['resourceType']}/{r['id']}"
        for url, r in (by_url or {}).items()
        if isinstance(r.get("resourceType"), str) and isinstance(r.get("id"), str)
    }
    return RawPatient(
        patient=patients[0],
        resources=resources,
        origin=origin,
        medications=medications,
        patient_urls=urls,
        full_urls=full_urls,
        unreadable=unreadable,
    )


def raw_patient_from_bytes(data: bytes, origin: str = "<input>") -> RawPatient:
    """Decode bytes (Bundle, array, resource or NDJSON) into one patient's raw resources."""
    doc = decode_json(data, origin)
    resources, by_url = _resources_of(doc, origin)
    return raw_patient_from_resources(resources, origin, by_url)


def raw_patient_from_path(path: Path) -> RawPatient:
    """Read one patient file; unreadable files are rejected with the OS reason."""
    try:
        data = path.read_bytes()
    except IsADirectoryError as exc:
        raise InputRejected("is a directory, not a patient file", origin=str(path)) from exc
    except OSError as exc:
        raise InputRejected(f"cannot read ({exc.strerror})", origin=str(path)) from exc
    return raw_patient_from_bytes(data, str(path))


def read_order(data: bytes, origin: str) -> JSON:
    """Read a draft order: a MedicationRequest, or a Bundle/array holding exactly one."""
    doc = decode_json(data, origin)
    resources, _ = _resources_of(doc, origin)
    orders = [r for r in resources if isinstance(r, dict) and r.get("resourceType") == "MedicationRequest"]
    if len(orders) != 1:
        raise InputRejected(
            f"a draft order must be exactly one MedicationRequest (found {len(orders)})", origin=origin
        )
    return orders[0]

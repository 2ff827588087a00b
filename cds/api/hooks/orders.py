"""What the order hooks share: which draft MedicationRequests to check, and that they are this patient's."""

from __future__ import annotations

from typing import Any

from cds.errors import RequestRejected
from cds.fhir.source import is_r4_resource_type

JSON = dict[str, Any]
_DRAFT_STATUSES_IGNORED = {"entered-in-error", "cancelled", "revoked", "completed", "stopped"}


def medication_drafts(resources: list[JSON], patient_id: str) -> list[JSON]:
    """The MedicationRequests still to be signed; 400 for a non-R4 resource or another patient's draft."""
    for resource in resources:
        if not is_r4_resource_type(str(resource["resourceType"])):
            raise RequestRejected(f"draftOrders holds a {resource['resourceType']}, not a FHIR R4 resource")
    meds = [
        r
        for r in resources
        if r["resourceType"] == "MedicationRequest" and r.get("status") not in _DRAFT_STATUSES_IGNORED
    ]
    for med in meds:
        subject = med.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if isinstance(reference, str) and reference.rsplit("/", 1)[-1] != patient_id:
            raise RequestRejected("a draft order is for another patient than context.patientId")
    return meds

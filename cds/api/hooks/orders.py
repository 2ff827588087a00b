"""What the order hooks share: which drafts to check, cheaply decided before any data is fetched.

1. Only MedicationRequests still to be signed, and only this patient's (another patient's: 400).
2. Coverage: a draft whose codes or names the drug knowledge maps to no HER2-directed agent is
   not ours (an antiemetic): no card, no data fetch.
3. A covered draft with invalid fields the rules never read (the sandbox's ``category`` object) is
   checked without them, and its cards say what was ignored; a covered draft whose read fields are
   invalid cannot be checked and gets one warning card, never silence.
"""

from __future__ import annotations

from typing import Any

from cds.api.hooks import Plan
from cds.engine.library import RuleLibrary
from cds.errors import RequestRejected
from cds.fhir.lenient import DRAFT_FIELDS_READ, invalid_fields, without
from cds.fhir.refs import PatientIdentity
from cds.fhir.source import is_r4_resource_type
from cds.fhir.valuesets import Codings, ValueSets

JSON = dict[str, Any]
_DRAFT_STATUSES_IGNORED = {"entered-in-error", "cancelled", "revoked", "completed", "stopped"}
COVERED_CLASS = "her2_directed"


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
        if isinstance(reference, str) and not PatientIdentity(patient_id).names(reference):
            raise RequestRejected("a draft order is for another patient than context.patientId")
    return meds


def _medication_codings(draft: JSON) -> list[Codings]:
    """Every CodeableConcept or name that may say what the draft orders (read defensively)."""
    found = [Codings.of(draft.get("medicationCodeableConcept"))]
    reference = draft.get("medicationReference")
    if isinstance(reference, dict):
        found.append(Codings.of(reference.get("display")))
        target = reference.get("reference")
        for contained in draft.get("contained") or []:
            if (
                isinstance(contained, dict)
                and isinstance(target, str)
                and target == f"#{contained.get('id')}"
            ):
                found.append(Codings.of(contained.get("code")))
                for ingredient in contained.get("ingredient") or []:
                    if isinstance(ingredient, dict):
                        found.append(Codings.of(ingredient.get("itemCodeableConcept")))
    return found


def covers(draft: JSON, valuesets: ValueSets) -> bool:
    """Whether the drug knowledge names a HER2-directed agent in the draft's codes or names."""
    for codings in _medication_codings(draft):
        items = valuesets.items_by_code(codings) + valuesets.items_by_name(codings)
        for agent in valuesets.catalogue.agents_of(items):
            if COVERED_CLASS in valuesets.catalogue.agents[agent].classes:
                return True
    return False


def draft_ref(draft: JSON) -> str:
    """``MedicationRequest/<id>`` of a draft."""
    return f"MedicationRequest/{draft.get('id')}"


def plan_drafts(drafts: list[JSON], patient_id: str, library: RuleLibrary) -> Plan:
    """Covered drafts to check (invalid unread fields dropped and noted), and the unreadable ones."""
    checked: list[JSON] = []
    ignored: dict[str, tuple[str, ...]] = {}
    unreadable: list[str] = []
    for draft in drafts:
        if not covers(draft, library.valuesets):
            continue
        bad = invalid_fields(draft)
        if not bad:
            checked.append(draft)
            continue
        if DRAFT_FIELDS_READ.intersection(bad) or invalid_fields(without(draft, bad)):
            unreadable.append(draft_ref(draft))
            continue
        checked.append(without(draft, bad))
        ignored[draft_ref(draft)] = bad
    return Plan(patient_id=patient_id, drafts=tuple(checked), ignored=ignored, unreadable=tuple(unreadable))

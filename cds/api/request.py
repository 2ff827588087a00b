"""A spec-valid CDS Hooks request from a patient file, with prefetch run from the service's own templates.

``cds hooks request BUNDLE`` prints what an EHR would send, so an integrator can ``curl -d @req.json``
in one step and compare with what their EHR sends. The templates are evaluated here over the
file's resources with the same subset of FHIR search the templates use (instance read; search by
``patient`` reference, ``code`` token list, ``_sort=-date``, ``_count``). The output is
deterministic: the hookInstance is derived from the file's content and the hook.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson

from cds.api.services import PATIENT_TOKEN
from cds.errors import ConfigurationError, InputRejected
from cds.fhir.refs import PatientIdentity

JSON = dict[str, Any]
HOOKS = ("patient-view", "order-select", "order-sign")
_PATIENT_FIELD = {"AllergyIntolerance": "patient"}
_DATE_FIELDS = (
    "effectiveDateTime",
    "issued",
    "recordedDate",
    "onsetDateTime",
    "authoredOn",
    "performedDateTime",
)
_NAMESPACE = uuid.UUID("0b9f3c0e-6a55-4a39-9c7e-3f2f8e1c9d41")


def _date_of(resource: JSON) -> str:
    for key in _DATE_FIELDS:
        if isinstance(resource.get(key), str):
            return str(resource[key])
    for key in ("effectivePeriod", "performedPeriod"):
        period = resource.get(key)
        if isinstance(period, dict) and isinstance(period.get("start"), str):
            return str(period["start"])
    return ""


def _references_patient(resource: JSON, patient_id: str) -> bool:
    field = resource.get(_PATIENT_FIELD.get(str(resource.get("resourceType")), "subject"))
    reference = field.get("reference") if isinstance(field, dict) else None
    return isinstance(reference, str) and PatientIdentity(patient_id).names(reference)


def _code_matches(resource: JSON, tokens: list[str]) -> bool:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for token in tokens:
        system, _, value = token.rpartition("|")
        for coding in codings if isinstance(codings, list) else []:
            if (
                isinstance(coding, dict)
                and coding.get("code") == value
                and (not system or coding.get("system") == system)
            ):
                return True
    return False


def run_query(query: str, resources: list[JSON], patient_id: str) -> JSON | None:
    """What a FHIR server holding ``resources`` answers to one filled template (no paging)."""
    path, _, params = query.partition("?")
    if not params and "/" in path:
        rtype, rid = path.split("/", 1)
        return next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
    args = parse_qsl(params)
    found = [r for r in resources if r.get("resourceType") == path]
    count: int | None = None
    for name, value in args:
        if name == "patient":
            found = [r for r in found if _references_patient(r, value.removeprefix("Patient/"))]
        elif name == "code":
            found = [r for r in found if _code_matches(r, value.split(","))]
        elif name == "_sort" and value == "-date":
            found.sort(key=_date_of, reverse=True)
        elif name == "_count":
            count = int(value)
        else:
            raise ConfigurationError(f"prefetch template parameter {name}={value} is not supported here")
    bundle: JSON = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
    if found:
        bundle["entry"] = [{"resource": r, "search": {"mode": "match"}} for r in found[:count]]
    return bundle


def build_request(
    patient: JSON,
    resources: list[JSON],
    templates: dict[str, str],
    *,
    hook: str = "patient-view",
    order: JSON | None = None,
    user: str = "Practitioner/example",
) -> JSON:
    """The CDS Hooks request body for ``hook`` with every prefetch key filled from ``resources``."""
    if hook not in HOOKS:
        raise InputRejected(f"hook must be one of {', '.join(HOOKS)}, not {hook!r}")
    patient_id = str(patient.get("id", ""))
    if hook != "patient-view" and order is None:
        raise InputRejected(f"{hook} needs a draft order (--order FILE)")
    context: JSON = {"userId": user, "patientId": patient_id}
    if order is not None and hook != "patient-view":
        draft = dict(order)
        draft.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        }
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{draft.get('id')}"]
    prefetch = {
        key: run_query(template.replace(PATIENT_TOKEN, patient_id), resources, patient_id)
        for key, template in templates.items()
    }
    digest = orjson.dumps([hook, context, prefetch], option=orjson.OPT_SORT_KEYS).decode()
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid5(_NAMESPACE, digest)),
        "context": context,
        "prefetch": prefetch,
    }

"""Cards the service itself issues when the rules could not run, so a clinician is never left with silence.

They are not findings of a rule: their extension names the service (``ruleset`` ``cds-hooks``)
and the situation, so feedback and audit still tie them to a stable id and version.
"""

from __future__ import annotations

from typing import Any

from cds.findings.cards import CARD_EXTENSION, FINDING_CODE_SYSTEM, SOURCE_URL, shorten, stable_uuid

JSON = dict[str, Any]
SERVICE_RULESET = "cds-hooks"
SERVICE_VERSION = "1.0.0"
ORDER_UNREADABLE = "gap.unreadable-data"
DATA_UNAVAILABLE = "gap.data-unavailable"


def _card(
    service_id: str, patient_ref: str, code: str, notice: str, summary: str, detail: str, **ext: Any
) -> JSON:
    card_id = stable_uuid(service_id, patient_ref, code, notice, summary, sorted(ext.items()))
    extension: JSON = {
        "codes": [code],
        "kind": "gap",
        "severity": "warning",
        "reviewRequired": False,
        "rules": [
            {"id": notice, "version": SERVICE_VERSION, "ruleset": SERVICE_RULESET, "evidenceStatus": "n/a"}
        ],
    }
    extension.update({k: v for k, v in ext.items() if v})
    return {
        "uuid": card_id,
        "summary": shorten(summary),
        "indicator": "warning",
        "detail": detail,
        "source": {
            "label": "HER2 CDS",
            "url": SOURCE_URL,
            "topic": {"system": FINDING_CODE_SYSTEM, "code": code, "display": shorten(summary)},
        },
        "extension": {CARD_EXTENSION: extension},
    }


def order_unreadable(service_id: str, patient_ref: str, draft_ref: str, fields: tuple[str, ...]) -> JSON:
    """One warning card for a HER2 draft order whose fields the checks need are not valid FHIR R4."""
    named = ", ".join(f"`{f}`" for f in fields if f) or "the resource as a whole"
    return _card(
        service_id,
        patient_ref,
        ORDER_UNREADABLE,
        "service.order-unreadable",
        "HER2 order checks could not check this order: the draft cannot be read",
        "The draft order names a HER2-directed drug, but fields the checks read are not valid FHIR R4 "
        f"({named}). Dose, HER2 status, laboratory and LVEF checks did not run: check this order by hand "
        "or correct the order and sign again.",
        draftOrder=draft_ref,
        invalidFields=[f for f in fields if f],
    )


def data_unavailable(service_id: str, patient_ref: str, which: str) -> JSON:
    """One warning card instead of a 412, for EHRs that hide errors (a per-service option)."""
    return _card(
        service_id,
        patient_ref,
        DATA_UNAVAILABLE,
        "service.data-unavailable",
        f"HER2 safety checks could not run: {which}",
        f"The patient's data needed for the HER2 checks could not be obtained ({which}). No recommendation, "
        "safety alert or data-gap check ran: this is not an all-clear. Review the record by hand.",
    )

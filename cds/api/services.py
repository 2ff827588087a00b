"""The service catalogue published at discovery, and the prefetch templates each service needs.

The Observation codes in the templates come from the loaded value sets, so a pharmacist adding a
LOINC code to ``rules/valuesets/observations.yaml`` widens the prefetch with no code change; the
drug names in the descriptions come from the drug catalogue (``rules/catalogue/``). Medication
searches are not filtered by code: a record naming a drug only in text must still arrive.
Templates only use ``{{context.patientId}}``, type-level search, reference and token (system|code)
parameters and ``_sort=-date`` (SPEC §Prefetch query restrictions).
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.engine.library import RuleLibrary
from cds.findings.cards import LOINC

PATIENT_TOKEN = "{{context.patientId}}"
PATIENT_KEY = "patient"

# Observation groups: (prefetch key, analyte keys, coded keys) of the value sets.
_OBSERVATION_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "tumorObservations",
        (),
        (
            "her2_ihc",
            "her2_interpretation",
            "her2_ish",
            "her2_ish_ratio",
            "her2_ish_copies",
            "er",
            "pr",
            "er_pr",
            "stage_group",
            "clinical_t",
            "clinical_n",
            "clinical_m",
            "pathologic_t",
            "pathologic_n",
            "pathologic_m",
            "disease_status",
        ),
    ),
    (
        "labObservations",
        ("platelets", "anc", "ast", "alt", "bilirubin", "hcg_quantitative", "temperature"),
        ("pregnancy_qualitative",),
    ),
    ("cardiacAndWeightObservations", ("lvef", "weight"), ()),
)
# What each prefetch key holds, in the words a clinician reads on a "could not run" card.
PREFETCH_DATA: dict[str, str] = {
    PATIENT_KEY: "the patient record",
    "tumorObservations": "HER2, hormone receptor and staging results",
    "labObservations": "laboratory results",
    "cardiacAndWeightObservations": "LVEF and body weight",
    "conditions": "conditions",
    "procedures": "procedures",
    "allergies": "allergies",
    "medicationRequests": "medication orders",
    "medicationAdministrations": "medication administrations",
    "medicationStatements": "medication statements",
}
_SEARCHES: tuple[tuple[str, str], ...] = (
    ("conditions", "Condition"),
    ("procedures", "Procedure"),
    ("allergies", "AllergyIntolerance"),
    ("medicationRequests", "MedicationRequest"),
    ("medicationAdministrations", "MedicationAdministration"),
    ("medicationStatements", "MedicationStatement"),
    ("medicationDispenses", "MedicationDispense"),
)


@dataclass(frozen=True)
class Service:
    """One discovery entry; ``hooks`` lists every hook registered under this id."""

    id: str
    hooks: tuple[str, ...]
    title: str
    description: str
    usage: str


_THERAPY_REVIEW = Service(
    id="her2-therapy-review",
    hooks=("patient-view",),
    title="HER2 breast cancer therapy review and safety monitoring",
    description=(
        "When a patient's record is opened: the guideline-recommended next HER2-directed regimen "
        "(first/second/later line, early-setting residual disease, HER2-low), safety alerts for "
        "patients on {monitored} (platelets, transaminases and bilirubin, LVEF, ILD), "
        "and the data gaps that block a safe recommendation."
    ),
    usage="FHIR R4. Needs read access to the patient's Conditions, Observations, medications, "
    "Procedures and AllergyIntolerances (prefetch or fhirAuthorization).",
)
_ORDER_DESCRIPTION = (
    "For draft MedicationRequests of {monitored}: dose against the "
    "label levels per kg or fixed mg, {confusable} name confusion, HER2 status, required labs, "
    "LVEF and pregnancy test before this dose."
)
_ORDER_USAGE = "FHIR R4 draftOrders with MedicationRequest entries; same data access as her2-therapy-review."
_ORDER_SELECT = Service(
    id="her2-order-select",
    hooks=("order-select",),
    title="HER2 draft-order safety check (order selected)",
    description=_ORDER_DESCRIPTION,
    usage=_ORDER_USAGE,
)
_ORDER_SIGN = Service(
    id="her2-order-sign",
    hooks=("order-sign",),
    title="HER2 draft-order safety check (before signing)",
    description=_ORDER_DESCRIPTION,
    usage=_ORDER_USAGE,
)
SHARED_ORDER_ID = "her2-order-safety"
_ORDER_SHARED = Service(
    id=SHARED_ORDER_ID,
    hooks=("order-select", "order-sign"),
    title="HER2 draft-order safety check",
    description=_ORDER_DESCRIPTION + " order-sign cards supersede order-select cards (one service id).",
    usage=_ORDER_USAGE,
)


def services(*, shared_order_id: bool = False) -> tuple[Service, ...]:
    """The services to publish: one id (and URL) per hook by default, because clients that key
    services by id or URL (the reference sandbox among them) keep only one hook per id; with
    ``shared_order_id`` order-select and order-sign share ``her2-order-safety``, for clients that
    replace stale guidance by service id."""
    if shared_order_id:
        return (_THERAPY_REVIEW, _ORDER_SHARED)
    return (_THERAPY_REVIEW, _ORDER_SELECT, _ORDER_SIGN)


def _loinc_list(codes: list[str]) -> str:
    return ",".join(f"{LOINC}|{c}" for c in codes)


def prefetch_templates(library: RuleLibrary) -> dict[str, str]:
    """Prefetch key -> FHIR query template; every key is needed for a complete evaluation."""
    vs = library.valuesets
    templates = {PATIENT_KEY: f"Patient/{PATIENT_TOKEN}"}
    for key, analytes, coded in _OBSERVATION_GROUPS:
        codes: list[str] = []
        for name in analytes:
            codes += sorted(vs.analytes[name].loinc)
        for name in coded:
            codes += sorted(vs.coded[name])
        unique = list(dict.fromkeys(codes))
        templates[key] = f"Observation?patient={PATIENT_TOKEN}&code={_loinc_list(unique)}&_sort=-date"
    for key, rtype in _SEARCHES:
        templates[key] = f"{rtype}?patient={PATIENT_TOKEN}"
    return templates


def _or_list(names: list[str]) -> str:
    return names[0] if len(names) < 2 else f"{', '.join(names[:-1])} or {names[-1]}"


def _drug_words(library: RuleLibrary) -> dict[str, str]:
    """Drug names in the service descriptions, from the catalogue: the agents with safety rules,
    and the per-kg HER2-directed agents that can be confused with one another."""
    catalogue = library.catalogue
    monitored = [a for a in catalogue.with_class("her2_directed") if catalogue.agents[a].safety_rulesets]
    per_kg = [
        a for a in monitored if (dose := catalogue.agents[a].dose) is not None and dose.basis == "mg/kg"
    ]
    return {
        "monitored": _or_list([catalogue.display(a) for a in monitored]),
        "confusable": "/".join(catalogue.display(a) for a in per_kg),
    }


def discovery(library: RuleLibrary, published: tuple[Service, ...]) -> dict[str, list[dict[str, object]]]:
    """The ``GET /cds-services`` body: one entry per (service, hook)."""
    templates = prefetch_templates(library)
    rulesets = [f"{r.name}@{r.version}" for r in library.rulesets]
    entries: list[dict[str, object]] = []
    for service in published:
        for hook in service.hooks:
            entries.append(
                {
                    "hook": hook,
                    "title": service.title,
                    "description": service.description.format(**_drug_words(library)),
                    "id": service.id,
                    "prefetch": dict(templates),
                    "usageRequirements": service.usage,
                }
            )
            if rulesets:
                entries[-1]["extension"] = {"org.her2-cds.rulesets": rulesets}
    return {"services": entries}

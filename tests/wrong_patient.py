"""Wrong-patient inputs shared by the CLI, CDS Hooks and cohort tests.

One sample, ``tdm1-platelets-grade4`` (on T-DM1, newest platelets 18 -> a critical grade-4 hold),
has its newest platelet count's ``subject`` rewritten. References that name the patient must keep
the hold; references to anyone else must exclude that result (listed in ``skipped``) and raise
``gap.other-patient-data`` — the findings are then exactly those of the chart without the result,
plus the gap.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from tests.conftest import SAMPLES

JSON = dict[str, Any]
SAMPLE = "tdm1-platelets-grade4"
PID = SAMPLE
SELF_URN = "urn:uuid:6c1f3f0e-3b7e-4d52-9d38-8f0b8f4f2a11"
GAP = "gap.other-patient-data"
HOLD = "alert.tdm1.platelets-grade4"
SKIP_REASON = "subject refers to another patient: not used"

# (name -> reference); "fullUrl urn" needs the Patient entry's fullUrl (Bundles only)
SELF_REFS = {
    "relative": f"Patient/{PID}",
    "versioned": f"Patient/{PID}/_history/3",
    "absolute": f"https://ehr.example.org/fhir/Patient/{PID}",
    "absolute versioned": f"https://ehr.example.org/fhir/Patient/{PID}/_history/12",
    "fullUrl urn": SELF_URN,
}
OTHER_REFS = {
    "relative": "Patient/someone-else",
    "relative, id extends this id": f"Patient/{PID}-2",
    "versioned": "Patient/someone-else/_history/2",
    "absolute": "https://ehr.example.org/fhir/Patient/someone-else",
    "absolute, dot segments": f"https://ehr.example.org/fhir/Patient/{PID}/../someone-else",
    "absolute versioned": "https://other.example/fhir/Patient/someone-else/_history/1",
    "urn of no entry": "urn:uuid:2f0a7b1e-0000-4000-8000-000000000001",
    "contained": "#p1",
}
HOOK_SELF_REFS = {k: v for k, v in SELF_REFS.items() if k != "fullUrl urn"}  # prefetch has no fullUrl


def bundle() -> JSON:
    """The sample Bundle, freshly decoded (tests mutate it)."""
    return dict(orjson.loads((SAMPLES / f"{SAMPLE}.json").read_bytes()))


def newest_platelets(doc: JSON) -> JSON:
    """The newest platelet Observation of a Bundle (the one that drives the hold)."""
    plts = [
        e["resource"]
        for e in doc["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any(c.get("code") == "777-3" for c in e["resource"]["code"]["coding"])
    ]
    return max(plts, key=lambda r: str(r["effectiveDateTime"]))


def variant(reference: str | None) -> JSON:
    """The sample with its newest platelets' subject set to ``reference`` (None: the result removed).
    The Patient entry's fullUrl is the self urn, so a reference to it names the patient."""
    doc = copy.deepcopy(bundle())
    target = newest_platelets(doc)
    for entry in doc["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["fullUrl"] = SELF_URN
    if reference is None:
        doc["entry"] = [e for e in doc["entry"] if e["resource"] is not target]
    else:
        target["subject"] = {"reference": reference}
    return doc


def resources(doc: JSON) -> list[JSON]:
    return [e["resource"] for e in doc["entry"]]


def platelets_ref() -> str:
    r = newest_platelets(bundle())
    return f"Observation/{r['id']}"

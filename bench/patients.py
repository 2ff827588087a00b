"""Benchmark patients built from the samples (deterministic, no randomness).

``lab_history_patient()`` is the on-treatment chart of the performance targets: the
``tdm1-platelets-not-recovered`` sample (metastatic, on T-DM1) plus a year of weekly CBCs
(platelets, ANC) and liver panels (AST, ALT, total bilirubin), 300 lab Observations in all. The
added draws are dated before the sample's own latest draw and hold unremarkable values, so the
findings are the sample's; the cost is the length of the history.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "tdm1-platelets-not-recovered"
LAB_CODES = ("777-3", "751-8", "1920-8", "1742-6", "1975-2")
# unremarkable values per analyte, cycled: platelets stay >= the sample's minimum since the last dose
_VALUES = {
    "777-3": (180, 165, 142, 120, 96, 88, 131, 150),
    "751-8": (3.1, 2.8, 2.2, 1.9, 2.5, 3.4),
    "1920-8": (24, 31, 38, 29, 35),
    "1742-6": (22, 28, 41, 33, 26),
    "1975-2": (0.6, 0.8, 0.9, 0.7),
}


def sample_resources(name: str = SAMPLE) -> list[dict[str, Any]]:
    """The resources of one fhir_samples bundle."""
    doc = orjson.loads((ROOT / "fhir_samples" / f"{name}.json").read_bytes())
    return [entry["resource"] for entry in doc["entry"]]


def lab_history_resources(labs: int = 300, variant: int = 0) -> list[dict[str, Any]]:
    """The sample's resources plus weekly lab draws back from 2026-10-28 until ``labs`` lab results.
    ``variant`` > 0 gives another patient of the same shape (own ids, own history values), as a
    cohort or a clinic's day of chart opens has."""
    resources = sample_resources()
    if variant:
        text = orjson.dumps(resources).replace(SAMPLE.encode(), f"{SAMPLE}-v{variant}".encode())
        resources = orjson.loads(text)
    templates = {
        r["code"]["coding"][0]["code"]: r
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] in LAB_CODES
    }
    have = sum(
        1
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] in LAB_CODES
    )
    drawn = datetime(2026, 10, 28, 7, 45, tzinfo=UTC)
    extra: list[dict[str, Any]] = []
    week = 0
    while have + len(extra) < labs:
        when = (drawn - timedelta(days=7 * week)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for code in LAB_CODES:
            if have + len(extra) >= labs:
                break
            lab = copy.deepcopy(templates[code])
            lab["id"] = f"hist-{variant}-{week}-{code}"
            lab["effectiveDateTime"] = when
            lab["issued"] = when.replace("T07:45", "T09:10")
            values = _VALUES[code]
            lab["valueQuantity"]["value"] = values[(week + variant) % len(values)]
            extra.append(lab)
        week += 1
    return resources + extra


def as_bundle(resources: list[dict[str, Any]]) -> bytes:
    """A collection Bundle of the resources, as bytes."""
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    )


def lab_history_patient(labs: int = 300, variant: int = 0) -> bytes:
    """The 300-lab T-DM1 patient as a Bundle."""
    return as_bundle(lab_history_resources(labs, variant))

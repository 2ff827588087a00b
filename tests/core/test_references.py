"""Another patient's data never drives a finding (`cds evaluate`): which references name the patient."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from cds.fhir.refs import PatientIdentity, other_patient_reference
from tests.conftest import ROOT
from tests.wrong_patient import (
    GAP,
    HOLD,
    OTHER_REFS,
    SELF_REFS,
    SELF_URN,
    SKIP_REASON,
    platelets_ref,
    variant,
)

CDS = [sys.executable, "-c", "from cds.cli import main; main()"]
ME = PatientIdentity("p1", frozenset({"urn:uuid:aaaa", "https://ehr.example/fhir/Patient/p1"}))


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "Patient/p1/_history/7",
        "https://ehr.example/fhir/Patient/p1",
        "http://other.example:8080/r4/Patient/p1/_history/2",
        "urn:uuid:aaaa",
        " Patient/p1 ",
    ],
)
def test_references_naming_the_patient(reference: str) -> None:
    assert other_patient_reference({"subject": {"reference": reference}}, ME) is None


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p2",
        "Patient/p1x",
        "Patient/p2/_history/1",
        "https://ehr.example/fhir/Patient/p2",
        "https://ehr.example/fhir/Patient/p1/../p2",
        "https://ehr.example/fhir/Patient/p1?x=1",
        "urn:uuid:bbbb",
        "urn:oid:1.2.3",
        "#contained-patient",
        "Patient",
    ],
)
def test_references_naming_another_patient(reference: str) -> None:
    assert other_patient_reference({"patient": {"reference": reference}}, ME) == "patient"


@pytest.mark.parametrize(
    "subject", [{"reference": "Group/g1"}, {"display": "J. Doe"}, {"identifier": {}}, "x"]
)
def test_non_patient_subjects_are_not_judged(subject: object) -> None:
    assert other_patient_reference({"subject": subject}, ME) is None


def test_patient_without_id_is_named_only_by_its_full_url() -> None:
    anonymous = PatientIdentity(None, frozenset({"urn:uuid:cccc"}))
    assert other_patient_reference({"subject": {"reference": "urn:uuid:cccc"}}, anonymous) is None
    assert other_patient_reference({"subject": {"reference": "Patient/None"}}, anonymous) == "subject"


def test_cds_evaluate_uses_only_the_patients_own_data(tmp_path: Path) -> None:
    """Every reference form through the real CLI in one run (one file per form, in name order)."""
    cases = {f"self {k}": v for k, v in SELF_REFS.items()} | {f"other {k}": v for k, v in OTHER_REFS.items()}
    names = {}
    for i, (case, reference) in enumerate(sorted(cases.items())):
        names[f"{i:02d}.json"] = case
        (tmp_path / f"{i:02d}.json").write_bytes(orjson.dumps(variant(reference)))
    (tmp_path / "zz-removed.json").write_bytes(orjson.dumps(variant(None)))
    proc = subprocess.run(
        [*CDS, "evaluate", str(tmp_path), "-f", "json", "--as-of", "2026-11-01"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(cases) + 1
    without = [f["code"] for f in results[-1]["findings"]]
    assert HOLD not in without
    plt = platelets_ref()
    used = 0
    for (file, case), result in zip(sorted(names.items()), results, strict=False):
        codes = [f["code"] for f in result["findings"]]
        if case.startswith("self"):
            assert codes == [HOLD, "info.on-therapy"], (file, case)
            assert result["skipped"] == [], case
        else:
            assert sorted(codes) == sorted([*without, GAP]), case
            assert {"resource": plt, "reason": SKIP_REASON} in result["skipped"], case
            used += HOLD in codes
    assert used == 0


def test_self_urn_is_recognised_only_as_the_patient_entrys_full_url(tmp_path: Path) -> None:
    doc = variant(SELF_URN)
    for entry in doc["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    path = tmp_path / "p.json"
    path.write_bytes(orjson.dumps(doc))
    proc = subprocess.run(
        [*CDS, "evaluate", str(path), "-f", "json", "--as-of", "2026-11-01"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    codes = [f["code"] for f in json.loads(proc.stdout)["findings"]]
    assert GAP in codes and HOLD not in codes

"""FHIR-native results: R4 resources that validate, carry every finding, and are deterministic."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from cds.cli import app
from cds.findings.fhir_out import LIBRARY, findings_from_guidance
from tests.cohort.helpers import SAMPLES, run, table

SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}


def _cli(fmt: str) -> Any:
    result = CliRunner().invoke(app, ["evaluate", str(SAMPLES), "--format", fmt, "--as-of", "2026-11-01"])
    assert result.exit_code == 0, result.output
    return result.stdout


def _check_patient(resources: list[dict[str, Any]], evaluation: dict[str, Any]) -> None:
    """The resources of one patient say exactly what its ``--format json`` evaluation says."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(r)
    [guidance] = by_type["GuidanceResponse"]
    findings = evaluation["findings"]
    assert findings_from_guidance(guidance) == [f["code"] for f in findings]
    assert guidance["subject"] == {"reference": evaluation["patient"]}
    assert guidance["occurrenceDateTime"] == evaluation["as_of"]
    assert guidance["moduleCanonical"].startswith(LIBRARY + "|")
    rulesets = [p["valueString"] for p in guidance["contained"][0]["parameter"] if p["name"] == "ruleset"]
    assert rulesets == [f"{r['name']}|{r['version']}" for r in evaluation["rulesets"]]
    gaps = any(f["kind"] == "data-gap" for f in findings)
    assert guidance["status"] == ("data-required" if gaps else "success")
    alerts = [f for f in findings if f["kind"] == "alert"]
    issues = by_type["DetectedIssue"]
    assert [i["code"]["coding"][0]["code"] for i in issues] == [a["code"] for a in alerts]
    for issue, alert in zip(issues, alerts, strict=True):
        assert issue["severity"] == SEVERITY[alert["severity"]]
        assert issue["detail"] == alert["detail"]
        assert issue["patient"] == {"reference": evaluation["patient"]}
        basis_refs = [r for b in alert["basis"] for r in b["resources"]]
        assert [x["reference"] for x in issue.get("implicated", [])] == list(dict.fromkeys(basis_refs))
        assert [e["code"][0]["coding"][0]["code"] for e in issue["evidence"]] == [
            b["fact"] for b in alert["basis"]
        ]
    recommendations = [f for f in findings if f["kind"] == "recommendation"]
    if recommendations:
        [group] = by_type["RequestGroup"]
        assert guidance["result"] == {"reference": f"RequestGroup/{group['id']}"}
        assert (group["intent"], group["status"]) == ("proposal", "draft")
        assert [a["code"][0]["coding"][0]["code"] for a in group["action"]] == [
            r["code"] for r in recommendations
        ]
    else:
        assert "RequestGroup" not in by_type and "result" not in guidance


def test_evaluate_format_fhir_is_a_valid_transaction_bundle_carrying_every_finding() -> None:
    text = _cli("fhir")
    bundle = orjson.loads(text)
    Bundle.model_validate(bundle)  # the whole transaction validates as R4 (R4B models)
    assert bundle["type"] == "transaction"
    resources = [e["resource"] for e in bundle["entry"]]
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"} for r in resources
    ]
    ids = [(r["resourceType"], r["id"]) for r in resources]
    assert len(ids) == len(set(ids))
    evaluations = orjson.loads(_cli("json"))
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        by_patient[(r.get("subject") or r.get("patient"))["reference"]].append(r)
    assert sorted(by_patient) == sorted(e["patient"] for e in evaluations)
    for evaluation in evaluations:
        _check_patient(by_patient[evaluation["patient"]], evaluation)
    issue = next(
        r
        for r in resources
        if r["resourceType"] == "DetectedIssue"
        and r["patient"]["reference"] == "Patient/tdm1-platelets-grade3"
    )
    assert issue["evidence"][-1]["code"][0]["text"] == "platelets 42 ×10³/µL on 31 Oct"
    assert issue["implicated"][-1] == {"reference": "Observation/tdm1-platelets-grade3-obs17"}
    # Deterministic: the same evaluation gives the same bytes (and so the same ids).
    assert _cli("fhir") == text


def test_cohort_format_fhir_writes_importable_ndjson_equal_to_evaluate(tmp_path: Path) -> None:
    summary = run(SAMPLES, tmp_path / "out", fhir=True).data
    folder = tmp_path / "out" / "fhir"
    written: list[dict[str, Any]] = []
    for rtype in ("GuidanceResponse", "DetectedIssue", "RequestGroup"):
        lines = (folder / f"{rtype}.ndjson").read_bytes().splitlines()
        assert summary["fhir_resources"][rtype] == len(lines)
        model = get_fhir_model_class(rtype)
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == rtype
            model.model_validate(resource)
            written.append(resource)
    assert summary["fhir_resources"]["GuidanceResponse"] == 86
    findings = table(tmp_path / "out", "findings")
    alerts = sum(1 for k in findings["kind"].to_pylist() if k == "alert")
    assert summary["fhir_resources"]["DetectedIssue"] == alerts
    # Round trip: the finding codes of each GuidanceResponse are the patient's rows in findings.
    expected: dict[str, list[str]] = defaultdict(list)
    for patient, code in zip(findings["patient"].to_pylist(), findings["code"].to_pylist(), strict=True):
        expected[f"Patient/{patient}"].append(code)
    guidance = {r["subject"]["reference"]: r for r in written if r["resourceType"] == "GuidanceResponse"}
    assert {p: sorted(findings_from_guidance(g)) for p, g in guidance.items()} == {
        p: sorted(c) for p, c in expected.items()
    } | {p: [] for p in guidance if p not in expected}
    # The cohort writes exactly the resources `cds evaluate --format fhir` gives.
    bundle = orjson.loads(_cli("fhir"))
    key = lambda r: (r["resourceType"], r["id"])  # noqa: E731
    assert sorted(written, key=key) == sorted((e["resource"] for e in bundle["entry"]), key=key)

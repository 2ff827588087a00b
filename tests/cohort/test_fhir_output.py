"""FHIR-native results: `cds evaluate --format fhir` and `cds cohort run --format fhir` emit R4
resources (GuidanceResponse, DetectedIssue per alert, RequestGroup) that validate, carry the same
finding codes as the JSON output, and are byte-identical on every run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from typer.testing import CliRunner

from cds.cli import app
from cds.cohort.outputs import read_table
from cds.cohort.runner import CohortError
from cds.findings.fhir_out import FACT_SYSTEM, LIBRARY, finding_codes
from tests.cohort.helpers import SAMPLES, run

# alerts with basis values, data gaps, recommendations with regimens, a skipped resource
NAMES = [
    "tdm1-platelets-grade3",
    "pertuzumab-trastuzumab-lvef-hold",
    "gap-lvef-overdue",
    "mbc-second-line",
    "mbc-first-line",
    "rw-malformed-invalid-platelets",
    "her2-zero",
]
SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}
runner = CliRunner()


def _folder(tmp: Path) -> Path:
    folder = tmp / "bundles"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(SAMPLES / f"{name}.json", folder / f"{name}.json")
    return folder


def _evaluate(folder: Path, fmt: str) -> bytes:
    result = runner.invoke(app, ["evaluate", str(folder), "--format", fmt, "--as-of", "2026-11-01"])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _valid(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_evaluate_format_fhir_is_a_valid_transaction_that_round_trips_the_finding_codes(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path)
    raw = _evaluate(folder, "fhir")
    assert _evaluate(folder, "fhir") == raw  # byte-identical on re-run
    bundle = orjson.loads(raw)
    _valid(bundle)
    assert bundle["type"] == "transaction"
    resources = [e["resource"] for e in bundle["entry"]]
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"} for r in resources
    ]
    assert len({(r["resourceType"], r["id"]) for r in resources}) == len(resources)
    by_id = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    evaluations = {doc["patient"]: doc for doc in orjson.loads(_evaluate(folder, "json"))}
    guidance = [r for r in resources if r["resourceType"] == "GuidanceResponse"]
    assert sorted(g["subject"]["reference"] for g in guidance) == sorted(evaluations)
    for g in guidance:
        _valid(g)
        ev = evaluations[g["subject"]["reference"]]
        findings = ev["findings"]
        assert finding_codes(g) == [f["code"] for f in findings]
        assert (
            g["moduleCanonical"].startswith(f"{LIBRARY}|") and len(g["moduleCanonical"]) == len(LIBRARY) + 13
        )
        assert g["occurrenceDateTime"] == ev["as_of"] == "2026-11-01T23:59:59Z"
        assert g["status"] == (
            "data-required" if any(f["kind"] == "data-gap" for f in findings) else "success"
        )
        [params] = [c for c in g["contained"] if c["id"] == "findings"]
        rulesets = [p["valueCanonical"] for p in params["parameter"] if p["name"] == "ruleset"]
        assert rulesets == [
            f"https://her2-cds.org/fhir/Library/{r['name']}|{r['version']}" for r in ev["rulesets"]
        ]
        assert ("evaluationMessage" in g) == bool(ev["skipped"])
        # one DetectedIssue per alert: severity, detail, implicated resources, the basis as evidence
        alerts = [f for f in findings if f["kind"] == "alert"]
        issues = [
            by_id[part["valueReference"]["reference"]]
            for p in params["parameter"]
            if p["name"] == "finding"
            for part in p["part"]
            if part["name"] == "detectedIssue"
        ]
        assert [i["code"]["coding"][0]["code"] for i in issues] == [a["code"] for a in alerts]
        for issue, alert in zip(issues, alerts, strict=True):
            assert issue["severity"] == SEVERITY[alert["severity"]]
            assert issue["patient"]["reference"] == ev["patient"] and issue["detail"]
            assert [e["code"][0]["coding"][0] for e in issue["evidence"]] == [
                {"system": FACT_SYSTEM, "code": b["fact"]} for b in alert["basis"]
            ]
            assert {i["reference"] for i in issue["implicated"]} == {
                r for b in alert["basis"] for r in b["resources"]
            }
        # the RequestGroup proposes each recommended regimen
        recommended = [f for f in findings if f["kind"] == "recommendation"]
        if recommended:
            group = by_id[g["result"]["reference"]]
            assert [a["code"][0]["coding"][0]["code"] for a in group["action"]] == [
                f["code"] for f in recommended
            ]
            assert group["intent"] == "proposal" and group["subject"]["reference"] == ev["patient"]
        else:
            assert "result" not in g
    thrombo = next(
        r for r in resources if r["resourceType"] == "DetectedIssue" and "T-DM1" in r["code"]["text"]
    )
    assert thrombo["code"]["text"] == "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct 2026"
    assert "Platelets 42 ×10³/µL on 31 Oct 2026" in [e["code"][0]["text"] for e in thrombo["evidence"]]
    group = next(
        r
        for r in resources
        if r["subject"]["reference"] == "Patient/mbc-second-line" and r["resourceType"] == "RequestGroup"
    )
    proposed = [c for c in group["contained"] if c["resourceType"] == "MedicationRequest"]
    assert [a["action"][0]["resource"]["reference"] for a in group["action"]] == [
        f"#{c['id']}" for c in proposed
    ]


def _lines(folder: Path) -> dict[str, list[bytes]]:
    return {p.stem: p.read_bytes().splitlines() for p in sorted(folder.glob("*.ndjson"))}


def test_cohort_format_fhir_writes_the_same_resources_as_evaluate_as_ndjson(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    args = ["cohort", "run", str(folder), "--out", str(out), "--format", "fhir", "--as-of", "2026-11-01"]
    result = runner.invoke(app, [*args, "-j", "1", "--no-progress", "--no-report"])
    assert result.exit_code == 0, result.output
    got = _lines(tmp_path / "out" / "fhir")
    assert sorted(got) == ["DetectedIssue", "GuidanceResponse", "RequestGroup"]
    assert (tmp_path / "out" / "findings.parquet").exists()  # the tables are still written
    expected: dict[str, list[dict[str, Any]]] = {}
    for entry in orjson.loads(_evaluate(folder, "fhir"))["entry"]:
        expected.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    for rtype, lines in got.items():
        resources = [orjson.loads(line) for line in lines]
        for r in resources:
            _valid(r)
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(resources, key=key) == sorted(expected[rtype], key=key), rtype
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["fhir_resources"] == {t: len(v) for t, v in got.items()} | {"GuidanceResponse": len(NAMES)}
    # Another run (two partitions, two processes) writes the same bytes.
    run(folder, tmp_path / "again", fhir=True, partition_size=3, processes=2)
    assert _lines(tmp_path / "again" / "fhir") == got
    # A resume must not mix FHIR and non-FHIR partitions; a plain run drops stale fhir/ files.
    with pytest.raises(CohortError, match="fhir"):
        run(folder, tmp_path / "again", partition_size=3, resume=True)
    run(folder, tmp_path / "again", partition_size=3)
    assert not (tmp_path / "again" / "fhir").exists()


def test_every_sample_patients_finding_codes_round_trip_through_its_guidance_response(tmp_path: Path) -> None:
    summary = run(SAMPLES, tmp_path / "out", fhir=True, processes=2, partition_size=40).data
    findings = read_table(tmp_path / "out", "findings")
    expected: dict[str, list[str]] = {}
    for patient, code in zip(findings["patient"].to_pylist(), findings["code"].to_pylist(), strict=True):
        expected.setdefault(f"Patient/{patient}", []).append(code)
    lines = (tmp_path / "out" / "fhir" / "GuidanceResponse.ndjson").read_bytes().splitlines()
    assert len(lines) == summary["evaluated"] == len(list(SAMPLES.glob("*.json")))
    for line in lines:
        guidance = orjson.loads(line)
        assert finding_codes(guidance) == expected.get(guidance["subject"]["reference"], [])

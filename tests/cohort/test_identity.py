"""Cohort results are exactly per-patient results, whatever the input shape and executor."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from cds import Evaluator
from cds.cli import app
from tests.cohort.helpers import SAMPLES, bundles_to_bulk, direct_digests, run, table

BUNDLES = sorted(SAMPLES.glob("*.json"))
# The real-world corpus (rw-*) holds what a per-type Bulk export cannot carry as the same bundle:
# entries without a resourceType, urn:uuid and versioned references, other patients' resources.
# Bulk identity is proven on the synthetic samples; the folder test covers every sample.
BULK_BUNDLES = [p for p in BUNDLES if not p.name.startswith("rw-")]


def test_bundle_folder_equals_cds_evaluate(tmp_path: Path) -> None:
    summary = run(SAMPLES, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (
        len(BUNDLES),
        len(BUNDLES),
        0,
    )
    assert summary["reconciled"] is True
    # `cds evaluate DIR --format json` prints one Evaluation.to_json() per file, in file order.
    result = CliRunner().invoke(app, ["evaluate", str(SAMPLES), "--format", "json", "--as-of", "2026-11-01"])
    assert result.exit_code == 0, result.output
    expected = {
        doc["patient"].removeprefix("Patient/"): hashlib.sha256(
            orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        ).hexdigest()
        for doc in orjson.loads(result.stdout)
    }
    patients = table(tmp_path / "out", "patients")
    got = dict(zip(patients["patient"].to_pylist(), patients["evaluation_sha256"].to_pylist(), strict=True))
    assert got == expected
    # One findings row per finding of the CLI output, same codes per patient.
    findings = table(tmp_path / "out", "findings")
    cli_codes = sorted(
        (doc["patient"].removeprefix("Patient/"), f["code"])
        for doc in orjson.loads(result.stdout)
        for f in doc["findings"]
    )
    assert (
        sorted(zip(findings["patient"].to_pylist(), findings["code"].to_pylist(), strict=True)) == cli_codes
    )
    assert summary["findings"] == len(cli_codes) == findings.num_rows


def test_bulk_ndjson_equals_per_patient_evaluation(tmp_path: Path, evaluator: Evaluator) -> None:
    counts = bundles_to_bulk(BULK_BUNDLES, tmp_path / "export")
    summary = run(tmp_path / "export", tmp_path / "out", partition_size=17).data
    assert summary["lines"]["lines"] == sum(counts.values())
    assert summary["lines"]["grouped"] == sum(counts.values())
    assert (summary["patients_in"], summary["evaluated"], summary["partitions"]) == (86, 86, 6)
    patients = table(tmp_path / "out", "patients")
    got = dict(zip(patients["patient"].to_pylist(), patients["evaluation_sha256"].to_pylist(), strict=True))
    assert got == direct_digests(evaluator, BULK_BUNDLES)


def test_one_process_two_processes_and_dask_agree(tmp_path: Path) -> None:
    bundles_to_bulk(BULK_BUNDLES, tmp_path / "export")
    outs = {
        "one": run(tmp_path / "export", tmp_path / "one", partition_size=20).data,
        "two": run(tmp_path / "export", tmp_path / "two", partition_size=20, processes=2).data,
        "dask": run(tmp_path / "export", tmp_path / "dask", partition_size=20, dask_local=2).data,
    }
    assert {k: v["executor"] for k, v in outs.items()} == {
        "one": "process-pool(1)",
        "two": "process-pool(2)",
        "dask": "dask-local(2 workers)",
    }
    for name in ("findings", "patients"):
        reference = table(tmp_path / "one", name)
        assert reference.num_rows > 0
        for other in ("two", "dask"):
            assert table(tmp_path / other, name).equals(reference), (name, other)
    assert all(v["evaluated"] == 86 and v["reconciled"] for v in outs.values())


def test_csv_format_has_the_same_rows(tmp_path: Path) -> None:
    run(SAMPLES, tmp_path / "pq")
    run(SAMPLES, tmp_path / "csv", fmt="csv")
    assert (tmp_path / "csv" / "findings.csv").exists() and not (
        tmp_path / "csv" / "findings.parquet"
    ).exists()
    for name in ("findings", "patients"):
        assert table(tmp_path / "csv", name).equals(table(tmp_path / "pq", name))


def test_patient_rows_carry_the_facts(tmp_path: Path) -> None:
    run(SAMPLES, tmp_path / "out")
    patients = table(tmp_path / "out", "patients")
    rows = {r["patient"]: r for r in patients.to_pylist()}
    thrombo = rows["tdm1-platelets-grade3"]
    assert (thrombo["her2_category"], thrombo["setting"], thrombo["on_agents"], thrombo["on_drug"]) == (
        "positive",
        "metastatic",
        "tdm1",
        "T-DM1",
    )
    assert thrombo["platelets"] is not None and 25 <= thrombo["platelets"] < 50
    assert "alert.tdm1.platelets-grade3" in (thrombo["action_codes"] or "").split()
    assert thrombo["needs_action"] is True and thrombo["worst_severity"] == "critical"
    findings = table(tmp_path / "out", "findings")
    mask = pc.and_(
        pc.equal(findings["patient"], "tdm1-platelets-grade3"),
        pc.equal(findings["code"], "alert.tdm1.platelets-grade3"),
    )
    row = findings.filter(mask).to_pylist()[0]
    assert (row["kind"], row["severity"], row["action"]) == ("alert", "critical", "hold")
    assert "labs.platelets.value=" in row["key_facts"] and "Observation/" in row["resources"]


@pytest.mark.parametrize("suffix", ["", "/_history/2"], ids=["plain", "versioned"])
def test_bulk_medication_referenced_by_its_id_is_joined_to_the_patient(
    tmp_path: Path, evaluator: Evaluator, suffix: str
) -> None:
    """rw-bundled-medication names T-DM1 only through Medication/<id> (Medication.ndjson of the
    export), plainly or versioned: the cohort joins it to the patient and finds what a per-patient
    evaluation finds, with no record skipped as unreadable."""
    doc = orjson.loads((SAMPLES / "rw-bundled-medication.json").read_bytes())
    for entry in doc["entry"]:
        ref = entry["resource"].get("medicationReference")
        if ref:
            ref["reference"] += suffix
    bundle = tmp_path / "rw-bundled-medication.json"
    bundle.write_bytes(orjson.dumps(doc))
    bundles_to_bulk([bundle], tmp_path / "export")
    summary = run(tmp_path / "export", tmp_path / "out").data
    assert (summary["evaluated"], summary["skipped_resources"], summary["lines"]["medications"]) == (1, 0, 1)
    patients = table(tmp_path / "out", "patients")
    assert patients["evaluation_sha256"].to_pylist() == list(direct_digests(evaluator, [bundle]).values())

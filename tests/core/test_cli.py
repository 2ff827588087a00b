"""The command line as a user runs it: real subprocesses, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES
from tests.external import external

CDS = [sys.executable, "-c", "from cds.cli import main; main()"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CDS, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_clean_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), proc.stderr
    assert needle in " ".join(proc.stderr.split()), proc.stderr


def test_evaluate_json_matches_the_output_contract() -> None:
    proc = run("evaluate", str(SAMPLES / "mbc-second-line.json"), "--format", "json", "--as-of", "2026-11-01")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["patient", "as_of", "rulesets", "findings", "skipped"]
    assert data["patient"] == "Patient/mbc-second-line"
    assert data["as_of"] == "2026-11-01T23:59:59Z"
    assert [f["code"] for f in data["findings"]] == ["rec.mbc2.tdm1", "rec.mbc2.tdxd"]
    tdxd = data["findings"][1]
    assert tdxd["strength"] == "preferred" and tdxd["regimen"] == "t-dxd" and tdxd["severity"] == "info"
    assert tdxd["rule"] == {
        "id": "rec.mbc2.tdxd",
        "version": "1.4.0",
        "ruleset": "her2-therapy",
        "evidence_status": "verified",
    }
    assert tdxd["evidence"][0]["label"] == "DESTINY-Breast03"
    assert {"fact": "her2.category", "value": "positive"}.items() <= tdxd["basis"][0].items()


def test_evaluate_several_files_prints_a_json_array() -> None:
    files = [str(SAMPLES / "mbc-first-line.json"), str(SAMPLES / "her2-zero.json")]
    proc = run("evaluate", *files, "--format", "json", "--as-of", "2026-11-01")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [d["patient"] for d in data] == ["Patient/mbc-first-line", "Patient/her2-zero"]


def test_evaluate_with_a_draft_order_runs_the_order_checks() -> None:
    proc = run(
        "evaluate",
        str(SAMPLES / "order-tdm1-name-confusion.json"),
        "--order",
        str(SAMPLES / "orders" / "order-tdm1-name-confusion.order.json"),
        "--format",
        "json",
        "--as-of",
        "2026-11-01",
    )
    assert proc.returncode == 0, proc.stderr
    codes = [f["code"] for f in json.loads(proc.stdout)["findings"]]
    assert codes[:2] == ["order.dose-out-of-range", "order.name-confusion"]


def test_table_output_names_the_patient_and_the_findings() -> None:
    proc = run("evaluate", str(SAMPLES / "tdm1-platelets-grade3.json"), "--as-of", "2026-11-01")
    assert proc.returncode == 0, proc.stderr
    assert "Patient/tdm1-platelets-grade3" in proc.stdout
    assert "alert.tdm1.platelets-grade3" in proc.stdout and "hold" in proc.stdout


def test_trace_shows_why_rules_did_not_fire() -> None:
    proc = run("evaluate", str(SAMPLES / "mbc-first-line.json"), "--as-of", "2026-11-01", "--trace")
    assert proc.returncode == 0, proc.stderr
    assert "lines.effective = 0 does not satisfy lines.effective == 1" in " ".join(proc.stdout.split())


def test_rules_list_shows_rulesets_versions_status_and_rule_ids() -> None:
    proc = run("rules", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = {rs["ruleset"]: rs for rs in json.loads(proc.stdout)}
    assert data["her2-therapy"]["version"] == "1.4.0" and data["her2-therapy"]["status"] == "approved"
    assert "rec.mbc2.tdxd" in {r["id"] for r in data["her2-therapy"]["rules"]}
    table = run("rules", "list")
    assert table.returncode == 0 and "tdm1-safety" in table.stdout


def test_help_teaches_the_options() -> None:
    proc = run("evaluate", "--help")
    assert proc.returncode == 0
    for option in ("--format", "--as-of", "--order", "--rules", "--trace"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"this is not json {", "not JSON"),
        (b'{"hello": "world"}', "not FHIR"),
        (b"[1, 2, 3]", "not FHIR"),
        (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "no Patient resource"),
        (
            b'{"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}',
            "no Patient",
        ),
        (
            b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "a"}},'
            b' {"resource": {"resourceType": "Patient", "id": "b"}}]}',
            "2 Patient resources",
        ),
        (
            b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "a"}},'
            b' {"resource": {"resourceType": "DiagnosticOrder", "id": "d"}}]}',
            "'DiagnosticOrder' does not exist in FHIR R4",
        ),
    ],
    ids=[
        "not-json",
        "not-fhir-object",
        "not-fhir-array",
        "no-patient",
        "lone-observation",
        "two-patients",
        "dstu2",
    ],
)
def test_bad_input_is_rejected_with_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    assert_clean_error(run("evaluate", str(path), "--as-of", "2026-11-01"), needle)


def test_dstu2_file_from_the_wild_is_rejected() -> None:
    path = external("mcode-pathways/Maureen.json")
    assert_clean_error(run("evaluate", str(path)), "'MedicationOrder' does not exist in FHIR R4")


def test_unreadable_file_is_rejected(tmp_path: Path) -> None:
    assert_clean_error(run("evaluate", str(tmp_path / "missing.json")), "cannot read")


def test_bad_as_of_is_rejected() -> None:
    assert_clean_error(run("evaluate", str(SAMPLES / "her2-zero.json"), "--as-of", "yesterday"), "as-of")


def test_a_broken_rule_file_names_file_line_rule_and_field(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    subprocess.run(["cp", "-r", str(ROOT / "rules"), str(rules)], check=True)
    path = rules / "tdxd-safety.yaml"
    text = path.read_text(encoding="utf-8").replace(
        'labs.anc.value: {">=": $anc_grade4_below}', 'labs.anc.valu: {">=": $anc_grade4_below}'
    )
    path.write_text(text, encoding="utf-8")
    proc = run("rules", "list", "--rules", str(rules))
    assert proc.returncode == 2
    assert "tdxd-safety.yaml:" in proc.stderr and "rule alert.tdxd.neutrophils-grade3" in proc.stderr
    assert "unknown fact path 'labs.anc.valu'" in proc.stderr and "Traceback" not in proc.stderr


def test_clinical_content_page_matches_the_rule_files() -> None:
    proc = run("rules", "list", "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    page = (ROOT / "docs" / "clinical-content.md").read_text(encoding="utf-8")
    assert proc.stdout == page, "regenerate: cds rules list --format markdown > docs/clinical-content.md"

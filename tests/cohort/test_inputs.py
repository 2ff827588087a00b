"""Messy inputs: every line and every patient is accounted for; real external data never crashes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cds.cohort.runner import CohortError
from cds.cohort.synth import write_cohort
from tests.cohort.helpers import AS_OF, SAMPLES, errors, run, table
from tests.external import bulk_export, bundles, find


def _line(resource: dict[str, object]) -> bytes:
    return orjson.dumps(resource) + b"\n"


def _messy_export(root: Path) -> None:
    root.mkdir()
    good = orjson.loads((SAMPLES / "tdm1-platelets-grade3.json").read_bytes())
    resources = [e["resource"] for e in good["entry"]]
    by_type: dict[str, list[bytes]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(_line(r))
    by_type["Patient"] += [
        _line({"resourceType": "Patient", "id": "dstu2", "gender": "female"}),
        _line({"resourceType": "Patient", "gender": "female"}),  # line 3: no id
    ]
    by_type["Observation"] += [
        b'{"resourceType": "Observation", "id": "broken"\n',  # bad JSON
        _line({"resourceType": "Observation", "id": "nosubj", "status": "final", "code": {"text": "x"}}),
        _line(
            {
                "resourceType": "Observation",
                "id": "orphan",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient/ghost"},
            }
        ),
        b'["not", "a", "resource"]\n',
    ]
    for rtype, lines in by_type.items():
        (root / f"{rtype}.000.ndjson").write_bytes(b"".join(lines))
    (root / "MedicationOrder.000.ndjson").write_bytes(
        _line({"resourceType": "MedicationOrder", "id": "old", "patient": {"reference": "Patient/dstu2"}})
        + _line({"resourceType": "FooBar", "id": "f1"})
    )
    (root / "Practitioner.000.ndjson").write_bytes(_line({"resourceType": "Practitioner", "id": "dr1"}) * 2)
    (root / "log.ndjson").write_bytes(b'{"exportId": "x", "eventId": "kickoff"}\n')


def test_malformed_lines_land_in_errors_with_line_numbers(tmp_path: Path) -> None:
    _messy_export(tmp_path / "export")
    summary = run(tmp_path / "export", tmp_path / "out").data
    # The MedicationOrder file name is not an R4 type: like the log, it is reported, not read.
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (3, 2, 1)
    assert summary["reconciled"] is True
    assert summary["lines"]["dropped"] == 4 and summary["lines"]["unlinked"] == 2
    found = {
        (e["kind"], Path(e["file"]).name if e["file"] else None, e["line"]) for e in errors(tmp_path / "out")
    }
    obs_lines = (tmp_path / "export" / "Observation.000.ndjson").read_bytes().splitlines()
    first_bad = len(obs_lines) - 3
    assert ("bad-json", "Observation.000.ndjson", first_bad) in found
    assert ("no-patient-reference", "Observation.000.ndjson", first_bad + 1) in found
    assert ("not-a-resource", "Observation.000.ndjson", first_bad + 3) in found
    assert ("no-patient-reference", "Patient.000.ndjson", 3) in found
    assert ("not-a-resource-file", "log.ndjson", None) in found
    assert ("not-a-resource-file", "MedicationOrder.000.ndjson", None) in found
    assert ("not-patient-data", "Practitioner.000.ndjson", None) in found
    rejected = {
        e["patient"]: e["reason"] for e in errors(tmp_path / "out") if e["kind"] == "rejected-patient"
    }
    assert set(rejected) == {"ghost"}
    assert "no Patient resource" in rejected["ghost"]
    patients = table(tmp_path / "out", "patients")
    assert patients["patient"].to_pylist() == ["dstu2", "tdm1-platelets-grade3"]


def test_non_r4_line_with_a_patient_rejects_that_patient(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    (root / "Patient.000.ndjson").write_bytes(
        _line({"resourceType": "Patient", "id": "a"}) + _line({"resourceType": "Patient", "id": "b"})
    )
    (root / "Observation.000.ndjson").write_bytes(
        _line({"resourceType": "MedicationOrder", "id": "m", "patient": {"reference": "Patient/a"}})
        + _line({"resourceType": "FooBar", "id": "f"})
    )
    summary = run(root, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (2, 1, 1)
    records = errors(tmp_path / "out")
    assert [(e["kind"], e["line"], e["patient"]) for e in records if e["stage"] == "ingest"] == [
        ("unknown-type", 1, "Patient/a"),
        ("unknown-type", 2, None),
    ]
    [rejection] = [e for e in records if e["kind"] == "rejected-patient"]
    assert rejection["patient"] == "a" and "MedicationOrder" in rejection["reason"]


def test_smart_bulk_export_and_its_log(tmp_path: Path) -> None:
    source, _complete = bulk_export()  # vendored: Patient and Condition; the full export when present
    summary = run(source, tmp_path / "out", processes=2, partition_size=5).data
    lines = sum(len(p.read_bytes().splitlines()) for p in source.glob("*.000.ndjson"))
    patients = len((source / "Patient.000.ndjson").read_bytes().splitlines())
    assert summary["lines"]["lines"] == lines and summary["lines"]["grouped"] == lines
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (patients, patients, 0)
    [log] = errors(tmp_path / "out")
    assert (log["kind"], Path(log["file"]).name) == ("not-a-resource-file", "log.ndjson")


def test_external_bundles_invalid_or_dstu2_are_rejected_not_crashing(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    # the vendored files, plus any large ones present on this machine
    files = [path for path in map(find, bundles()) if path is not None]
    for f in files:
        shutil.copy(f, folder / f"{f.parent.name}--{f.name}")
    summary = run(folder, tmp_path / "out").data
    assert summary["patients_in"] == len(files) and summary["reconciled"] is True
    rejected = {
        Path(e["file"]).name: e["reason"] for e in errors(tmp_path / "out") if e["kind"] == "rejected-patient"
    }
    assert (
        "mcode-pathways--Maureen.json" in rejected
        and "MedicationOrder" in rejected["mcode-pathways--Maureen.json"]
    )
    assert summary["evaluated"] + len(rejected) == len(files)
    assert not [e for e in errors(tmp_path / "out") if e["kind"] == "evaluation-failed"]


def test_jsonl_of_bundles(tmp_path: Path) -> None:
    bundles = sorted(SAMPLES.glob("*.json"))[:5]
    source = tmp_path / "cohort.jsonl"
    source.write_bytes(
        b"".join(orjson.dumps(orjson.loads(p.read_bytes())) + b"\n" for p in bundles) + b"{oops\n"
    )
    summary = run(source, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (6, 5, 1)
    [bad] = [e for e in errors(tmp_path / "out") if e["kind"] == "rejected-patient"]
    assert bad["file"].endswith("cohort.jsonl:line 6") and "not JSON" in bad["reason"]


def test_resume_skips_finished_partitions_and_refuses_a_changed_run(tmp_path: Path) -> None:
    first = run(SAMPLES, tmp_path / "out", partition_size=20).data
    reference = table(tmp_path / "out", "findings")
    for leftover in (tmp_path / "out" / "parts").glob("part-00002.*"):
        leftover.unlink()
    again = run(SAMPLES, tmp_path / "out", partition_size=20, resume=True).data
    assert again["timings"]["resumed_partitions"] == first["partitions"] - 1
    assert again["patients_in"] == len(list(SAMPLES.glob("*.json"))) and again["reconciled"] is True
    assert table(tmp_path / "out", "findings").equals(reference)
    with pytest.raises(CohortError, match="partition_size"):
        run(SAMPLES, tmp_path / "out", partition_size=30, resume=True)


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    # enough partitions that Ctrl-C, sent when the first one is done, lands mid-run
    write_cohort(tmp_path / "export", 2400, seed=11, as_of=AS_OF.date())
    out = tmp_path / "out"
    # Ctrl-C in a terminal reaches a process with Python's default SIGINT handler; a test run
    # started in the background (nohup, `&` in a script) would hand an ignored SIGINT down.
    start = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    cmd = [
        sys.executable,
        "-c",
        start + "from cds.cli import main; main()",
        "cohort",
        "run",
        str(tmp_path / "export"),
        "--out",
        str(out),
        "--as-of",
        "2026-11-01",
        "-j",
        "1",
        "--partition-size",
        "50",
        "--no-progress",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((out / "parts").glob("*.done.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "rerun with --resume" in stderr and "Traceback" not in stderr
    done = len(list((out / "parts").glob("*.done.json")))
    assert 1 <= done < 48
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["timings"]["resumed_partitions"] == done
    assert (summary["patients_in"], summary["evaluated"], summary["reconciled"]) == (2400, 2400, True)

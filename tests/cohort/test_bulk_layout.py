"""Bulk Data exports as servers write them: a manifest.json, any file names, .ndjson and .ndjson.gz,
error files; damaged files are records in errors.jsonl, never the end of the run."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import orjson

from cds.cohort.sources import classify
from tests.cohort.helpers import SAMPLES, errors, run, table

# The real-world corpus (rw-*) holds what a per-type export cannot carry as the same bundle (entries
# without a resourceType, urn:uuid references, other patients' resources): see test_identity.py.
BUNDLES = [p for p in sorted(SAMPLES.glob("*.json")) if not p.name.startswith("rw-")]


def _by_type(bundles: list[Path]) -> dict[str, list[bytes]]:
    by_type: dict[str, list[bytes]] = {}
    for path in bundles:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource) + b"\n")
    return by_type


def _bundle_folder(tmp: Path) -> Path:
    folder = tmp / "bundles"
    folder.mkdir()
    for path in BUNDLES:
        shutil.copy(path, folder / path.name)
    return folder


def _spec_layout_export(root: Path) -> dict[str, object]:
    """The layout of the Bulk Data spec's example: ``<type>_file_<n>.ndjson`` files listed in
    manifest.json with the server's URLs, one relative URL, gzip for some, an error file."""
    root.mkdir()
    output = []
    for rtype, lines in sorted(_by_type(BUNDLES).items()):
        half = (len(lines) + 1) // 2
        stem = f"{rtype.lower()}_file"
        (root / f"{stem}_1.ndjson").write_bytes(b"".join(lines[:half]))
        with gzip.open(root / f"{stem}_2.ndjson.gz", "wb") as handle:
            handle.write(b"".join(lines[half:]))
        output.append({"type": rtype, "url": f"https://server.example/bulk/x1/{stem}_1.ndjson"})
        output.append({"type": rtype, "url": f"{stem}_2.ndjson.gz"})  # relative to the manifest
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Patient/p9 could not be read"}],
    }
    (root / "err_file_1.ndjson").write_bytes(orjson.dumps(outcome) + b"\n" + orjson.dumps(outcome) + b"\n")
    manifest = {
        "transactionTime": "2026-11-01T00:00:00Z",
        "request": "https://server.example/fhir/Patient/$export",
        "requiresAccessToken": True,
        "output": output,
        "error": [{"type": "OperationOutcome", "url": "https://server.example/bulk/x1/err_file_1.ndjson"}],
    }
    (root / "manifest.json").write_bytes(orjson.dumps(manifest))
    return manifest


def test_spec_layout_export_gives_the_same_findings_as_the_folder_of_bundles(tmp_path: Path) -> None:
    _spec_layout_export(tmp_path / "export")
    folder = run(_bundle_folder(tmp_path), tmp_path / "from-bundles").data
    bulk = run(tmp_path / "export", tmp_path / "from-bulk", partition_size=25).data
    assert (bulk["patients_in"], bulk["evaluated"], bulk["rejected"]) == (len(BUNDLES), len(BUNDLES), 0)
    assert folder["evaluated"] == len(BUNDLES) and bulk["reconciled"] is True
    for name in ("findings", "patients"):
        drop = ["origin"] if name == "patients" else []
        reference = table(tmp_path / "from-bundles", name).drop_columns(drop)
        got = table(tmp_path / "from-bulk", name).drop_columns(drop)
        assert got.equals(reference), name
    # The export's error file is reported line by line; nothing else went wrong.
    assert bulk["error_kinds"] == {"export-error": 2}
    reported = [e for e in errors(tmp_path / "from-bulk") if e["kind"] == "export-error"]
    assert [(Path(e["file"]).name, e["line"]) for e in reported] == [
        ("err_file_1.ndjson", 1),
        ("err_file_1.ndjson", 2),
    ]
    assert reported[0]["reason"] == "the server reported: Patient/p9 could not be read"
    # Naming the manifest itself reads the same export.
    assert classify(tmp_path / "export" / "manifest.json") == classify(tmp_path / "export")


def test_without_a_manifest_any_name_is_read_by_its_lines_resource_type(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    by_type = _by_type(BUNDLES)
    patients = by_type.pop("Patient")
    (root / "people.ndjson").write_bytes(b"".join(patients))
    everything_else = [line for lines in by_type.values() for line in lines]
    with gzip.open(root / "clinical-data.ndjson.gz", "wb") as handle:  # many types in one file
        handle.write(b"".join(everything_else))
    (root / "log.ndjson").write_bytes(b'{"exportId": "x1", "eventId": "kickoff"}\n')
    run(_bundle_folder(tmp_path), tmp_path / "from-bundles")
    summary = run(root, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"], summary["reconciled"]) == (
        len(BUNDLES),
        len(BUNDLES),
        True,
    )
    assert table(tmp_path / "out", "findings").equals(table(tmp_path / "from-bundles", "findings"))
    assert [(e["kind"], Path(e["file"]).name) for e in errors(tmp_path / "out")] == [
        ("not-a-resource-file", "log.ndjson")
    ]


def test_manifest_entries_that_name_no_usable_file_are_reported_and_the_rest_is_read(
    tmp_path: Path,
) -> None:
    root = tmp_path / "export"
    manifest = _spec_layout_export(root)
    (tmp_path / "outside.ndjson").write_bytes(b"")
    manifest["output"] = [  # type: ignore[index]
        *manifest["output"],  # type: ignore[misc]
        {"type": "Observation", "url": "gone_file_1.ndjson"},
        {"type": "Observation", "url": "../outside.ndjson"},
        {"type": "MedicationOrder", "url": "medicationorder_file_1.ndjson"},
        {"type": "Patient", "url": "patient_file_1.ndjson"},
        {"type": "Observation"},
    ]
    manifest["deleted"] = [{"type": "Bundle", "url": "deleted_file_1.ndjson"}]
    (root / "manifest.json").write_bytes(orjson.dumps(manifest))
    (root / "medicationorder_file_1.ndjson").write_bytes(b'{"resourceType": "MedicationOrder"}\n')
    (root / "deleted_file_1.ndjson").write_bytes(b'{"resourceType": "Bundle", "type": "transaction"}\n')
    (root / "stray.ndjson").write_bytes((root / "patient_file_1.ndjson").read_bytes())
    summary = run(root, tmp_path / "out").data
    assert (summary["evaluated"], summary["reconciled"]) == (len(BUNDLES), True)
    found = [(e["kind"], e["file"].rsplit("/", 1)[-1], e["reason"]) for e in errors(tmp_path / "out")]
    count = len(manifest["output"])  # type: ignore[arg-type]
    assert found[:7] == [
        (
            "bad-manifest",
            f"manifest.json#output[{count - 5}]",
            "gone_file_1.ndjson: listed in the manifest, no such file in the folder",
        ),
        (
            "bad-manifest",
            f"manifest.json#output[{count - 4}]",
            "../outside.ndjson: listed in the manifest, no such file in the folder",
        ),
        (
            "bad-manifest",
            f"manifest.json#output[{count - 3}]",
            "type 'MedicationOrder' is not an R4 resource type: medicationorder_file_1.ndjson not read",
        ),
        (
            "bad-manifest",
            f"manifest.json#output[{count - 2}]",
            "patient_file_1.ndjson: listed twice: read once",
        ),
        ("bad-manifest", f"manifest.json#output[{count - 1}]", "output entry without a url: not read"),
        (
            "bad-manifest",
            "manifest.json#deleted[0]",
            "deleted-resources file (Bundles of deletions): not applied",
        ),
        ("not-in-manifest", "stray.ndjson", "not listed in manifest.json: not read"),
    ]


def _cli(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cds.cli", "cohort", "run", str(source), "--out", str(out)]
    cmd += ["--as-of", "2026-11-01", "-j", "1", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_truncated_gz_and_non_gzip_gz_are_error_records_and_the_rest_is_evaluated(tmp_path: Path) -> None:
    root = tmp_path / "export"
    root.mkdir()
    by_type = _by_type(BUNDLES)
    observations = b"".join(by_type.pop("Observation"))
    conditions = b"".join(by_type.pop("Condition"))
    for rtype, lines in by_type.items():
        (root / f"{rtype}.000.ndjson").write_bytes(b"".join(lines))
    packed = gzip.compress(observations, compresslevel=6, mtime=0)
    (root / "Observation.000.ndjson.gz").write_bytes(packed[: len(packed) // 2])  # cut mid-stream
    (root / "Condition.000.ndjson.gz").write_bytes(conditions)  # named .gz, not gzip
    out = tmp_path / "out"
    result = _cli(root, out)
    assert result.returncode == 1, result.stderr
    assert "Aborted" not in result.stderr and "internal failure" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: part of the input was not read (2 damaged-file in errors.jsonl); "
        "every other patient was evaluated"
    )
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (
        len(BUNDLES),
        len(BUNDLES),
        0,
    )
    assert summary["reconciled"] is True and summary["lines"]["damaged_files"] == 2
    damaged = {Path(e["file"]).name: e for e in errors(out) if e["kind"] == "damaged-file"}
    assert set(damaged) == {"Observation.000.ndjson.gz", "Condition.000.ndjson.gz"}
    bad = damaged["Condition.000.ndjson.gz"]
    assert (bad["line"], bad["stage"]) == (1, "ingest")
    assert bad["reason"].startswith("not a gzip file; reading stopped at line 1, byte 0")
    cut = damaged["Observation.000.ndjson.gz"]
    # The lines before the break were used: the record names the first line not read and its byte.
    complete = zlib.decompressobj(31).decompress(packed[: len(packed) // 2])
    assert 1 < cut["line"] <= complete.count(b"\n") + 1
    offset = sum(len(line) for line in observations.splitlines(keepends=True)[: cut["line"] - 1])
    assert cut["reason"].startswith(
        f"truncated: the compressed stream ends early; reading stopped at line {cut['line']}, byte {offset} "
    )
    read = summary["lines"]["lines"]
    assert read == sum(len(v) for v in by_type.values()) + cut["line"] - 1
    assert (out / "report.html").exists() and (out / "findings.parquet").exists()


def test_damaged_bundle_files_reject_only_their_patient(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    for path in BUNDLES[:4]:
        shutil.copy(path, folder / path.name)
    (folder / "not-gzip.json.gz").write_bytes(BUNDLES[4].read_bytes())
    packed = gzip.compress(BUNDLES[5].read_bytes(), mtime=0)
    (folder / "truncated.json.gz").write_bytes(packed[: len(packed) // 2])
    summary = run(folder, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (6, 4, 2)
    assert summary["reconciled"] is True
    found = sorted(
        (Path(e["file"]).name, e["line"], e["reason"].split(";")[0])
        for e in errors(tmp_path / "out")
        if e["kind"] == "damaged-file"
    )
    assert found == [
        ("not-gzip.json.gz", 1, "not a gzip file"),
        ("truncated.json.gz", 1, "truncated: the compressed stream ends early"),
    ]


def test_truncated_jsonl_gz_keeps_the_bundles_before_the_break(tmp_path: Path) -> None:
    lines = b"".join(orjson.dumps(orjson.loads(p.read_bytes())) + b"\n" for p in BUNDLES[:40])
    packed = gzip.compress(lines, mtime=0)
    source = tmp_path / "cohort.jsonl.gz"
    source.write_bytes(packed[: len(packed) * 3 // 4])
    summary = run(source, tmp_path / "out").data
    [cut] = [e for e in errors(tmp_path / "out") if e["kind"] == "damaged-file"]
    assert 1 < cut["line"] <= 40 and cut["stage"] == "ingest"
    assert summary["patients_in"] == summary["evaluated"] == cut["line"] - 1
    assert summary["reconciled"] is True


def test_an_unreadable_manifest_is_reported_and_the_files_are_read_by_their_lines(tmp_path: Path) -> None:
    root = tmp_path / "export"
    _spec_layout_export(root)
    (root / "manifest.json").write_bytes(b'{"output": [')
    summary = run(root, tmp_path / "out").data
    assert (summary["evaluated"], summary["reconciled"]) == (len(BUNDLES), True)
    # the error file is recognised by its lines' resourceType (OperationOutcome)
    assert summary["error_kinds"] == {"bad-manifest": 1, "export-error": 2}
    [bad] = [e for e in errors(tmp_path / "out") if e["kind"] == "bad-manifest"]
    assert Path(bad["file"]).name == "manifest.json"
    assert bad["reason"].startswith("manifest not readable (") and bad["reason"].endswith(
        "): files read by their names and lines"
    )

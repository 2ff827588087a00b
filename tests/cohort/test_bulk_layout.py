"""A Bulk Data export laid out as the specification's own example: manifest.json, any file names,
.ndjson and .ndjson.gz, error files; the same findings as the folder of bundles."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import orjson
import pyarrow as pa

from tests.cohort.helpers import SAMPLES, errors, run, table

BUNDLES = sorted(SAMPLES.glob("*.json"))


def _spec_layout(out: Path, *, manifest: bool) -> dict[str, int]:
    """The samples as ``patient_file_1.ndjson``, ``observation_file_2.ndjson.gz``... (lines shuffled,
    each type split over two files, the second gzipped), with the manifest of the Bulk Data example:
    absolute server URLs for the first file of each type, relative URLs for the second."""
    by_type: dict[str, list[bytes]] = {}
    for path in BUNDLES:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    rng = random.Random(5)
    out.mkdir(parents=True)
    output = []
    for rtype, lines in sorted(by_type.items()):
        rng.shuffle(lines)
        half = len(lines) // 2
        first, second = f"{rtype.lower()}_file_1.ndjson", f"{rtype.lower()}_file_2.ndjson.gz"
        (out / first).write_bytes(b"".join(x + b"\n" for x in lines[:half]))
        with gzip.open(out / second, "wb") as handle:
            handle.write(b"".join(x + b"\n" for x in lines[half:]))
        output += [
            {"type": rtype, "url": f"https://example.com/output/{first}"},
            {"type": rtype, "url": second},
        ]
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Unable to export Patient/x"}],
    }
    (out / "err_file_1.ndjson").write_bytes(orjson.dumps(outcome) + b"\n")
    if manifest:
        doc = {
            "transactionTime": "2026-11-01T00:00:00Z",
            "request": "https://example.com/fhir/Patient/$export",
            "requiresAccessToken": True,
            "output": output,
            "error": [{"type": "OperationOutcome", "url": "https://example.com/output/err_file_1.ndjson"}],
        }
        (out / "manifest.json").write_bytes(orjson.dumps(doc))
    return {k: len(v) for k, v in by_type.items()}


def _same_results(a: Path, b: Path) -> None:
    assert table(a, "findings").equals(table(b, "findings"))
    keep = ["patient", "identifier", "codes", "evaluation_sha256"]
    pa_a: pa.Table = table(a, "patients").select(keep)
    assert pa_a.equals(table(b, "patients").select(keep))


def test_spec_layout_with_manifest_gives_the_bundle_folder_findings(tmp_path: Path) -> None:
    counts = _spec_layout(tmp_path / "export", manifest=True)
    (tmp_path / "export" / "leftover_file_9.ndjson").write_bytes(
        orjson.dumps({"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/ghost"}})
        + b"\n"
    )
    summary = run(tmp_path / "export", tmp_path / "bulk").data
    run(SAMPLES, tmp_path / "bundles")
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (86, 86, 0)
    assert summary["reconciled"] is True
    assert summary["lines"]["lines"] == summary["lines"]["grouped"] == sum(counts.values())
    _same_results(tmp_path / "bulk", tmp_path / "bundles")
    records = {(e["kind"], Path(e["file"]).name, e["line"]): e for e in errors(tmp_path / "bulk")}
    # The manifest's error file is reported line by line; a file the manifest does not list is not read.
    assert set(records) == {
        ("export-error", "err_file_1.ndjson", 1),
        ("not-in-manifest", "leftover_file_9.ndjson", None),
    }
    assert "Unable to export Patient/x" in records[("export-error", "err_file_1.ndjson", 1)]["reason"]


def test_spec_layout_without_manifest_takes_types_from_the_lines(tmp_path: Path) -> None:
    counts = _spec_layout(tmp_path / "export", manifest=False)
    (tmp_path / "export" / "log.ndjson").write_bytes(b'{"exportId": "x", "eventId": "kickoff"}\n')
    summary = run(tmp_path / "export", tmp_path / "bulk").data
    run(SAMPLES, tmp_path / "bundles")
    assert (summary["patients_in"], summary["evaluated"]) == (86, 86) and summary["reconciled"] is True
    assert summary["lines"]["grouped"] == sum(counts.values())
    _same_results(tmp_path / "bulk", tmp_path / "bundles")
    # Without a manifest the error file is known by its OperationOutcome lines; the log holds no
    # resources: both are reported, neither is read as patient data.
    assert sorted((e["kind"], Path(e["file"]).name) for e in errors(tmp_path / "bulk")) == [
        ("export-error", "err_file_1.ndjson"),
        ("not-a-resource-file", "log.ndjson"),
    ]


def test_manifest_problems_are_reported_not_fatal(tmp_path: Path) -> None:
    export = tmp_path / "export"
    _spec_layout(export, manifest=True)
    doc = orjson.loads((export / "manifest.json").read_bytes())
    doc["output"] += [
        {"type": "Observation", "url": "missing_file.ndjson"},
        {"type": "Observation", "url": "../outside.ndjson"},
        {"type": "MedicationOrder", "url": "patient_file_1.ndjson"},
        {"type": "Observation"},
    ]
    (tmp_path / "outside.ndjson").write_bytes(b"")
    (export / "manifest.json").write_bytes(orjson.dumps(doc))
    summary = run(export, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"]) == (86, 86) and summary["reconciled"] is True
    kinds = sorted(
        (e["kind"], e["reason"].split(":")[0])
        for e in errors(tmp_path / "out")
        if e["kind"] != "export-error"
    )
    assert kinds == [
        ("bad-manifest", "output entry without a url"),
        ("missing-file", "../outside.ndjson"),
        ("missing-file", "missing_file.ndjson"),
        ("unknown-type", "manifest type 'MedicationOrder' is not an R4 resource type"),
    ]


def test_unreadable_manifest_falls_back_to_file_names_and_says_so(tmp_path: Path) -> None:
    export = tmp_path / "export"
    counts = _spec_layout(export, manifest=False)
    (export / "manifest.json").write_bytes(b"{not json")
    summary = run(export, tmp_path / "out").data
    assert (summary["patients_in"], summary["evaluated"]) == (86, 86)
    assert summary["lines"]["grouped"] == sum(counts.values())
    assert [e["kind"] for e in errors(tmp_path / "out")][:1] == ["bad-manifest"]

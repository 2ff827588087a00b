"""Another patient's data never drives a cohort finding; a versioned self-reference still counts."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.cohort.helpers import errors, run, table
from tests.wrong_patient import (
    GAP,
    HOLD,
    OTHER_REFS,
    PID,
    SELF_REFS,
    SKIP_REASON,
    platelets_ref,
    resources,
    variant,
)


def _codes_by_patient(out: Path) -> dict[str, list[str]]:
    findings = table(out, "findings").to_pylist()
    codes: dict[str, list[str]] = {}
    for row in findings:
        codes.setdefault(row["patient"], []).append(row["code"])
    return {k: sorted(v) for k, v in codes.items()}


def test_cohort_of_bundles_excludes_other_patients_data(tmp_path: Path) -> None:
    """One Bundle per reference form (the patient renamed per file so each is its own patient)."""
    folder = tmp_path / "bundles"
    folder.mkdir()
    cases = {f"self {k}": v for k, v in SELF_REFS.items()} | {f"other {k}": v for k, v in OTHER_REFS.items()}
    cases["removed"] = None
    ids = {}
    for i, (case, reference) in enumerate(sorted(cases.items())):
        pid = f"p{i:02d}"
        ids[pid] = case
        text = orjson.dumps(variant(reference)).replace(PID.encode(), pid.encode())
        (folder / f"{pid}.json").write_bytes(text)
    out = tmp_path / "out"
    summary = run(folder, out).data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (len(cases), len(cases), 0)
    codes = _codes_by_patient(out)
    pid_of = {case: pid for pid, case in ids.items()}
    without = codes[pid_of["removed"]]
    assert HOLD not in without
    skipped = [e for e in errors(out) if e["kind"] == "skipped-resource"]
    for pid, case in ids.items():
        if case.startswith("self"):
            assert codes[pid] == sorted([HOLD, "info.on-therapy"]), case
        elif case.startswith("other"):
            assert codes[pid] == sorted([*without, GAP]), case
            ref = platelets_ref().replace(PID, pid)
            assert [e["reason"] for e in skipped if e["resource"] == ref] == [SKIP_REASON], case


def test_bulk_export_with_versioned_subject_keeps_the_hold(tmp_path: Path) -> None:
    """Bulk NDJSON: a lab whose subject is Patient/<id>/_history/<n> is grouped with and used for <id>."""
    export = tmp_path / "export"
    export.mkdir()
    by_type: dict[str, list[bytes]] = {}
    for r in resources(variant(SELF_REFS["versioned"])):
        by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r) + b"\n")
    for rtype, lines in by_type.items():
        (export / f"{rtype}.ndjson").write_bytes(b"".join(lines))
    out = tmp_path / "out"
    summary = run(export, out).data
    assert (summary["evaluated"], summary["rejected"]) == (1, 0)
    assert _codes_by_patient(out) == {PID: sorted([HOLD, "info.on-therapy"])}

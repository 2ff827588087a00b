"""Reading a cohort's outputs back: DataFrames for notebooks, transaction Bundles for a FHIR server.

    from cds.cohort import read_results
    r = read_results("review/")
    r.findings[r.findings.code == "gap.lvef-overdue"]

pandas is optional (``pip install 'her2-cds[analysis]'``, which also brings DuckDB): the engine and
``cds cohort run`` never need it, so it is imported here, on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds.cohort.outputs import ERROR_FIELDS, read_table
from cds.errors import CohortError
from cds.findings.fhir_out import transaction_bundle


@dataclass(frozen=True)
class Results:
    """The outputs of one ``cds cohort run`` as pandas DataFrames, plus its summary."""

    findings: Any  # pandas.DataFrame: one row per finding (findings.parquet / .csv)
    patients: Any  # pandas.DataFrame: one row per evaluated patient
    errors: Any  # pandas.DataFrame: one row per errors.jsonl record
    summary: dict[str, Any]  # summary.json: counts, reconciliation checks, timings


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as exc:  # depends on the installation
        raise ImportError("read_results needs pandas: pip install 'her2-cds[analysis]'") from exc


def read_results(out: str | Path) -> Results:
    """Read the output folder of ``cds cohort run`` (Parquet or CSV tables) into DataFrames.

    Text columns that were empty are None and numbers keep their types, whichever format the
    tables were written in."""
    pd = _pandas()
    folder = Path(out)
    errors_path = folder / "errors.jsonl"
    records = (
        [orjson.loads(line) for line in errors_path.read_bytes().splitlines() if line.strip()]
        if errors_path.exists()
        else []
    )
    return Results(
        findings=read_table(folder, "findings").to_pandas(),
        patients=read_table(folder, "patients").to_pandas(),
        errors=pd.DataFrame.from_records(records, columns=list(ERROR_FIELDS)),
        summary=orjson.loads((folder / "summary.json").read_bytes()),
    )


def _subject(resource: dict[str, Any]) -> str:
    ref = resource.get("subject") or resource.get("patient") or {}
    return str(ref.get("reference", ""))


def fhir_bundles(out: str | Path, patients: int = 100) -> Iterator[dict[str, Any]]:
    """The ``fhir/`` output of ``cds cohort run --format fhir`` as FHIR transaction Bundles (PUT),
    ``patients`` patients per Bundle, each patient's resources in the same Bundle (so references
    between them resolve). Streams the NDJSON files: memory holds one Bundle."""
    folder = Path(out) / "fhir"
    with (
        (folder / "GuidanceResponse.ndjson").open("rb") as guidance,
        (folder / "DetectedIssue.ndjson").open("rb") as issues,
        (folder / "RequestGroup.ndjson").open("rb") as groups,
    ):
        pending: dict[str, dict[str, Any] | None] = {"issue": None, "group": None}

        def take(key: str, handle: Any, subject: str) -> list[dict[str, Any]]:
            # The three files list patients in the same order: take this patient's lines.
            taken: list[dict[str, Any]] = []
            while True:
                if pending[key] is None:
                    line = handle.readline()
                    if not line:
                        return taken
                    pending[key] = orjson.loads(line)
                item = pending[key]
                assert item is not None
                if _subject(item) != subject:
                    return taken
                taken.append(item)
                pending[key] = None

        batch: list[dict[str, Any]] = []
        count = 0
        for line in guidance:
            response = orjson.loads(line)
            subject = _subject(response)
            batch += [response, *take("issue", issues, subject), *take("group", groups, subject)]
            count += 1
            if count == patients:
                yield transaction_bundle(batch)
                batch, count = [], 0
        if batch:
            yield transaction_bundle(batch)
        if pending["issue"] or pending["group"] or issues.readline() or groups.readline():
            raise CohortError(f"{folder}: DetectedIssue/RequestGroup lines without a GuidanceResponse")

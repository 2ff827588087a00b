"""Cohort outputs as pandas DataFrames, for analysts working in notebooks.

    from cds.cohort import read_results
    r = read_results("review/")
    r.findings[r.findings.code == "gap.lvef-overdue"]

pandas is an optional dependency (``pip install her2-cds[analysis]``, which also brings DuckDB):
the engine and ``cds cohort run`` never need it, so it is imported only here, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds.cohort.outputs import read_table


@dataclass(frozen=True)
class Results:
    """The outputs of one ``cds cohort run``: findings, patients and errors as DataFrames."""

    findings: Any  # pandas.DataFrame: one row per finding
    patients: Any  # pandas.DataFrame: one row per evaluated patient
    errors: Any  # pandas.DataFrame: one row per errors.jsonl record
    summary: dict[str, Any]


ERROR_COLUMNS = ["stage", "kind", "file", "line", "patient", "resource", "reason"]


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("read_results needs pandas: pip install 'her2-cds[analysis]'") from exc
    return pandas


def read_results(out: str | Path) -> Results:
    """Read the output folder of ``cds cohort run`` (Parquet or CSV tables) into DataFrames.

    Text columns that were empty are None (as written); numbers keep their types."""
    pd = _pandas()
    folder = Path(out)
    records = []
    errors_path = folder / "errors.jsonl"
    if errors_path.exists():
        records = [orjson.loads(line) for line in errors_path.read_bytes().splitlines() if line.strip()]
    return Results(
        findings=read_table(folder, "findings").to_pandas(),
        patients=read_table(folder, "patients").to_pandas(),
        errors=pd.DataFrame.from_records(records, columns=ERROR_COLUMNS),
        summary=orjson.loads((folder / "summary.json").read_bytes()),
    )

"""The notebook API and every pandas/DuckDB example in the docs run against a real cohort output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cds.cohort import read_results
from tests.cohort.helpers import ROOT, SAMPLES, bundles_to_bulk, run, table

DOCS = ROOT / "docs"


def _blocks(doc: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", doc.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``review/`` (a cohort output with an errors.jsonl record) and the samples."""
    base = tmp_path_factory.mktemp("notebook")
    bundles_to_bulk(sorted(SAMPLES.glob("*.json")), base / "export")
    (base / "export" / "log.ndjson").write_bytes(b'{"exportId": "x", "eventId": "kickoff"}\n')
    run(base / "export", base / "review")
    (base / "fhir_samples").symlink_to(SAMPLES)
    return base


def test_read_results_gives_the_output_tables_as_dataframes(workdir: Path, tmp_path: Path) -> None:
    r = read_results(workdir / "review")
    assert r.findings.shape[0] == table(workdir / "review", "findings").num_rows == r.summary["findings"]
    assert r.patients.shape[0] == 86 and set(r.patients.patient) == set(
        table(workdir / "review", "patients")["patient"].to_pylist()
    )
    assert list(r.errors.kind) == ["not-a-resource-file"]
    # CSV outputs read back the same.
    run(SAMPLES, tmp_path / "csv", fmt="csv")
    run(SAMPLES, tmp_path / "parquet")
    a, b = read_results(tmp_path / "csv"), read_results(tmp_path / "parquet")
    assert a.findings.equals(b.findings) and a.patients.equals(b.patients)
    assert a.errors.empty and list(a.errors.columns) == [
        "stage",
        "kind",
        "file",
        "line",
        "patient",
        "resource",
        "reason",
    ]


def test_notebook_examples_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    blocks = _blocks(DOCS / "notebook.md", "python")
    assert len(blocks) >= 5
    namespace: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "docs/notebook.md", "exec"), namespace)
    worklist = namespace["worklist"]
    assert worklist.iloc[0].severity == "critical"
    assert "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct" in set(worklist.action_text)
    assert namespace["one"].code.iloc[0] == "alert.tdm1.platelets-grade3"
    assert len(namespace["lvef"]) > 0
    assert "86 patients" in capsys.readouterr().out


def test_cohort_doc_pandas_and_duckdb_snippets_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    doc = DOCS / "cohort.md"
    [python] = _blocks(doc, "python")
    namespace: dict[str, Any] = {}
    exec(compile(python, "docs/cohort.md", "exec"), namespace)
    assert len(namespace["f"]) > 0 and len(namespace["p"]) == 86
    [sql] = _blocks(doc, "sql")
    code = re.sub(r"--[^\n]*", "", sql)
    statements = [s.strip() for s in code.split(";") if s.strip()]
    assert len(statements) == 3
    results = [duckdb.sql(s).fetchall() for s in statements]
    assert all(results)
    assert results[2] == [("not-a-resource-file", 1)]

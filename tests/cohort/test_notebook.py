"""The analyst's pages run as written: docs/notebook.md (doctest, outputs checked), the pandas and
DuckDB blocks of docs/cohort.md and the Bundle block of docs/fhir-output.md, on a real cohort run
of the sample patients in a folder laid out as the pages assume (fhir_samples/ and review/)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from typer.testing import CliRunner

from cds.cli import app
from tests.cohort.helpers import ROOT, SAMPLES

DOCS = ROOT / "docs"


def _blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with fhir_samples/ and review/ from the command notebook.md shows."""
    folder = tmp_path_factory.mktemp("notebook")
    (folder / "fhir_samples").symlink_to(SAMPLES, target_is_directory=True)
    [command] = [
        line
        for block in _blocks(DOCS / "notebook.md", "sh")
        for line in block.splitlines()
        if line.startswith("cds cohort run")
    ]
    assert command.split("#")[0].split() == [
        *("cds", "cohort", "run", "fhir_samples/", "--out", "review/"),
        *("--as-of", "2026-11-01", "--format", "fhir"),
    ]
    args = ["cohort", "run", str(folder / "fhir_samples"), "--out", str(folder / "review")]
    args += ["--as-of", "2026-11-01", "--format", "fhir", "--no-progress", "-j", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return folder


def test_notebook_examples_run_as_documented(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("CDS_RULES_DIR", raising=False)
    failures, attempted = doctest.testfile(
        str(DOCS / "notebook.md"),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
        report=True,
    )
    assert attempted >= 30 and failures == 0
    assert (workdir / "worklist.csv").read_text().startswith("identifier,action_text,value_date,code\n")


def test_cohort_page_pandas_and_duckdb_snippets_run(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    [python] = _blocks(DOCS / "cohort.md", "python")
    names: dict[str, Any] = {}
    exec(compile(python, "docs/cohort.md", "exec"), names)
    assert sorted(names["lvef_due"]) == ["gap-lvef-no-baseline", "gap-lvef-overdue"]
    assert "SYN-tdm1-platelets-grade3" in set(names["grade3"].identifier)
    assert all(25 <= v < 50 for v in names["grade3"].platelets)  # grade 3: 25 to <50
    assert {"rec.mbc2.tdxd", "rec.ebc.tdxd"} <= set(names["tdxd"].code)
    assert capsys.readouterr().out
    [sql] = _blocks(DOCS / "cohort.md", "sql")
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", sql).split(";") if s.strip()]
    results = [duckdb.sql(statement).fetchall() for statement in statements]
    assert len(results) == 3 and all(results)
    assert ("alert.tdm1.platelets-grade3", "critical", 9) in results[0]
    assert {row[4] for row in results[1]} >= {"alert.tdm1.lvef-hold", "gap.lvef-overdue"}
    assert results[2] == [("skipped-resource", 7)]


def test_fhir_output_page_bundles_hold_every_resource_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    [python] = _blocks(DOCS / "fhir-output.md", "python")
    exec(compile(python, "docs/fhir-output.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "['bundle-0000.json', 'bundle-0001.json']"
    written = {
        p.stem: sorted(orjson.loads(line)["id"] for line in p.read_bytes().splitlines())
        for p in (workdir / "review" / "fhir").glob("*.ndjson")
    }
    stored: dict[str, list[str]] = {}
    for path in sorted((workdir / "bundles").glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        get_fhir_model_class("Bundle").model_validate(bundle)
        ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["request"] == {
                "method": "PUT",
                "url": f"{resource['resourceType']}/{resource['id']}",
            }
            stored.setdefault(resource["resourceType"], []).append(resource["id"])
            # every reference between the results resolves inside the same Bundle
            for ref in re.findall(
                rb'"reference":"((?:DetectedIssue|RequestGroup)/[^"]+)"', orjson.dumps(resource)
            ):
                assert ref.decode() in ids
    assert {k: sorted(v) for k, v in stored.items()} == written

"""The cohort report is for action: the worklist first (critical and warning alerts, open data gaps)
in clinical words with the value and its date, the patient's MRN, a CSV download built into the page;
recommendations on their own; charts with the rules' thresholds. Checked in headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
from datetime import date
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from cds.cohort.report import CSV_COLUMNS
from tests.browser import launch, needs_chromium
from tests.cohort.helpers import ROOT, SAMPLES, run, table

IMG = ROOT / "docs" / "img"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def _with_identifiers(source: Path, target: Path, identifiers: list[dict[str, object]]) -> None:
    doc = orjson.loads(source.read_bytes())
    patient = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
    if identifiers:
        patient["identifier"] = identifiers
    else:
        patient.pop("identifier", None)
    target.write_bytes(orjson.dumps(doc))


def _csv_of_page(html: str) -> list[list[str]]:
    href = re.search(
        r'id="download-csv" download="[^"]+" href="data:text/csv;charset=utf-8;base64,([^"]+)"', html
    )
    assert href, "the page carries its CSV"
    return list(csv.reader(io.StringIO(base64.b64decode(href[1]).decode("utf-8"))))


def test_worklist_rows_name_the_mrn_and_the_action_with_its_value_and_date(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    _with_identifiers(
        SAMPLES / "tdm1-platelets-grade3.json",
        folder / "a.json",
        [
            {"system": "https://example.org/insurance", "value": "INS-77"},
            {"type": MR, "system": "https://example.org/mrn", "value": "MRN-0042"},
        ],
    )
    _with_identifiers(SAMPLES / "tdm1-lvef-hold.json", folder / "b.json", [])
    _with_identifiers(
        SAMPLES / "gap-lvef-overdue.json", folder / "c.json", [{"value": '=HYPERLINK("http://x")'}]
    )
    shutil.copy(SAMPLES / "mbc-second-line.json", folder / "d.json")  # recommendations only
    run(folder, tmp_path / "out", report=True)
    patients = {r["patient"]: r for r in table(tmp_path / "out", "patients").to_pylist()}
    assert patients["tdm1-platelets-grade3"]["identifier"] == "MRN-0042"  # the MR-typed one, not the first
    assert patients["tdm1-lvef-hold"]["identifier"] is None
    assert {p: r["needs_action"] for p, r in patients.items()} == {
        "tdm1-platelets-grade3": True,
        "tdm1-lvef-hold": True,
        "gap-lvef-overdue": True,
        "mbc-second-line": False,  # recommendations are not actions
    }
    assert patients["mbc-second-line"]["recommendation_codes"] == "rec.mbc2.tdm1 rec.mbc2.tdxd"
    findings = table(tmp_path / "out", "findings")
    row = findings.filter(pc.equal(findings["code"], "alert.tdm1.platelets-grade3")).to_pylist()[0]
    assert row["action_text"] == "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct 2026"
    assert (row["drug"], row["value_date"][:10]) == ("T-DM1", "2026-10-31")
    assert row["title"] == "T-DM1 (MBC), platelets 25 to <50 -> hold until >=75, same dose"
    rows = _csv_of_page((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert tuple(rows[0]) == CSV_COLUMNS
    # critical first, the oldest result first within it; the data gap (warning) last
    assert [(r[0], r[1], r[2], r[4]) for r in rows[1:]] == [
        ("critical", "", "tdm1-lvef-hold", "2026-09-28"),
        ("critical", "MRN-0042", "tdm1-platelets-grade3", "2026-10-31"),
        ("warning", '\'=HYPERLINK("http://x")', "gap-lvef-overdue", ""),  # never a spreadsheet formula
    ]
    assert rows[1][3] == "Hold T-DM1: LVEF 42% on 28 Sep 2026; LVEF drop from baseline 16 points"
    assert (rows[3][3], rows[3][6]) == (
        "LVEF assessment overdue (latest LVEF 104 days old)",
        "gap.lvef-overdue",
    )


@needs_chromium
def test_report_puts_the_worklist_above_the_fold_and_downloads_it_as_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.chdir(ROOT)  # the page names the input as given: "fhir_samples" in the screenshots
    out = tmp_path / "out"
    summary = run(SAMPLES.relative_to(ROOT), out, report=True).data
    findings = table(out, "findings")
    patients = table(out, "patients")
    actions = [
        f
        for f in findings.to_pylist()
        if f["kind"] in ("alert", "data-gap") and f["severity"] in ("critical", "warning")
    ]
    needing = patients.filter(pc.equal(patients["needs_action"], True))
    on_therapy = [r for r in patients.to_pylist() if r["on_her2_directed"]]

    def late(day: str | None, days: int) -> bool:
        return day is None or (date(2026, 11, 1) - date.fromisoformat(day[:10])).days > days

    overdue = {
        "lvef-days": sum(late(r["lvef_date"], 91) for r in on_therapy),
        "lab-days": sum(late(r["labs_date"], 3) for r in on_therapy),
    }
    outside: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page.on(
            "request",
            lambda r: None if r.url.startswith(("file:", "data:", "about:")) else outside.append(r.url),
        )
        page.goto((out / "report.html").as_uri())
        # The worklist is the first section, and its first rows are on the first screen.
        assert page.locator("h2").first.get_attribute("id") == "worklist-title"
        first_row = page.locator("#worklist tbody tr").first.bounding_box()
        assert first_row is not None and first_row["y"] + first_row["height"] < 900
        fifth_row = page.locator("#worklist tbody tr").nth(4).bounding_box()
        assert fifth_row is not None and fifth_row["y"] + fifth_row["height"] < 900
        assert page.inner_text("#n-patients-in") == str(summary["patients_in"])
        assert page.inner_text("#n-needs-action") == str(needing.num_rows)
        assert page.inner_text("#n-actions") == str(len(actions))
        assert page.inner_text("#reconciled") == "reconciled"
        rows = page.locator("#worklist tbody tr")
        assert rows.count() == len(actions)
        severities = page.locator("#worklist tbody tr td:nth-child(1)").all_inner_texts()
        assert severities == sorted(severities, key=["critical", "warning"].index)
        dated = page.locator("#worklist tbody tr td:nth-child(4)").evaluate_all(
            "cells => cells.map(c => [c.parentElement.cells[0].textContent, c.getAttribute('data-v')])"
        )
        for severity in ("critical", "warning"):
            days = [d for s, d in dated if s == severity]
            assert days == sorted(days, key=lambda d: (d == "", d)), severity
        row = page.locator(
            '#worklist tr[data-code="alert.tdm1.platelets-grade3"]', has_text="SYN-tdm1-platelets-grade3"
        )
        assert row.locator("td").nth(2).inner_text() == "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct 2026"
        assert row.locator("td").nth(3).inner_text() == "31 Oct 2026"
        assert page.locator("#worklist", has_text="rec.mbc2.tdxd").count() == 0
        recommended = page.locator("#recommendations tbody tr").evaluate_all(
            "rows => rows.map(r => [r.cells[5].textContent, r.cells[4].textContent.trim()])"
        )
        assert [c for pid, c in recommended if pid == "mbc-second-line"] == ["rec.mbc2.tdxd", "rec.mbc2.tdm1"]
        # The CSV download holds the worklist rows, in the order shown.
        with page.expect_download() as info:
            page.click("#download-csv")
        download = info.value
        assert download.suggested_filename == "worklist-2026-11-01.csv"
        got = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
        assert tuple(got[0]) == CSV_COLUMNS and len(got) == len(actions) + 1
        shown = page.locator("#worklist tbody tr").evaluate_all(
            "rows => rows.map(r => [0, 2, 6].map(i => r.cells[i].textContent.trim()))"
        )
        assert [[r[0], r[3], r[6]] for r in got[1:]] == [list(s) for s in shown]
        # Charts: drug x severity, gap types, days since the last LVEF and labs with the due line,
        # the LVEF trajectory with its legend and the rules' thresholds; no chart repeats a table.
        for chart in ("alerts-by-drug", "gaps", "lvef-days", "lab-days", "lvef", "her2", "lines", "errors"):
            assert page.locator(f"svg#chart-{chart}").is_visible(), chart
        assert page.locator("svg#chart-codes").count() == 0
        tdm1 = page.locator('#chart-alerts-by-drug rect[data-drug="T-DM1"][data-severity="critical"]')
        assert int(tdm1.get_attribute("data-count") or 0) >= 10
        for chart, due in (
            ("lvef-days", "LVEF due every 91 days"),
            ("lab-days", "pre-dose labs within 3 days"),
        ):
            label = page.locator(f"#chart-{chart} .threshold-label").text_content()
            assert label == f"{due}: {overdue[chart]} overdue or none on file", label
        values = page.locator("#chart-lvef line.threshold").evaluate_all("ls => ls.map(l => l.dataset.value)")
        assert values == ["40", "50"]
        lines = page.locator("#chart-lvef g.patient-line").count()
        assert 1 <= lines <= 8 and page.locator("#chart-lvef .legend rect").count() == lines
        grade3 = {f["patient"] for f in actions if f["code"] == "alert.tdm1.platelets-grade3"}
        assert page.inner_text('#findings-by-code td[data-code="alert.tdm1.platelets-grade3"]') == str(
            len(grade3)
        )
        page.fill("#filter", "alert.tdm1.platelets-grade3")
        assert page.locator("#worklist tbody tr:visible").count() == len(grade3)
        page.fill("#filter", "")
        img = IMG if os.environ.get("CDS_UPDATE_SCREENSHOTS") else tmp_path
        page.screenshot(path=str(img / "cohort-worklist.png"))
        page.locator(".grid").screenshot(path=str(img / "cohort-charts.png"))
        browser.close()
    assert outside == []

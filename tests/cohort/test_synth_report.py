"""The synthetic cohort is recognised by the engine; the report renders in headless Chromium."""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.compute as pc

from cds.cohort.synth import SCENARIOS, write_cohort
from tests.browser import launch, needs_chromium
from tests.cohort.helpers import AS_OF, ROOT, SAMPLES, run, table

IMG = ROOT / "docs" / "img"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synth_is_seeded_and_recognised_by_the_engine(tmp_path: Path) -> None:
    stats = write_cohort(tmp_path / "a", 700, seed=5, as_of=AS_OF.date(), max_lines=4000)
    write_cohort(tmp_path / "b", 700, seed=5, as_of=AS_OF.date(), max_lines=4000)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(list((tmp_path / "a").glob("Observation.*.ndjson"))) >= 2  # rolled over like $export
    assert set(stats.by_scenario) == set(SCENARIOS)
    summary = run(tmp_path / "a", tmp_path / "out", processes=2, partition_size=200).data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (700, 700, 0)
    with (tmp_path / "a" / "synth-truth.csv").open() as handle:
        truth = {row["patient"]: row for row in csv.DictReader(handle)}
    rows = {r["patient"]: r for r in table(tmp_path / "out", "patients").to_pylist()}
    hits: Counter[str] = Counter()
    her2_ok: Counter[str] = Counter()
    for pid, t in truth.items():
        codes = (rows[pid]["codes"] or "").split()
        hits[t["scenario"]] += bool(t["signature"]) and t["signature"] in codes
        her2_ok[t["scenario"]] += (
            rows[pid]["her2_category"] == t["her2_category"] and rows[pid]["setting"] == t["setting"]
        )
    for scenario, count in stats.by_scenario.items():
        assert her2_ok[scenario] / count >= 0.9, (scenario, her2_ok[scenario], count)
        if SCENARIOS[scenario][3]:
            assert hits[scenario] / count >= 0.6, (scenario, hits[scenario], count)
    # Noise shows up as the data gaps and alerts a quality team would act on.
    findings = table(tmp_path / "out", "findings")
    codes = set(findings["code"].to_pylist())
    for expected in (
        "gap.lvef-overdue",
        "gap.labs-missing",
        "alert.tdm1.platelets-grade3",
        "alert.tdxd.neutrophils-grade3",
        "gap.unit-unrecognized",
        "rec.mbc2.tdxd",
    ):
        assert expected in codes, expected


def _worklist_expected(out: Path) -> list[dict[str, object]]:
    """Critical and warning alerts and data gaps from findings (what the worklist must hold)."""
    findings = table(out, "findings").to_pylist()
    return [
        f for f in findings if f["kind"] in ("alert", "data-gap") and f["severity"] in ("critical", "warning")
    ]


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "out"
    img = IMG if os.environ.get("CDS_UPDATE_SCREENSHOTS") else tmp_path
    summary = run(SAMPLES, out, report=True).data
    patients = table(out, "patients")
    needing = patients.filter(pc.equal(patients["needs_action"], True))
    expected = _worklist_expected(out)
    findings = table(out, "findings")
    recommendations = findings.filter(pc.equal(findings["kind"], "recommendation")).num_rows
    tdm1_grade3 = len(
        set(findings.filter(pc.equal(findings["code"], "alert.tdm1.platelets-grade3"))["patient"].to_pylist())
    )
    mrn = orjson.loads((SAMPLES / "tdm1-platelets-grade3.json").read_bytes())["entry"][0]["resource"]
    outside: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page.on(
            "request",
            lambda r: None if r.url.startswith(("file:", "data:", "about:")) else outside.append(r.url),
        )
        page.goto((out / "report.html").as_uri())
        assert (
            page.inner_text("#n-patients-in")
            == str(summary["patients_in"])
            == str(len(list(SAMPLES.glob("*.json"))))
        )
        assert (
            page.inner_text("#n-evaluated") == str(summary["patients_in"])
            and page.inner_text("#n-rejected") == "0"
        )
        assert page.inner_text("#n-findings") == str(summary["findings"])
        # Needing action = a critical or warning alert or data gap; recommendations are counted apart.
        assert page.inner_text("#n-needs-action") == str(needing.num_rows)
        assert needing.num_rows == len({f["patient"] for f in expected}) < 86
        assert page.inner_text("#n-actions") == str(len(expected))
        assert page.inner_text("#reconciled") == "reconciled"
        assert page.inner_text('td[data-code="alert.tdm1.platelets-grade3"]') == str(tdm1_grade3)
        rows = page.locator("#worklist tbody tr")
        assert rows.count() == len(expected)
        assert page.locator("#recommendations tbody tr").count() == recommendations > 0
        # The worklist is above the fold at 1400x900: its heading and first rows are on the first screen.
        heading = page.locator("#worklist-section h2").bounding_box()
        first_rows = rows.nth(4).bounding_box()
        assert heading is not None and first_rows is not None
        assert first_rows["y"] + first_rows["height"] <= 900
        page.screenshot(path=str(img / "cohort-worklist.png"))
        # Sorted by severity, then the oldest result first (undated last).
        cells = [
            (int(r.locator("td").nth(0).get_attribute("data-v") or 9), r.locator("td").nth(3).inner_text())
            for r in rows.all()
        ]
        assert cells == sorted(cells, key=lambda c: (c[0], c[1] == "", c[1]))
        assert cells[0][0] == 0
        # The action in clinical words with the value and its date; the MRN from Patient.identifier.
        row = page.locator('#worklist tbody tr[data-patient="tdm1-platelets-grade3"]')
        assert row.locator("td").nth(1).inner_text() == mrn["identifier"][0]["value"]
        assert (
            row.locator("td").nth(2).inner_text()
            == "Hold T-DM1: platelets 42 \u00d710\u00b3/\u00b5L on 31 Oct"
        )
        # The CSV download built into the page holds exactly the worklist, in its order.
        with page.expect_download() as download_info:
            page.click("#download-csv")
        download = download_info.value
        assert download.suggested_filename == "worklist-2026-11-01.csv"
        with Path(download.path()).open(encoding="utf-8", newline="") as handle:
            csv_rows = list(csv.DictReader(handle))
        assert [(r["patient"], r["code"]) for r in csv_rows] == [
            (r.get_attribute("data-patient"), r.locator("td").nth(5).inner_text()) for r in rows.all()
        ]
        assert sorted((r["patient"], r["code"]) for r in csv_rows) == sorted(
            (str(f["patient"]), str(f["code"])) for f in expected
        )
        grade3 = next(r for r in csv_rows if r["patient"] == "tdm1-platelets-grade3")
        assert (grade3["identifier"], grade3["action"], grade3["date"], grade3["severity"]) == (
            mrn["identifier"][0]["value"],
            "Hold T-DM1: platelets 42 \u00d710\u00b3/\u00b5L on 31 Oct",
            "2026-10-31",
            "critical",
        )
        for chart in (
            "alerts-by-drug",
            "gaps",
            "lvef-days",
            "lab-days",
            "lvef",
            "her2",
            "lines",
            "platelets",
            "anc",
            "ast-alt",
            "bilirubin",
        ):
            assert page.locator(f"svg#chart-{chart}").is_visible(), chart
        assert page.locator("svg#chart-codes").count() == 0  # the chart that repeated the table is gone
        # Alerts by drug: T-DM1 critical patients match the findings.
        tdm1_critical = {
            f["patient"]
            for f in expected
            if f["kind"] == "alert" and f["drug"] == "T-DM1" and f["severity"] == "critical"
        }
        bar = page.locator('#chart-alerts-by-drug rect[data-severity="critical"]').first
        assert bar.get_attribute("data-count") == str(len(tdm1_critical))
        # LVEF trajectory: one labelled line per flagged patient, a legend entry each, thresholds drawn.
        lines = page.locator("#chart-lvef g.patient-line")
        assert 0 < lines.count() == page.locator("#chart-lvef g.legend").first.locator("text").count()
        labels = page.locator("#chart-lvef .threshold-label").all_text_contents()
        assert labels == ["hold below 40%", "lower limit of normal 50%"]
        assert "due every 91 days" in (page.text_content("#chart-lvef-days .threshold-label") or "")
        assert "due every 3 days" in (page.text_content("#chart-lab-days .threshold-label") or "")
        page.locator(".grid").screenshot(path=str(img / "cohort-charts.png"))
        page.fill("#filter", "alert.tdm1.platelets-grade3")
        assert page.locator("#worklist tbody tr:visible").count() == tdm1_grade3
        browser.close()
    assert outside == []

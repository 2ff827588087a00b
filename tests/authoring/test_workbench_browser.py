"""End to end in headless Chromium: load the workbench, edit the T-DM1 grade 3 platelet threshold,
see a sample patient's hold alert appear in the impact preview and on the patient run, save, lint passes.

Runs on a copy of rules/ (never the real files); screenshots go to a temporary folder, or to
docs/img/ (for docs/authoring.md) with CDS_UPDATE_SCREENSHOTS=1, so a test run never rewrites
committed files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cds.authoring.lint import lint
from tests.authoring.workbench_helpers import IMG, ROOT, copy_rules, workbench
from tests.browser import launch, needs_chromium

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = copy_rules(tmp_path)
    with workbench(rules) as base:
        yield base, rules


def test_edit_threshold_preview_save_lint(server: tuple[str, Path], tmp_path: Path) -> None:
    base, rules = server
    img = IMG if os.environ.get("CDS_UPDATE_SCREENSHOTS") else tmp_path
    img.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(base + "/")
        assert page.locator("a", has_text="alert.tdm1.platelets-grade3").count() == 1
        page.screenshot(path=str(img / "workbench-rules.png"))

        page.click("text=alert.tdm1.platelets-grade3")
        assert "platelets < 50 ×10³/µL  [platelets_grade3_below]" in page.inner_text("#plain")
        field = page.locator("input[name=platelets_grade3_below]")
        assert field.input_value() == "50"

        # unsaved edit: 50 -> 55 makes the "exactly 50" patient a grade 3 hold
        field.fill("55")
        page.click("#preview")
        page.wait_for_selector("#impact .impact")
        impact = page.inner_text("#impact")
        assert f"1 of {len(list((ROOT / 'fhir_samples').glob('*.json')))} patients change" in impact
        row = page.locator("#impact tr.impact-row[data-rule='alert.tdm1.platelets-grade3']")
        assert row.get_attribute("data-kind") == "now fires"
        assert "tdm1-platelets-exactly-50" in row.inner_text()
        assert "is not < 50" in row.inner_text()  # why it did not fire before
        page.locator("#impact").scroll_into_view_if_needed()
        page.screenshot(path=str(img / "workbench-impact.png"))

        # the same patient, run with the unsaved value: the alert appears
        page.select_option("#sample", "tdm1-platelets-exactly-50")
        page.click("#try")
        page.wait_for_selector("#patient .patient-result")
        codes = page.locator("#patient table.findings td.code").all_inner_texts()
        assert "alert.tdm1.platelets-grade3" in codes

        # nothing was written yet
        assert (
            yaml.safe_load((rules / "tdm1-safety.yaml").read_text())["parameters"]["platelets_grade3_below"][
                "value"
            ]
            == 50
        )

        page.click("#save")
        page.wait_for_selector("#message")
        message = page.inner_text("#message")
        assert "tdm1-safety.yaml (now 2.2.0, draft)" in message
        assert "Lint: 0 error(s)" in message
        assert page.locator("input[name=platelets_grade3_below]").input_value() == "55"
        page.screenshot(path=str(img / "workbench-saved.png"))

        page.goto(base + "/run")
        page.select_option("#sample", "tdm1-platelets-exactly-50")
        page.click("#run")
        page.wait_for_selector(".patient-result")
        assert "alert.tdm1.platelets-grade3" in page.locator("table.findings").inner_text()
        assert "tdm1-safety 2.2.0" in page.locator("table.findings").inner_text()
        page.screenshot(path=str(img / "workbench-patient.png"), full_page=False)
        browser.close()

    text = (rules / "tdm1-safety.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["parameters"]["platelets_grade3_below"]["value"] == 55
    assert (data["version"], data["status"]) == ("2.2.0", "draft")
    assert "approved_by" not in data
    assert text.startswith("# T-DM1 (ado-trastuzumab emtansine, Kadcyla) safety alerts")  # comments kept
    assert lint(rules, cohort=None, base=None).ok

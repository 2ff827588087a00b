"""The pharmacist's review workflow in headless Chromium, on a site's rules in git: search, add a
trastuzumab biosimilar and a local platelet unit through forms (each with its source), see which
sample patients change before saving, submit for review and approve in the page; approval refused
while an embedded test fails; lint and impact show progress.

The cohort is fhir_samples/ plus two patients derived in the test from shipped samples, as a site
would see them: the biosimilar-brands patient with every trastuzumab record written "Zercepac" (an
EU trastuzumab biosimilar the catalogue does not list), and the T-DM1 platelets-25 patient with
platelets reported in "thou/cmm" (a spelling the value sets do not list). Screenshots go to a
temporary folder, or to docs/img/ with CDS_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds.authoring.lint import lint
from cds.engine.library import load_library
from tests.authoring.workbench_helpers import IMG, SAMPLES, copy_rules, workbench
from tests.browser import launch, needs_chromium

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = needs_chromium

BIOSIMILAR = "local-zercepac"
UNIT_PATIENT = "local-platelets-thou-cmm"
ZERCEPAC_SOURCE = "EMA European public assessment report: Zercepac (trastuzumab), EU biosimilar of Herceptin"
UNIT_SOURCE = "Site laboratory report format: thou/cmm = thousand per mm3 = 10^3/uL"


def _derive(cohort: Path, source: str, target: str, change: Any) -> None:
    bundle = json.loads((SAMPLES / f"{source}.json").read_text())
    for entry in bundle["entry"]:
        change(entry["resource"])
    (cohort / f"{target}.json").write_text(json.dumps(bundle, indent=1))
    shutil.copy(SAMPLES / f"{source}.expected.yaml", cohort / f"{target}.expected.yaml")


def _as_zercepac(resource: dict[str, Any]) -> None:
    concept = resource.get("medicationCodeableConcept")
    brands = ("Ogivri 420 mg vial", "Kanjinti", "trastuzumab-anns 420 mg IV")
    if isinstance(concept, dict) and concept.get("text") in brands:
        resource["medicationCodeableConcept"] = {"text": "Zercepac 420 mg vial"}


def _in_thou_cmm(resource: dict[str, Any]) -> None:
    if resource.get("resourceType") == "Observation" and resource["code"]["coding"][0]["code"] == "777-3":
        resource["valueQuantity"] = {"value": resource["valueQuantity"]["value"], "unit": "thou/cmm"}


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    rules = copy_rules(tmp_path, git=True)
    cohort = tmp_path / "cohort"
    shutil.copytree(SAMPLES, cohort)
    _derive(cohort, "rw-biosimilars-brand-only", BIOSIMILAR, _as_zercepac)
    _derive(cohort, "tdm1-platelets-exactly-25", UNIT_PATIENT, _in_thou_cmm)
    with workbench(rules, cohort) as base:
        yield base, rules, len(list(cohort.glob("*.json")))


def _shots(tmp_path: Path) -> Path:
    img = IMG if os.environ.get("CDS_UPDATE_SCREENSHOTS") else tmp_path
    img.mkdir(parents=True, exist_ok=True)
    return img


def _page(pw: Any) -> tuple[Any, Any]:
    browser = launch(pw)
    page = browser.new_page(viewport={"width": 1200, "height": 850})
    page.set_default_timeout(180_000)
    return browser, page


def _preview(page: Any) -> str:
    page.click("#preview")
    page.wait_for_selector("#impact .impact")
    return str(page.inner_text("#impact"))


def test_pharmacist_adds_a_biosimilar_and_a_local_platelet_unit_sees_who_changes_and_gets_them_approved(
    site: tuple[str, Path, int], tmp_path: Path
) -> None:
    base, rules, patients = site
    img = _shots(tmp_path)
    products_before = (rules / "catalogue/products.yaml").read_text()
    with playwright_api.sync_playwright() as pw:
        browser, page = _page(pw)
        page.goto(base + "/")
        page.fill("#q", "trastuzumab biosimilar")
        page.press("#q", "Enter")
        page.wait_for_selector("#search-summary")
        page.fill("#q", "trastuzumab")
        page.press("#q", "Enter")
        page.wait_for_selector("#results")
        kinds = set(page.locator("#results tr.hit").evaluate_all("rows => rows.map(r => r.dataset.kind)"))
        assert {"rule", "catalogue"} <= kinds
        assert page.locator("#results a", has_text="Ogivri (trastuzumab-dkst)").count() == 1
        page.screenshot(path=str(img / "workbench-search.png"))

        # 1. the biosimilar: a product form with its source, impact before saving
        page.click("text=Knowledge")
        page.click("#new-product")
        page.fill("#product_id", "zercepac")
        page.fill("#display", "Zercepac (trastuzumab)")
        page.fill("#agents", "trastuzumab")
        page.fill("#names", "zercepac")
        page.select_option("#route", "iv")
        page.fill("#source", ZERCEPAC_SOURCE)
        impact = _preview(page)
        assert f"Impact: 1 of {patients} patients change" in impact
        rows = page.locator("#impact tr.impact-row")
        assert BIOSIMILAR in rows.first.inner_text()
        assert (rules / "catalogue/products.yaml").read_text() == products_before  # nothing saved yet
        options = page.locator("#sample option").all_inner_texts()
        assert options[0] == f"{BIOSIMILAR} (changes)"
        assert page.input_value("#sample") == BIOSIMILAR
        page.screenshot(path=str(img / "workbench-product.png"))
        page.click("#try")
        page.wait_for_selector("#patient .patient-result")
        assert page.locator("#patient table.findings td.code").all_inner_texts() == ["info.on-therapy"]
        page.click("#save")
        page.wait_for_selector("#message")
        assert page.inner_text("#message") == (
            "Saved catalogue/products.yaml (now 2.1.0, draft): add product zercepac (Zercepac (trastuzumab)) "
            "to catalogue/products.yaml"
        )

        # 2. the local platelet unit: found by search, added to the unit map with factor and source
        page.fill("#q", "777-3")
        page.press("#q", "Enter")
        page.click("#results a:text-is('platelets')")
        page.select_option("#path", "analytes.platelets.units")
        page.fill("#member", "thou/cmm")
        page.fill("#factor", "1")
        page.fill("#source", UNIT_SOURCE)
        impact = _preview(page)
        assert f"Impact: 1 of {patients} patients change" in impact
        kinds_by_rule = {
            r.get_attribute("data-rule"): r.get_attribute("data-kind")
            for r in page.locator("#impact tr.impact-row").all()
        }
        assert kinds_by_rule["alert.tdm1.platelets-grade3"] == "now fires"
        assert page.input_value("#sample") == UNIT_PATIENT
        page.locator("#impact").scroll_into_view_if_needed()
        page.screenshot(path=str(img / "workbench-unit.png"))
        page.click("#save")
        page.wait_for_selector("#message")
        assert "Saved valuesets/observations.yaml (now 1.1.0, draft)" in page.inner_text("#message")
        assert f"thou/cmm: {UNIT_SOURCE}" in page.inner_text("ul.sources")

        # 3. review: both pending changes, YAML and plain language side by side
        page.click("text=Review")
        assert page.inner_text("#pending-count") == "2"
        products = page.locator(".pending[data-file='catalogue/products.yaml']")
        assert "2.0.0 → 2.1.0 draft" in products.locator("h2").inner_text()
        plain = products.locator(".plain-changes").inner_text()
        assert "status approved -> draft" in plain
        assert "products: added zercepac (display Zercepac (trastuzumab); agents [trastuzumab]" in plain
        assert f"source {ZERCEPAC_SOURCE})" in plain
        assert "+  zercepac: {display:" in products.locator(".diff .add").all_inner_texts()[-1]
        units = page.locator(".pending[data-file='valuesets/observations.yaml'] .plain-changes").inner_text()
        assert f"analytes.platelets.units: added 'thou/cmm' = 1 (source: {UNIT_SOURCE})" in units
        page.screenshot(path=str(img / "workbench-review.png"), full_page=True)

        # 4. submit both, then a second pharmacist approves each in the page
        for rel in ("catalogue/products.yaml", "valuesets/observations.yaml"):
            row = f"#lifecycle tr[data-file='{rel}']"
            page.click(f"{row} form[data-to='in-review'] button")
            page.wait_for_selector("#message")
            assert page.inner_text("#message") == f"{rel}: status in-review"
            page.fill(f"{row} form[data-to='approved'] input[name=by]", "A. Reviewer")
            page.click(f"{row} form[data-to='approved'] button")
            page.wait_for_selector(f"#message:has-text('{rel} approved by A. Reviewer')")
        page.screenshot(path=str(img / "workbench-approved.png"))
        browser.close()

    for rel, version in (("catalogue/products.yaml", "2.1.0"), ("valuesets/observations.yaml", "1.1.0")):
        data = yaml.safe_load((rules / rel).read_text())
        assert (data["version"], data["status"], data["approved_by"]) == (version, "approved", "A. Reviewer")
    text = (rules / "catalogue/products.yaml").read_text()
    assert text.startswith("# Drug catalogue: products (brands, biosimilars")  # comments kept
    changelog = (rules / "changelogs/catalogue-products.md").read_text()
    assert "## 2.1.0 (not committed, working tree)" in changelog
    assert "status approved -> approved" not in changelog and "approved by A. Reviewer on" in changelog
    # production loads the approved knowledge; lint is clean
    library = load_library(rules)
    assert library.catalogue.items_by_name(("Zercepac 420 mg vial",)) == ("zercepac",)
    assert library.valuesets.analytes["platelets"].units["thou/cmm"] == 1
    assert lint(rules, cohort=None, base=None).ok


def test_approval_is_refused_while_an_embedded_test_fails(site: tuple[str, Path, int]) -> None:
    base, rules, _patients = site
    with playwright_api.sync_playwright() as pw:
        browser, page = _page(pw)
        page.goto(base + "/rule/alert.tdm1.platelets-grade3")
        page.fill("input[name=platelets_grade3_below]", "55")  # the shipped boundary case expects 50
        page.click("#save")
        page.wait_for_selector("#message")
        page.goto(base + "/review")
        row = "#lifecycle tr[data-file='tdm1-safety.yaml']"
        page.click(f"{row} form[data-to='in-review'] button")
        page.wait_for_selector("#message")
        page.fill(f"{row} form[data-to='approved'] input[name=by]", "A. Reviewer")
        page.click(f"{row} form[data-to='approved'] button")
        page.wait_for_selector("#approval-error")
        error = page.inner_text("#approval-error")
        # the threshold is shared: the T-DM1 and T-DXd boundary cases at 50 now fail
        assert error.startswith(
            "400: cannot approve tdm1-safety.yaml: 0 lint error(s), 4 failing test(s): test case failed: "
            "tdm1-safety.yaml: platelets exactly 50 is not grade 3 (boundary): fired but not expected: "
            "alert.tdm1.platelets-grade3"
        )
        assert error.endswith(
            "tdxd-safety.yaml: platelets exactly 50 is not grade 3 (boundary): fired but not expected: "
            "alert.tdxd.platelets-grade3"
        )
        browser.close()
    data = yaml.safe_load((rules / "tdm1-safety.yaml").read_text())
    assert (data["status"], data.get("approved_by")) == ("in-review", None)


def test_try_on_one_patient_offers_the_changed_patients_first_and_lint_shows_progress(
    site: tuple[str, Path, int],
) -> None:
    base, _rules, _patients = site
    with playwright_api.sync_playwright() as pw:
        browser, page = _page(pw)
        page.goto(base + "/rule/alert.tdm1.platelets-grade3")
        assert page.input_value("#sample") == "ebc-residual-ild"  # alphabetical before any preview
        page.fill("input[name=platelets_grade3_below]", "55")
        _preview(page)
        assert page.input_value("#sample") == "tdm1-platelets-exactly-50"
        assert page.locator("#sample option").first.inner_text() == "tdm1-platelets-exactly-50 (changes)"
        page.click("#try")
        page.wait_for_selector("#patient .patient-result")
        assert "alert.tdm1.platelets-grade3" in page.locator("#patient table.findings").inner_text()

        page.goto(base + "/lint")
        page.wait_for_selector("#lint-progress")
        assert "lint: checking every rule file" in page.inner_text("#lint")
        page.wait_for_selector("#lint-summary")
        assert page.inner_text("#lint-summary").startswith("0 error(s)")
        browser.close()

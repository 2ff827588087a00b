"""The workbench refuses what another web page could make a pharmacist's browser do, never loses an
update, and answers bad input with 400 and the reason. Real uvicorn on loopback over a copy of
rules/; headless Chromium where a browser's behaviour is the point (cross-origin form posts, two
tabs, the upload form)."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tests.authoring.workbench_helpers import SAMPLES, client, copy_rules, csrf, field, serve, workbench
from tests.browser import launch, needs_chromium

RULE = "alert.tdm1.platelets-grade3"
SHARED_USER = "alert.tdxd.platelets-grade3"  # reads platelets_grade3_below, declared by tdm1-safety
TDM1 = "tdm1-safety.yaml"


@pytest.fixture()
def bench(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = copy_rules(tmp_path)
    with workbench(rules) as base:
        yield base, rules


def _threshold(rules: Path) -> object:
    return yaml.safe_load((rules / TDM1).read_text())["parameters"]["platelets_grade3_below"]["value"]


def _open(base: str, path: str = f"/rule/{RULE}") -> tuple[httpx.Client, str]:
    """A client holding a session, and the page it opened."""
    c = client(base)
    page = c.get(path)
    assert page.status_code == 200
    return c, page.text


# ---- CSRF ------------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_nothing_is_written(bench: tuple[str, Path]) -> None:
    base, rules = bench
    before = (rules / TDM1).read_bytes()
    c, html = _open(base)
    form = {"base": field(html, "base"), "platelets_grade3_below": "10"}
    missing = c.post(f"/rule/{RULE}/save", data=form)
    assert missing.status_code == 403
    assert "missing or wrong CSRF token" in missing.text
    wrong = c.post(f"/rule/{RULE}/save", data={**form, "csrf": "0" * 64})
    assert wrong.status_code == 403
    header = c.post(
        f"/rule/{RULE}/yaml",
        data={"base": field(html, "base"), "text": "id: x"},
        headers={"X-CSRF-Token": "x"},
    )
    assert header.status_code == 403
    assert (rules / TDM1).read_bytes() == before


def test_a_token_from_another_session_is_refused(bench: tuple[str, Path]) -> None:
    base, rules = bench
    before = (rules / TDM1).read_bytes()
    _other, other_html = _open(base)
    c, html = _open(base)
    form = {"csrf": csrf(other_html), "base": field(html, "base"), "platelets_grade3_below": "10"}
    assert c.post(f"/rule/{RULE}/save", data=form).status_code == 403
    assert (rules / TDM1).read_bytes() == before


def test_post_without_a_session_cookie_is_refused(bench: tuple[str, Path]) -> None:
    base, rules = bench
    _c, html = _open(base)
    fresh = client(base)
    answer = fresh.post(f"/rule/{RULE}/save", data={"csrf": csrf(html), "platelets_grade3_below": "10"})
    assert answer.status_code == 403
    assert "no workbench session" in answer.text
    assert _threshold(rules) == 50


# ---- Host and Origin -------------------------------------------------------------------------------


def test_dns_rebinding_host_is_refused_for_reads_and_writes(bench: tuple[str, Path]) -> None:
    base, rules = bench
    port = base.rsplit(":", 1)[1]
    c, html = _open(base)
    read = client(base).get("/", headers={"Host": f"attacker.example:{port}"})
    assert read.status_code == 403
    assert f"Host attacker.example:{port} is not the address this workbench is bound to" in read.text
    write = c.post(
        f"/rule/{RULE}/save",
        data={"csrf": csrf(html), "base": field(html, "base"), "platelets_grade3_below": "10"},
        headers={"Host": f"attacker.example:{port}"},
    )
    assert write.status_code == 403
    assert client(base).get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
    assert _threshold(rules) == 50


def test_foreign_or_null_origin_is_refused_even_with_a_valid_token(bench: tuple[str, Path]) -> None:
    base, rules = bench
    c, html = _open(base)
    form = {"csrf": csrf(html), "base": field(html, "base"), "platelets_grade3_below": "10"}
    for origin in ("http://127.0.0.1:1", "null", "https://" + base.removeprefix("http://")):
        answer = c.post(f"/rule/{RULE}/save", data=form, headers={"Origin": origin})
        assert answer.status_code == 403, origin
        assert "cross-origin request refused" in answer.text
    referer = c.post(
        f"/rule/{RULE}/save", data=form, headers={"Referer": "http://evil.example/page"}
    )
    assert referer.status_code == 403
    assert _threshold(rules) == 50


def _attacker_app(target: str, referrer: str | None = None) -> FastAPI:
    """Another origin's page with forms posting to the workbench (what CSRF looks like)."""
    app = FastAPI()
    meta = f'<meta name="referrer" content="{referrer}">' if referrer else ""
    page = f"""<!doctype html><html><head>{meta}</head><body>
<form id="params" method="post" action="{target}/rule/{RULE}/save">
<input name="platelets_grade3_below" value="10"><button id="go">win a prize</button></form>
<form id="yaml" method="post" action="{target}/rule/{RULE}/yaml">
<input name="text" value="id: {RULE}"><button id="go-yaml">more prizes</button></form></body></html>"""

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app


@needs_chromium
@pytest.mark.parametrize("referrer", [None, "no-referrer"])
def test_cross_origin_form_post_from_another_page_is_refused_and_the_file_is_unchanged(
    bench: tuple[str, Path], referrer: str | None
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    base, rules = bench
    before = (rules / TDM1).read_bytes()
    with serve(_attacker_app(base, referrer)) as evil, playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto(base + f"/rule/{RULE}")  # the pharmacist has the workbench open: a session exists
        for button in ("#go", "#go-yaml"):
            page.goto(evil + "/")
            with page.expect_navigation() as nav:
                page.click(button)
            response = nav.value
            assert response is not None and response.status == 403
            assert "cross-origin request refused" in page.inner_text("#error")
        browser.close()
    assert (rules / TDM1).read_bytes() == before


# ---- security headers ------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers_and_pages_have_no_inline_script(
    bench: tuple[str, Path],
) -> None:
    base, _rules = bench
    c = client(base)
    answers = [
        c.get("/"),
        c.get(f"/rule/{RULE}"),
        c.get("/static/workbench.js"),
        c.get("/rule/no.such.rule"),
        c.post("/impact", data={}),  # refused: no token
        client(base).get("/", headers={"Host": "evil.example"}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 403, 403]
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    cookie = answers[0].headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    for page in answers[:2]:
        assert "<script>" not in page.text and "<style>" not in page.text and "onclick" not in page.text


# ---- lost updates and bad input --------------------------------------------------------------------


@needs_chromium
def test_two_tabs_second_save_gets_409_and_the_file_keeps_the_first(bench: tuple[str, Path]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    base, rules = bench
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context()
        first, second, third = context.new_page(), context.new_page(), context.new_page()
        for tab in (first, second, third):
            tab.goto(base + f"/rule/{RULE}")
        first.fill("input[name=platelets_grade3_below]", "55")
        first.click("#save")
        first.wait_for_selector("#message")
        assert "tdm1-safety.yaml (now 2.2.0, draft)" in first.inner_text("#message")
        second.fill("input[name=platelets_grade3_below]", "45")
        with second.expect_navigation() as nav:
            second.click("#save")
        response = nav.value
        assert response is not None and response.status == 409
        assert second.inner_text("#error") == (
            "this rule set (tdm1-safety.yaml) changed since you opened it (now 2.2.0): reload the page and "
            "make your change again; nothing was saved"
        )
        # a third tab opened before the save: its rule YAML form is stale too
        with third.expect_navigation() as nav:
            third.click("#save-yaml")
        assert nav.value is not None and nav.value.status == 409
        browser.close()
    data = yaml.safe_load((rules / TDM1).read_text())
    assert data["parameters"]["platelets_grade3_below"]["value"] == 55
    assert data["version"] == "2.2.0"


def test_a_rule_form_cannot_change_another_rulesets_parameter(bench: tuple[str, Path]) -> None:
    base, rules = bench
    c, html = _open(base, f"/rule/{SHARED_USER}")
    assert 'name="platelets_grade3_below"' not in html  # shown read-only, with its owner
    assert "shared: change it on a tdm1-safety rule page" in html
    before = {p.name: p.read_bytes() for p in rules.glob("*.yaml")}
    form = {"csrf": csrf(html), "base": field(html, "base"), "platelets_grade3_below": "10"}
    for url in (f"/rule/{SHARED_USER}/save", "/impact"):
        answer = c.post(url, data={**form, "rule": SHARED_USER})
        assert answer.status_code == 400, url
        assert (
            "parameter platelets_grade3_below belongs to ruleset tdm1-safety (tdm1-safety.yaml); this form "
            "may change only parameters of ruleset tdxd-safety (tdxd-safety.yaml)"
        ) in answer.text
    unknown = c.post(
        f"/rule/{SHARED_USER}/save", data={"csrf": form["csrf"], "base": form["base"], "x": "1"}
    )
    assert unknown.status_code == 400
    assert "unknown field 'x'" in unescape(unknown.text)
    assert {p.name: p.read_bytes() for p in rules.glob("*.yaml")} == before


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "platelets_grade3_below: 'abc' is not a number"),
        ("nan", "platelets_grade3_below: 'nan' is not a finite number"),
        ("1e999", "platelets_grade3_below: '1e999' is not a finite number"),
        ("", "platelets_grade3_below: '' is not a number"),
    ],
)
def test_a_bad_value_is_400_with_the_reason(bench: tuple[str, Path], value: str, reason: str) -> None:
    base, rules = bench
    before = (rules / TDM1).read_bytes()
    c, html = _open(base)
    form = {"csrf": csrf(html), "base": field(html, "base"), "platelets_grade3_below": value, "rule": RULE}
    for url in (f"/rule/{RULE}/save", "/impact"):
        answer = c.post(url, data=form)
        assert answer.status_code == 400
        assert reason in unescape(answer.text)
    assert (rules / TDM1).read_bytes() == before


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("id: [unclosed\ntitle: x", "rule YAML not saved: not valid YAML"),
        ("- just\n- a list", "rule YAML not saved: the rule must be a YAML mapping"),
        (
            f"id: {RULE}\ntitle: t\ndescription: d\n"
            "when: {labs.platelets.value: {'<': $no_such_parameter}}\n"
            "then: {code: x, kind: info, summary: s}",
            "unknown parameter",
        ),
    ],
)
def test_invalid_rule_yaml_is_400_with_the_reason(bench: tuple[str, Path], text: str, reason: str) -> None:
    base, rules = bench
    before = (rules / TDM1).read_bytes()
    c, html = _open(base)
    answer = c.post(
        f"/rule/{RULE}/yaml", data={"csrf": csrf(html), "base": field(html, "base"), "text": text}
    )
    assert answer.status_code == 400
    assert reason in answer.text
    assert (rules / TDM1).read_bytes() == before


# ---- Run page upload -------------------------------------------------------------------------------


@needs_chromium
def test_uploading_a_bundle_on_the_run_page_evaluates_it(bench: tuple[str, Path]) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    base, _rules = bench
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto(base + "/run")
        page.set_input_files("#bundle", str(SAMPLES / "tdm1-platelets-exactly-25.json"))
        page.fill("input[name=as_of]", "2026-11-01")
        page.click("#run")
        page.wait_for_selector(".patient-result")
        heading = page.inner_text(".patient-result h3")
        assert heading.startswith("Patient/tdm1-platelets-exactly-25 as of 2026-11-01")
        assert "alert.tdm1.platelets-grade3" in page.locator("table.findings").inner_text()
        browser.close()


def test_uploading_something_that_is_not_fhir_is_400_with_the_reason(bench: tuple[str, Path]) -> None:
    base, _rules = bench
    c, html = _open(base, "/run")
    answer = c.post(
        "/run",
        data={"csrf": csrf(html), "sample": ""},
        files={"bundle": ("x.json", b"not json", "application/json")},
    )
    assert answer.status_code == 400
    assert 'id="run-error"' in answer.text

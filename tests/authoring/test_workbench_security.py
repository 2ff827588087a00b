"""The workbench refuses what a hostile page or a stale tab would do to the rule files.

Real uvicorn on loopback over a copy of rules/; the cross-origin, two-tab and upload cases run in
headless Chromium, the header-level cases with an HTTP client that sends what an attacker's
browser would send.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.browser import launch, needs_chromium
from tests.workbench_server import ROOT, Workbench, free_port

RULE = "alert.tdm1.platelets-grade3"
SAVE = f"/rule/{RULE}/save"


def _threshold(rules: Path) -> object:
    return yaml.safe_load((rules / "tdm1-safety.yaml").read_text())["parameters"]["platelets_grade3_below"][
        "value"
    ]


def _text(response: object) -> str:
    return html.unescape(response.text)  # type: ignore[attr-defined]


def _same_origin(wb: Workbench) -> dict[str, str]:
    return {"Origin": wb.base}


@pytest.fixture()
def attacker(workbench: Workbench) -> Iterator[str]:
    """Another origin on loopback whose page auto-submits a form to the workbench."""
    page = f"""<!doctype html><html><body>
<form id="f" method="post" action="{workbench.base}{SAVE}">
<input name="platelets_grade3_below" value="10"></form>
<script>document.getElementById('f').submit()</script></body></html>""".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(timeout=10)


@needs_chromium
def test_cross_origin_form_post_is_refused(workbench: Workbench, attacker: str) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto(workbench.base + f"/rule/{RULE}")  # the pharmacist has the workbench open
        with page.expect_response(lambda r: r.url.endswith(SAVE)) as answer:
            page.goto(attacker)
        assert answer.value.status == 403
        page.wait_for_load_state()
        assert "Refused" in page.inner_text("body")
        browser.close()
    assert _threshold(workbench.rules) == 50


def test_post_from_another_origin_or_without_token_is_refused(workbench: Workbench) -> None:
    with workbench.client() as client:
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        evil = client.post(
            SAVE, data={**fields, "platelets_grade3_below": "10"}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403 and "cross-origin request from 'http://evil.example'" in evil.text
        no_token = client.post(
            SAVE,
            data={"base": fields["base"], "platelets_grade3_below": "10"},
            headers=_same_origin(workbench),
        )
        assert no_token.status_code == 403 and "CSRF token" in no_token.text
        wrong = client.post(
            SAVE,
            data={**fields, "csrf_token": "0" * 64, "platelets_grade3_below": "10"},
            headers=_same_origin(workbench),
        )
        assert wrong.status_code == 403
        no_origin = client.post(SAVE, data={**fields, "platelets_grade3_below": "10"})
        assert no_origin.status_code == 403 and "without an Origin or Referer" in no_origin.text
    with workbench.client() as other:  # another session's token is worth nothing here
        stolen = other.post(
            SAVE, data={**fields, "platelets_grade3_below": "10"}, headers=_same_origin(workbench)
        )
        assert stolen.status_code == 403
    assert _threshold(workbench.rules) == 50
    with workbench.client() as client:  # the same request from the workbench page itself is accepted
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        ok = client.post(
            SAVE, data={**fields, "platelets_grade3_below": "45"}, headers=_same_origin(workbench)
        )
        assert ok.status_code == 303
    assert _threshold(workbench.rules) == 45


def test_dns_rebinding_host_is_refused(workbench: Workbench) -> None:
    port = workbench.base.rsplit(":", 1)[1]
    with workbench.client() as client:
        page = client.get("/", headers={"Host": f"rebind.example:{port}"})
        assert page.status_code == 403 and "Host 'rebind.example:" in page.text
        assert client.get("/rule/" + RULE, headers={"Host": f"localhost:{port}"}).status_code == 200
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        post = client.post(
            SAVE,
            data={**fields, "platelets_grade3_below": "10"},
            headers={"Host": f"rebind.example:{port}", "Origin": f"http://rebind.example:{port}"},
        )
        assert post.status_code == 403
    assert _threshold(workbench.rules) == 50


def test_every_page_forbids_framing_and_inline_code(workbench: Workbench) -> None:
    with workbench.client() as client:
        for path in ("/", f"/rule/{RULE}", "/run", "/lint", "/rule/no.such.rule", "/static/workbench.js"):
            r = client.get(path)
            assert r.headers["x-frame-options"] == "DENY", path
            csp = r.headers["content-security-policy"]
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp
            assert "<script>" not in r.text and "<style>" not in r.text and " onclick=" not in r.text, path


def test_rule_form_changes_only_its_own_rulesets_parameters(workbench: Workbench) -> None:
    before = (workbench.rules / "fact-derivation.yaml").read_text()
    with workbench.client() as client:
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        r = client.post(SAVE, data={**fields, "active_therapy_days": "10"}, headers=_same_origin(workbench))
        assert r.status_code == 400
        assert "active_therapy_days is not a parameter of this rule's ruleset" in _text(r)
    assert (workbench.rules / "fact-derivation.yaml").read_text() == before


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "'abc' is not a valid value"),
        ("nan", "'nan' is not a finite number"),
        ("1e999", "'1e999' is not a finite number"),
    ],
)
def test_bad_parameter_value_is_400_with_reason(workbench: Workbench, value: str, reason: str) -> None:
    with workbench.client() as client:
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        r = client.post(
            SAVE, data={**fields, "platelets_grade3_below": value}, headers=_same_origin(workbench)
        )
        assert r.status_code == 400 and reason in _text(r)
    assert _threshold(workbench.rules) == 50


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("id: alert.tdm1.platelets-grade3\nwhen: {all: [unclosed\n", "Not saved: while parsing"),
        ("- just\n- a list\n", "Not saved: the rule must be a YAML mapping"),
        (
            "id: alert.tdm1.platelets-grade3\ntitle: t\ndescription: d\n"
            "when: {all: [{labs.platelets.valu: 1}]}\n"
            "then: {code: x, kind: alert, action: hold, summary: s, detail: d}\n",
            "labs.platelets.valu",
        ),
    ],
)
def test_invalid_rule_yaml_is_400_with_reason(workbench: Workbench, text: str, reason: str) -> None:
    before = (workbench.rules / "tdm1-safety.yaml").read_text()
    with workbench.client() as client:
        fields = workbench.form_fields(client, f"/rule/{RULE}")
        r = client.post(f"/rule/{RULE}/yaml", data={**fields, "text": text}, headers=_same_origin(workbench))
        assert r.status_code == 400 and reason in _text(r)
    assert (workbench.rules / "tdm1-safety.yaml").read_text() == before


@needs_chromium
def test_two_tab_lost_update_gets_409(workbench: Workbench) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context()
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.goto(workbench.base + f"/rule/{RULE}")
        first.fill("input[name=platelets_grade3_below]", "55")
        first.click("#save")
        first.wait_for_selector("#message")
        second.fill("input[name=platelets_grade3_below]", "45")
        with second.expect_response(lambda r: r.url.endswith(SAVE)) as answer:
            second.click("#save")
        assert answer.value.status == 409
        second.wait_for_selector("#error")
        text = second.inner_text("#error")
        assert "Not saved: tdm1-safety.yaml was changed since this page was loaded" in text
        assert "Nothing was overwritten" in text
        browser.close()
    assert _threshold(workbench.rules) == 55


@needs_chromium
def test_run_page_runs_an_uploaded_bundle(workbench: Workbench) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto(workbench.base + "/run")
        page.set_input_files("#bundle", str(ROOT / "fhir_samples" / "tdm1-platelets-exactly-25.json"))
        page.fill("input[name=as_of]", "2026-11-01")
        page.click("#run")
        page.wait_for_selector(".patient-result")
        assert "alert.tdm1.platelets-grade3" in page.locator("table.findings").inner_text()
        assert "tdm1-platelets-exactly-25" in page.inner_text(".patient-result h3")
        browser.close()

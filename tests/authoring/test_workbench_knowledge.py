"""Knowledge edits and lifecycle moves over HTTP (real uvicorn on loopback, a copy of rules/ in git):
search finds every kind of entry; a bad addition is refused with the loaders' reason and writes
nothing; a stale form gets 409; lifecycle moves follow each file's lifecycle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.authoring.workbench_helpers import client, copy_rules, csrf, field, workbench

PRODUCTS = "catalogue/products.yaml"
OBSERVATIONS = "valuesets/observations.yaml"


@pytest.fixture()
def bench(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = copy_rules(tmp_path, git=True)
    with workbench(rules) as base:
        yield base, rules


def _open(base: str, path: str) -> tuple[httpx.Client, str]:
    c = client(base)
    page = c.get(path)
    assert page.status_code == 200, page.text
    return c, page.text


def _product(html: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf": csrf(html),
        "base": field(html, "base"),
        "op": "product",
        "product_id": "zercepac",
        "display": "Zercepac (trastuzumab)",
        "agents": "trastuzumab",
        "rxnorm": "",
        "names": "zercepac",
        "covers": "",
        "route": "iv",
        "source": "EMA European public assessment report: Zercepac",
    }
    return {**form, **overrides}


def _unit(html: str, **overrides: str) -> dict[str, str]:
    form = {
        "csrf": csrf(html),
        "base": field(html, "base"),
        "op": "member",
        "file": OBSERVATIONS,
        "path": "analytes.platelets.units",
        "member": "thou/cmm",
        "factor": "1",
        "source": "Site laboratory report format",
    }
    return {**form, **overrides}


def _reason(answer: httpx.Response) -> str:
    return unescape(answer.text.split('id="error">', 1)[1].split("</p>", 1)[0])


def test_search_finds_rules_catalogue_entries_value_sets_and_cue_lists(bench: tuple[str, Path]) -> None:
    base, _rules = bench
    c = client(base)

    def hits(q: str) -> list[tuple[str, str]]:
        page = c.get("/search", params={"q": q}).text
        rows = page.split('<tr class="hit" data-kind="')[1:]
        return [(r.split('"', 1)[0], unescape(r.split('">', 2)[2].split("</a>", 1)[0])) for r in rows]

    assert ("catalogue", "Ogivri (trastuzumab-dkst)") in hits("trastuzumab-dkst")
    assert hits("777-3") == [("value set", "platelets")]
    assert ("value set", "platelets") in hits("K/mcL")
    assert ("cues", "negation") in hits("ruled out")
    assert ("rule", "alert.tdm1.platelets-grade3") in hits("platelets grade3")
    assert hits("no-such-word-anywhere") == []


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"agents": "trastuzumabb"}, "products.yaml zercepac: unknown agent 'trastuzumabb'"),
        ({"rxnorm": "101306"}, "RxNorm 101306 is listed for both herceptin and zercepac"),
        ({"rxnorm": "abc"}, "RxNorm codes are digits only (RXCUI)"),
        ({"source": "  "}, "the source is required"),
        ({"product_id": "Bad Id"}, "product id 'Bad Id': lower-case letters, digits and underscores"),
        ({"product_id": "ogivri"}, "product 'ogivri' already exists"),
        ({"names": "kanjinti"}, "name 'kanjinti' is already a name of kanjinti"),
        ({"route": "im"}, "products.zercepac.route: Input should be 'iv', 'sc' or 'oral'"),
        ({"display": "two\nlines"}, "display must be one line"),
    ],
)
def test_a_bad_product_is_400_with_the_reason_and_nothing_is_written(
    bench: tuple[str, Path], form: dict[str, str], reason: str
) -> None:
    base, rules = bench
    before = (rules / PRODUCTS).read_bytes()
    c, html = _open(base, "/knowledge/new-product")
    for url in ("/knowledge/preview", "/knowledge/save"):
        answer = c.post(url, data=_product(html, **form))
        assert answer.status_code == 400, (url, answer.text)
        assert reason in _reason(answer)
    assert (rules / PRODUCTS).read_bytes() == before


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"factor": ""}, "analytes.platelets.units maps each spelling to a factor: give the factor"),
        ({"factor": "-1"}, "factor '-1' must be a positive finite number"),
        ({"factor": "nan"}, "factor 'nan' must be a positive finite number"),
        ({"member": "K/mcL"}, "'K/mcL' is already in analytes.platelets.units"),
        ({"path": "analytes.platelets.loinc", "member": "777-3", "factor": ""}, "'777-3' is already in"),
        ({"path": "analytes.platelets.canonical"}, "platelets.canonical is not a list or a unit map"),
        ({"path": "analytes.nothing.units"}, "analytes.nothing.units: no such list or map"),
        ({"file": "../evidence.yaml"}, "'../evidence.yaml' is not an editable knowledge file"),
        ({"source": ""}, "the source is required"),
    ],
)
def test_a_bad_member_is_400_with_the_reason_and_nothing_is_written(
    bench: tuple[str, Path], form: dict[str, str], reason: str
) -> None:
    base, rules = bench
    before = (rules / OBSERVATIONS).read_bytes()
    c, html = _open(base, "/knowledge/entry?file=valuesets/observations.yaml&path=analytes.platelets")
    answer = c.post("/knowledge/save", data=_unit(html, **form))
    assert answer.status_code == 400, answer.text
    assert reason in _reason(answer)
    assert (rules / OBSERVATIONS).read_bytes() == before


def test_a_knowledge_save_from_a_stale_page_gets_409_and_never_overwrites(bench: tuple[str, Path]) -> None:
    base, rules = bench
    c, first = _open(base, "/knowledge/entry?file=valuesets/observations.yaml&path=analytes.platelets")
    second = c.get("/knowledge/entry?file=valuesets/observations.yaml&path=analytes.anc").text  # 2nd tab
    saved = c.post("/knowledge/save", data=_unit(first))
    assert saved.status_code == 303
    after_first = (rules / OBSERVATIONS).read_bytes()
    stale = c.post("/knowledge/save", data=_unit(second, path="analytes.anc.units", member="thou/cmm"))
    assert stale.status_code == 409
    assert _reason(stale) == (
        "this knowledge file (observations.yaml) changed since you opened it (now 1.1.0): reload the page "
        "and make your change again; nothing was saved"
    )
    assert (rules / OBSERVATIONS).read_bytes() == after_first


def _job(c: httpx.Client, answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job: dict[str, Any] = c.get(f"/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_a_cue_phrase_is_added_with_its_source_and_previewed_first(bench: tuple[str, Path]) -> None:
    base, rules = bench
    c, html = _open(base, "/knowledge/entry?file=valuesets/cues.yaml&path=negation")
    form = {
        "csrf": csrf(html),
        "base": field(html, "base"),
        "op": "member",
        "file": "valuesets/cues.yaml",
        "path": "negation.before",
        "member": "no trace of",
        "source": "NegEx trigger terms (Chapman et al. 2001)",
    }
    job = _job(c, c.post("/knowledge/preview", data=form))
    assert job["error"] == "" and "patients change" in job["html"]
    assert job["done"] == job["total"] == 151
    assert c.post("/knowledge/save", data=form).status_code == 303
    data = yaml.safe_load((rules / "valuesets/cues.yaml").read_text())
    assert "no trace of" in data["negation"]["before"]
    assert data["member_sources"] == {
        "negation.before": {"no trace of": "NegEx trigger terms (Chapman et al. 2001)"}
    }
    assert (data["version"], data["status"]) == ("1.1.0", "draft")


def test_lifecycle_moves_follow_each_files_lifecycle(bench: tuple[str, Path]) -> None:
    base, rules = bench
    c, html = _open(base, "/review")

    def move(rel: str, to: str, page: str, by: str = "") -> httpx.Response:
        row = page.split(f'name="file" value="{rel}">', 1)[1]
        base_hash = row.split('name="base" value="', 1)[1].split('"')[0]
        form = {"csrf": csrf(page), "file": rel, "base": base_hash, "to": to, "by": by}
        return c.post("/review/move", data=form)

    assert "Nothing pending." in html
    retired = move("order-checks.yaml", "retired", html)
    assert retired.status_code == 303
    assert yaml.safe_load((rules / "order-checks.yaml").read_text())["status"] == "retired"
    html = c.get("/review").text
    assert 'data-file="order-checks.yaml"' in html and "Pending changes against git HEAD" in html
    # knowledge is never retired; approving needs a name; a move the lifecycle does not allow is refused
    refused = move(PRODUCTS, "retired", html)
    assert refused.status_code == 400 and _reason(refused) == (
        "catalogue/products.yaml: approved can move to draft, not retired"
    )
    assert move(PRODUCTS, "draft", html).status_code == 303
    stale = move(PRODUCTS, "in-review", html)  # the page was opened before the file went to draft
    assert stale.status_code == 409 and "changed since you opened it (now 2.0.0)" in _reason(stale)
    html = c.get("/review").text
    assert move(PRODUCTS, "in-review", html).status_code == 303
    html = c.get("/review").text
    nameless = move(PRODUCTS, "approved", html)
    assert nameless.status_code == 400
    assert _reason(nameless) == "approval needs the reviewing pharmacist's name"
    job = _job(c, move(PRODUCTS, "approved", html, "A. Reviewer"))
    assert job["error"] == "" and "catalogue/products.yaml approved by A. Reviewer" in job["html"]
    data = yaml.safe_load((rules / PRODUCTS).read_text())
    assert (data["status"], data["approved_by"], data["version"]) == ("approved", "A. Reviewer", "2.0.0")

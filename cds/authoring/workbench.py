"""``cds workbench``: a local web page where a pharmacist browses, tunes and checks rules.

FastAPI with server-rendered HTML and a few lines of JavaScript (no build step, nothing fetched
from the internet). Unsaved parameter edits are evaluated in memory (``parameter_overrides``) so
the impact on the sample cohort and on one patient is visible before anything is written; saving
writes the YAML surgically (comments and order kept), bumps the version and returns the file to
draft for review, then lint runs on the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import DictLoader, Environment

from cds import config
from cds.authoring import edit
from cds.authoring.cohort import CohortPatient, load_cohort, run_patient
from cds.authoring.explain import explain, label_for, unit_for
from cds.authoring.impact import compare, render_html_fragment
from cds.authoring.lint import lint
from cds.engine.conditions import Compare, Condition
from cds.engine.library import RuleLibrary, load_library
from cds.errors import ConfigurationError, InputRejected, RuleDefinitionError
from cds.evaluate import Evaluator
from cds.fhir.source import raw_patient_from_bytes

WORKING = config.WORKING_STATUSES
OPS = {
    "==": "is",
    "!=": "is not",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "in": "is one of",
    "between": "between",
    "exists": "is known",
    "missing": "is unknown",
}

BASE = """<!doctype html><html lang="en"><head>
<meta charset="utf-8"><title>{{ title }} - rule workbench</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#222;font-size:14px}
header{background:#233b5d;color:#fff;padding:.5rem 1rem}header a{color:#fff;margin-right:1rem}
main{padding:1rem;max-width:75rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .45rem;text-align:left;vertical-align:top}th{background:#eef2f7}
.status-approved{color:#05620a}.status-draft{color:#8a5a00}.status-in-review{color:#0b4f8a}
.fired{color:#05620a;font-weight:600}.suppressed{color:#8a5a00}.now{color:#a40000}.no{color:#05620a}
.changed{color:#8a5a00}.box{border:1px solid #ccc;border-radius:4px;padding:.5rem 1rem;margin:.5rem 0}
.plain{background:#f6f8fa;white-space:pre-wrap;font-family:ui-monospace,monospace;padding:.5rem}
.msg{background:#e8f5e9;padding:.5rem}.error{background:#fdecea;padding:.5rem}
input[type=text]{width:7rem}button{margin:.25rem .25rem .25rem 0}
</style></head><body><header><b>HER2 CDS rule workbench</b> &nbsp;
<a href="/">Rules</a><a href="/run">Run a patient</a><a href="/lint">Lint</a></header>
<main>{% block body %}{% endblock %}</main></body></html>"""

INDEX = """{% extends "base" %}{% block body %}<h1>Rules</h1>
{% for rs in lib.rulesets %}<div class="box"><h2>{{ rs.name }} <small>{{ rs.version }}
<span class="status-{{ rs.spec.status }}">{{ rs.spec.status }}</span></small></h2>
<p>{{ rs.spec.description }} <small>({{ rs.source.name }}{% if rs.spec.approved_by %}; approved by
{{ rs.spec.approved_by }} on {{ rs.spec.approved_on }}{% endif %})</small></p>
{% if rs.rules %}<table><tr><th>rule</th><th>kind</th><th>title</th><th>evidence</th></tr>
{% for rid, c in rs.rules|dictsort %}<tr><td><a href="/rule/{{ rid }}">{{ rid }}</a></td>
<td>{{ c.rule.then.kind }}{% if c.rule.then.action %} ({{ c.rule.then.action }}){% endif %}</td>
<td>{{ c.rule.title }}</td><td>{{ c.rule.then.evidence|join(", ") or "none" }}
{% if c.rule.evidence_status == "unverified" %}<b>unverified</b>{% endif %}</td></tr>{% endfor %}</table>
{% endif %}</div>{% endfor %}{% endblock %}"""

RULE = """{% extends "base" %}{% block body %}
<h1>{{ c.rule.id }}</h1><p>{{ c.rule.title }} &mdash; <b>{{ rs.name }} {{ rs.version }}</b>
<span class="status-{{ rs.spec.status }}">{{ rs.spec.status }}</span> ({{ rs.source.name }})</p>
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
<h2>In plain language</h2><div class="plain" id="plain">{{ plain }}</div>
<h2>Decision table</h2><table id="decision"><tr><th>fact</th>
<th>test</th><th>value</th><th>parameter</th></tr>
{% for row in table %}<tr><td>{{ row.indent }}{{ row.fact }}</td><td>{{ row.op }}</td><td>{{ row.value }}</td>
<td>{{ row.param }}</td></tr>{% endfor %}</table>
<h2>Parameters</h2>
{% if params %}<form id="params" method="post" action="/rule/{{ c.rule.id }}/save">
<table><tr><th>parameter</th><th>value</th><th>unit</th><th>meaning</th><th>declared in</th></tr>
{% for p in params %}<tr><td>{{ p.name }}</td><td><input type="text" name="{{ p.name }}" value="{{ p.value }}"
 data-saved="{{ p.value }}"></td><td>{{ p.unit }}</td><td>{{ p.description }}</td><td>{{ p.file }}</td></tr>
{% endfor %}</table>
<button type="button" id="preview">Preview impact on sample patients</button>
<button type="submit" id="save">Save (bumps version, back to draft for review)</button></form>
{% else %}<p>This rule has no parameters; edit its YAML below.</p>{% endif %}
<div id="impact" class="box">Change a value and press <i>Preview
impact</i> to see which sample patients change.</div>
<h2>Try on one patient</h2><p><select id="sample">{% for n in samples %}<option>{{ n }}</option>{% endfor %}
</select> <button type="button" id="try">Run with the values above</button></p><div id="patient"></div>
<h2>Finding</h2><table><tr><th>code</th><td>{{ c.rule.then.code }}</td></tr>
<tr><th>kind</th><td>{{ c.rule.then.kind }} {{ c.rule.then.strength or c.rule.then.action or "" }}</td></tr>
<tr><th>summary</th><td>{{ c.rule.then.summary }}</td></tr>
<tr><th>detail</th><td>{{ c.rule.then.detail }}</td></tr>
<tr><th>evidence</th><td>{% for e in evidence %}<a href="{{ e.url }}">{{ e.label }}</a>: {{ e.citation }}<br>
{% endfor %}</td></tr></table>
<h2>Rule YAML</h2><form method="post" action="/rule/{{ c.rule.id }}/yaml">
<textarea name="text" rows="18" cols="110" id="yaml">{{ yaml_text }}</textarea><br>
<button type="submit" id="save-yaml">Save rule YAML</button></form>
<script>
const form = document.getElementById('params');
async function post(url, target, extra) {
  const data = form ? new FormData(form) : new FormData();
  for (const [k, v] of Object.entries(extra || {})) data.append(k, v);
  document.getElementById(target).innerHTML = 'running...';
  const r = await fetch(url, {method: 'POST', body: data});
  document.getElementById(target).innerHTML = await r.text();
}
const pv = document.getElementById('preview');
if (pv) pv.onclick = () => post('/impact', 'impact');
document.getElementById('try').onclick = () => post('/run/fragment', 'patient',
  {sample: document.getElementById('sample').value, rule: '{{ c.rule.id }}'});
</script>{% endblock %}"""

RUN = """{% extends "base" %}{% block body %}<h1>Run a patient</h1>
<form method="post" action="/run" enctype="multipart/form-data" class="box">
<label>Sample <select name="sample" id="sample">{% for n in samples %}
<option {% if n == chosen %}selected{% endif %}>
{{ n }}</option>{% endfor %}</select></label> or upload a bundle <input type="file" name="bundle">
<label>as of <input type="text" name="as_of" value="{{ as_of or '' }}" placeholder="sidecar or today"></label>
<button type="submit" id="run">Run</button></form>{{ fragment|safe }}{% endblock %}"""

PATIENT = """<div class="patient-result"><h3>{{ ev.patient }} as of {{ ev.as_of }}</h3>
{% if overrides %}<p>with unsaved values: {% for k, v in overrides.items() %}{{ k }} = {{ v }} {% endfor %}
</p>{% endif %}
<table class="findings"><tr><th>severity</th><th>code</th>
<th>action / strength</th><th>summary</th><th>rule version</th></tr>
{% for f in ev.findings %}<tr><td>{{ f.severity }}</td><td class="code">{{ f.code }}</td>
<td>{{ f.action or f.strength or "" }}</td><td>{{ f.summary }}
</td><td>{{ f.rule.ruleset }} {{ f.rule.version }}</td></tr>
{% else %}<tr><td colspan="5">No findings.</td></tr>{% endfor %}</table>
<h3>Why (every rule{% if only %} matching {{ only }}{% endif %})</h3>
<table class="explain"><tr><th>rule</th><th>outcome</th><th>why</th></tr>
{% for e in rows %}<tr><td>{{ e.rule_id }}</td><td class="{{ e.outcome.split()[0] }}">{{ e.outcome }}</td>
<td>{{ e.reason }}</td></tr>{% endfor %}</table></div>"""

LINT = """{% extends "base" %}{% block body %}<h1>Lint</h1>
<p id="lint-summary" class="{{ 'msg' if ok else 'error'
}}">{{ errors|length }} error(s), {{ warnings|length }}
warning(s){% if ok %}: the rules can go to review{% endif %}</p>
{% for title, items in (("Errors", errors), ("Warnings", warnings), ("Notes", notes)) %}{% if items %}
<h2>{{ title }}</h2><ul>{% for d in items %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}{% endfor %}
{% endblock %}"""

_ENV = Environment(
    loader=DictLoader(
        {"base": BASE, "index": INDEX, "rule": RULE, "run": RUN, "patient": PATIENT, "lint": LINT}
    ),
    autoescape=True,
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def plain_text(cond: Condition, library: RuleLibrary, indent: int = 0) -> str:
    """The condition as sentences a pharmacist reads (units and parameter names shown)."""
    pad = "    " * indent
    if isinstance(cond, Compare):
        unit = unit_for(cond.path, library, cond.param)
        value = "" if cond.op in ("exists", "missing") else f" {_fmt(cond.value)}{' ' + unit if unit else ''}"
        param = f"  [{cond.param}]" if cond.param else ""
        return f"{pad}- {label_for(cond.path)} {OPS[cond.op]}{value}{param}"
    head = f"{pad}{'ALL' if cond.op == 'all' else 'ANY'} of:"
    return "\n".join([head, *(plain_text(i, library, indent + 1) for i in cond.items)])


def decision_rows(cond: Condition, depth: int = 0) -> list[dict[str, str]]:
    """Rows of the decision table: one per comparison, groups shown as headings."""
    if isinstance(cond, Compare):
        return [
            {
                "indent": "\u2003" * depth,
                "fact": cond.path,
                "op": OPS[cond.op],
                "value": "" if cond.op in ("exists", "missing") else _fmt(cond.value),
                "param": f"${cond.param}" if cond.param else "",
            }
        ]
    rows = (
        []
        if depth == 0 and cond.op == "all"
        else [
            {"indent": "\u2003" * depth, "fact": f"{cond.op.upper()} of:", "op": "", "value": "", "param": ""}
        ]
    )
    for item in cond.items:
        rows += decision_rows(item, depth + (0 if depth == 0 and cond.op == "all" else 1))
    return rows


def _params_of(cond: Condition) -> list[str]:
    if isinstance(cond, Compare):
        return [cond.param] if cond.param else []
    out: list[str] = []
    for item in cond.items:
        out += [p for p in _params_of(item) if p not in out]
    return out


def create_app(rules_dir: Path, cohort_dir: Path) -> FastAPI:
    """The workbench application over one rules directory and one sample cohort."""
    app = FastAPI(title="HER2 CDS rule workbench", docs_url=None, redoc_url=None)
    rules_dir = Path(rules_dir)
    cohort, _rejected = load_cohort(Path(cohort_dir))
    by_name = {p.name: p for p in cohort}

    def library(overrides: dict[str, Any] | None = None) -> RuleLibrary:
        return load_library(rules_dir, statuses=WORKING, parameter_overrides=overrides)

    def page(name: str, **kw: Any) -> HTMLResponse:
        return HTMLResponse(_ENV.get_template(name).render(**kw))

    async def overrides_from(request: Request, lib: RuleLibrary) -> dict[str, Any]:
        form = await request.form()
        out: dict[str, Any] = {}
        for key, raw in form.items():
            if key in lib.parameters and isinstance(raw, str):
                try:
                    value = edit.coerce(lib.parameters[key], raw)
                except ValueError as exc:
                    raise HTTPException(400, f"{key}: {exc}") from exc
                if value != lib.parameters[key]:
                    out[key] = value
        return out

    def patient_fragment(
        lib: RuleLibrary,
        patient: CohortPatient,
        overrides: dict[str, Any],
        only: str | None,
        as_of: str | None = None,
    ) -> str:
        from cds.evaluate import parse_as_of

        result = run_patient(Evaluator(lib), patient, parse_as_of(as_of) if as_of else None)
        rows = [e for e in explain(lib, result) if not only or only in e.rule_id or e.outcome == "fired"]
        return _ENV.get_template("patient").render(
            ev=result.evaluation, rows=rows, overrides=overrides, only=only
        )

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return page("index", title="Rules", lib=library())

    @app.get("/rule/{rule_id}", response_class=HTMLResponse)
    def rule_page(rule_id: str, message: str | None = None, error: str | None = None) -> HTMLResponse:
        lib = library()
        try:
            rs, c = lib.rule(rule_id)
        except KeyError as exc:
            raise HTTPException(404, f"no rule {rule_id}") from exc
        params = []
        for name in _params_of(c.condition):
            owner = (
                next(r for r in lib.rulesets if name in r.spec.parameters)
                if any(name in r.spec.parameters for r in lib.rulesets)
                else None
            )
            spec = owner.spec.parameters[name] if owner else None
            params.append(
                {
                    "name": name,
                    "value": _fmt(lib.parameters[name]),
                    "unit": spec.unit if spec else "",
                    "description": spec.description if spec else "",
                    "file": owner.source.name if owner else "",
                }
            )
        evidence = [lib.evidence.evidence[k] for k in c.rule.then.evidence]
        return page(
            "rule",
            title=rule_id,
            rs=rs,
            c=c,
            plain=plain_text(c.condition, lib),
            table=decision_rows(c.condition),
            params=params,
            evidence=evidence,
            samples=sorted(by_name),
            yaml_text=edit.rule_text(rs.source, rule_id),
            message=message,
            error=error,
        )

    @app.post("/impact", response_class=HTMLResponse)
    async def impact(request: Request) -> HTMLResponse:
        saved = library()
        overrides = await overrides_from(request, saved)
        if not overrides:
            return HTMLResponse("<p class='none'>No unsaved changes: nothing to compare.</p>")
        try:
            edited = library(overrides)
        except RuleDefinitionError as exc:
            return HTMLResponse(f"<p class='error'>{exc}</p>", status_code=400)
        report = compare(
            saved,
            edited,
            cohort,
            old_label="saved rules",
            new_label="unsaved: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in overrides.items()),
        )
        return HTMLResponse(render_html_fragment(report, examples=5))

    @app.post("/run/fragment", response_class=HTMLResponse)
    async def run_fragment(request: Request) -> HTMLResponse:
        saved = library()
        overrides = await overrides_from(request, saved)
        form = await request.form()
        patient = by_name.get(str(form.get("sample")))
        if patient is None:
            raise HTTPException(404, "unknown sample")
        only = str(form.get("rule") or "") or None
        lib = library(overrides) if overrides else saved
        return HTMLResponse(patient_fragment(lib, patient, overrides, only))

    @app.post("/rule/{rule_id}/save")
    async def save(rule_id: str, request: Request) -> RedirectResponse:
        saved = library()
        overrides = await overrides_from(request, saved)
        if not overrides:
            return RedirectResponse(f"/rule/{rule_id}?message=Nothing+changed", status_code=303)
        try:
            versions = edit.set_parameters(rules_dir, overrides)
        except (RuleDefinitionError, ConfigurationError, ValueError) as exc:
            return RedirectResponse(f"/rule/{rule_id}?error={_q(str(exc))}", status_code=303)
        report = lint(rules_dir, cohort=None, base=None)
        msg = (
            f"Saved {', '.join(f'{f} (now {v}, draft)' for f, v in versions.items())}. "
            f"Lint: {len(report.of('error'))} error(s), {len(report.of('warning'))} warning(s)."
        )
        return RedirectResponse(f"/rule/{rule_id}?message={_q(msg)}", status_code=303)

    @app.post("/rule/{rule_id}/yaml")
    async def save_yaml(rule_id: str, request: Request) -> RedirectResponse:
        form = await request.form()
        lib = library()
        try:
            rs, _c = lib.rule(rule_id)
            new_id, version = edit.replace_rule(rs.source, rule_id, str(form.get("text") or ""))
        except (RuleDefinitionError, ValueError, KeyError) as exc:
            return RedirectResponse(f"/rule/{rule_id}?error={_q(str(exc))}", status_code=303)
        return RedirectResponse(
            f"/rule/{new_id}?message={_q(f'Saved {rs.source.name} {version} (draft)')}", status_code=303
        )

    @app.get("/run", response_class=HTMLResponse)
    def run_form() -> HTMLResponse:
        return page(
            "run", title="Run a patient", samples=sorted(by_name), chosen=None, fragment="", as_of=None
        )

    @app.post("/run", response_class=HTMLResponse)
    async def run(request: Request) -> HTMLResponse:
        form = await request.form()
        lib = library()
        upload = form.get("bundle")
        as_of = str(form.get("as_of") or "") or None
        chosen = str(form.get("sample") or "").strip() or None
        try:
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                raw = raw_patient_from_bytes(data, upload.filename)
                patient = CohortPatient(upload.filename, raw, None, None, upload.filename)
            elif chosen in by_name:
                patient = by_name[chosen]
            else:
                raise HTTPException(400, "choose a sample or upload a bundle")
            fragment = patient_fragment(lib, patient, {}, None, as_of)
        except (InputRejected, ValueError) as exc:
            fragment = f"<p class='error'>{exc}</p>"
        return page(
            "run",
            title="Run a patient",
            samples=sorted(by_name),
            chosen=chosen,
            fragment=fragment,
            as_of=as_of,
        )

    @app.get("/lint", response_class=HTMLResponse)
    def lint_page() -> HTMLResponse:
        report = lint(rules_dir, cohort=Path(cohort_dir), base="HEAD")
        return page(
            "lint",
            title="Lint",
            ok=report.ok,
            errors=report.of("error"),
            warnings=report.of("warning"),
            notes=report.of("info"),
        )

    return app


def _q(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text[:600])

"""Rule pages: the rule in plain language and as a decision table, its parameters (preview the
impact of unsaved values on the sample cohort, try them on one patient, save), its YAML, and the
*Run a patient* page.

Unsaved parameter values are evaluated in memory (``parameter_overrides``); a rule's form may
change only the parameters its own ruleset declares (shared ones are shown read-only with the
ruleset that owns them), and a save made from an older version of the file is refused (409).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from ruamel.yaml.error import YAMLError
from starlette.datastructures import FormData, UploadFile

from cds.authoring import edit
from cds.authoring.cohort import CohortPatient, run_patient
from cds.authoring.explain import explain, label_for, unit_for
from cds.authoring.impact import compare, render_html_fragment
from cds.authoring.lint import lint
from cds.authoring.review import Progress
from cds.authoring.workbench.bench import (
    CONTROL_FIELDS,
    Bench,
    check_base,
    fingerprint,
    job_started,
    text_field,
)
from cds.authoring.workbench.templates import render
from cds.engine.conditions import Compare, Condition
from cds.engine.library import CompiledRule, CompiledRuleset, RuleLibrary
from cds.errors import ConfigurationError, EditRejected, InputRejected, RuleDefinitionError
from cds.evaluate import Evaluator, parse_as_of
from cds.fhir.source import raw_patient_from_bytes

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


def fmt(value: Any) -> str:
    """A parameter value as the form shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def plain_text(cond: Condition, library: RuleLibrary, indent: int = 0) -> str:
    """The condition as sentences a pharmacist reads (units and parameter names shown)."""
    pad = "    " * indent
    if isinstance(cond, Compare):
        unit = unit_for(cond.path, library, cond.param)
        value = "" if cond.op in ("exists", "missing") else f" {fmt(cond.value)}{' ' + unit if unit else ''}"
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
                "value": "" if cond.op in ("exists", "missing") else fmt(cond.value),
                "param": f"${cond.param}" if cond.param else "",
            }
        ]
    flat = depth == 0 and cond.op == "all"
    heading = {"indent": "\u2003" * depth, "fact": f"{cond.op.upper()} of:"}
    heading |= {"op": "", "value": "", "param": ""}
    rows = [] if flat else [heading]
    for item in cond.items:
        rows += decision_rows(item, depth + (0 if flat else 1))
    return rows


def params_of(cond: Condition) -> list[str]:
    """The parameters a condition reads, in order of first use."""
    if isinstance(cond, Compare):
        return [cond.param] if cond.param else []
    out: list[str] = []
    for item in cond.items:
        out += [p for p in params_of(item) if p not in out]
    return out


def owner_of(lib: RuleLibrary, name: str) -> CompiledRuleset | None:
    """The loaded ruleset that declares a parameter."""
    return next((r for r in lib.rulesets if name in r.spec.parameters), None)


def parameter_rows(lib: RuleLibrary, rs: CompiledRuleset, c: CompiledRule) -> list[dict[str, Any]]:
    """The rule's parameters; ``own`` ones (declared by its ruleset) are editable on this page."""
    rows = []
    for name in params_of(c.condition):
        owner = owner_of(lib, name)
        spec = owner.spec.parameters[name] if owner else None
        link = (
            next((rid for rid, oc in sorted(owner.rules.items()) if name in params_of(oc.condition)), None)
            if owner is not None and owner is not rs
            else None
        )
        rows.append(
            {
                "name": name,
                "value": fmt(lib.parameters[name]),
                "unit": spec.unit if spec else "",
                "description": spec.description if spec else "",
                "file": owner.source.name if owner else "",
                "ruleset": owner.name if owner else "",
                "own": owner is rs,
                "link": link,
            }
        )
    return rows


def overrides_from(form: FormData, lib: RuleLibrary, rs: CompiledRuleset) -> dict[str, Any]:
    """Typed parameter values of a rule form that differ from the saved ones.

    Only parameters declared by the rule's own ruleset may appear (400 otherwise), and each value
    must parse to the parameter's type (400 with the reason)."""
    out: dict[str, Any] = {}
    for key, raw in form.multi_items():
        if key in CONTROL_FIELDS:
            continue
        if key not in rs.spec.parameters:
            owner = owner_of(lib, key)
            if owner is not None:
                raise EditRejected(
                    f"parameter {key} belongs to ruleset {owner.name} ({owner.source.name}); this form may "
                    f"change only parameters of ruleset {rs.name} ({rs.source.name})"
                )
            raise EditRejected(f"unknown field {key!r}: not a parameter of ruleset {rs.name}")
        if not isinstance(raw, str):
            raise EditRejected(f"{key}: expected a value, got a file")
        try:
            value = edit.coerce(lib.parameters[key], raw)
        except ValueError as exc:
            raise EditRejected(f"{key}: {exc}") from exc
        if value != lib.parameters[key]:
            out[key] = value
    return out


def find_rule(lib: RuleLibrary, rule_id: str) -> tuple[CompiledRuleset, CompiledRule]:
    """A rule by id, or 404."""
    try:
        return lib.rule(rule_id)
    except KeyError as exc:
        raise HTTPException(404, f"no rule {rule_id}") from exc


def rule_of_form(form: FormData, lib: RuleLibrary) -> tuple[CompiledRuleset, CompiledRule]:
    """The rule a preview or try-on-one-patient request is about (its ``rule`` field)."""
    rule_id = text_field(form, "rule")
    if not rule_id:
        raise EditRejected("the request does not name its rule (field rule)")
    return find_rule(lib, rule_id)


def patient_fragment(
    lib: RuleLibrary,
    patient: CohortPatient,
    overrides: dict[str, Any],
    only: str | None,
    as_of: str | None = None,
) -> str:
    """Findings and the *why* table of one patient under a library."""
    result = run_patient(Evaluator(lib), patient, parse_as_of(as_of) if as_of else None)
    rows = [e for e in explain(lib, result) if not only or only in e.rule_id or e.outcome == "fired"]
    return render("patient", ev=result.evaluation, rows=rows, overrides=overrides, only=only)


def _q(text: str) -> str:
    return quote_plus(text[:600])


def register(app: FastAPI, bench: Bench) -> None:
    """Attach the rule pages and the *Run a patient* page."""

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return bench.page(request, "index", title="Rules", lib=bench.library())

    @app.get("/rule/{rule_id}", response_class=HTMLResponse)
    def rule_page(request: Request, rule_id: str, message: str | None = None) -> HTMLResponse:
        lib = bench.library()
        rs, c = find_rule(lib, rule_id)
        params = parameter_rows(lib, rs, c)
        return bench.page(
            request,
            "rule",
            title=rule_id,
            rs=rs,
            c=c,
            plain=plain_text(c.condition, lib),
            table=decision_rows(c.condition),
            params=params,
            own=any(p["own"] for p in params),
            evidence=[lib.evidence.evidence[k] for k in c.rule.then.evidence],
            samples=sorted(bench.by_name),
            yaml_text=edit.rule_text(rs.source, rule_id),
            base=fingerprint(rs.source),
            message=message,
        )

    @app.post("/impact")
    async def impact(request: Request) -> Response:
        form = await request.form()
        saved = bench.library()
        rs, _c = rule_of_form(form, saved)
        overrides = overrides_from(form, saved, rs)
        if not overrides:
            return JSONResponse({"html": "<p class='none'>No unsaved changes: nothing to compare.</p>"})
        try:
            edited = bench.library(overrides)
        except RuleDefinitionError as exc:
            raise EditRejected(str(exc)) from exc
        label = "unsaved: " + ", ".join(f"{k} = {fmt(v)}" for k, v in overrides.items())

        def work(progress: Progress) -> str:
            report = compare(
                saved, edited, bench.cohort, old_label="saved rules", new_label=label, progress=progress
            )
            return render_html_fragment(report, examples=5)

        return job_started(bench.jobs.start("impact on the sample patients", work))

    @app.post("/run/fragment", response_class=HTMLResponse)
    async def run_fragment(request: Request) -> HTMLResponse:
        form = await request.form()
        saved = bench.library()
        rs, c = rule_of_form(form, saved)
        overrides = overrides_from(form, saved, rs)
        patient = bench.by_name.get(text_field(form, "sample"))
        if patient is None:
            raise HTTPException(404, "unknown sample")
        lib = bench.library(overrides) if overrides else saved

        fragment = await run_in_threadpool(bench.locked, patient_fragment, lib, patient, overrides, c.rule.id)
        return HTMLResponse(fragment)

    def save_parameters(rule_id: str, form: FormData) -> str:
        with bench.write_lock:
            saved = bench.library()
            rs, _c = find_rule(saved, rule_id)
            check_base(form, rs.source)
            overrides = overrides_from(form, saved, rs)
            if not overrides:
                return "Nothing changed"
            try:
                versions = edit.set_parameters(bench.rules_dir, overrides)
            except (RuleDefinitionError, ConfigurationError, ValueError) as exc:
                raise EditRejected(str(exc)) from exc
        report = lint(bench.rules_dir, cohort=None, base=None)
        return (
            f"Saved {', '.join(f'{f} (now {v}, draft)' for f, v in versions.items())}. "
            f"Lint: {len(report.of('error'))} error(s), {len(report.of('warning'))} warning(s)."
        )

    @app.post("/rule/{rule_id}/save")
    async def save(rule_id: str, request: Request) -> RedirectResponse:
        form = await request.form()
        message = await run_in_threadpool(save_parameters, rule_id, form)
        return RedirectResponse(f"/rule/{rule_id}?message={_q(message)}", status_code=303)

    def save_rule_text(rule_id: str, form: FormData) -> tuple[str, str]:
        text = text_field(form, "text")
        with bench.write_lock:
            rs, _c = find_rule(bench.library(), rule_id)
            check_base(form, rs.source)
            try:
                new_id, version = edit.replace_rule(rs.source, rule_id, text)
            except (RuleDefinitionError, ValueError, KeyError, YAMLError) as exc:
                raise EditRejected(f"rule YAML not saved: {exc}") from exc
        return new_id, f"Saved {rs.source.name} {version} (draft)"

    @app.post("/rule/{rule_id}/yaml")
    async def save_yaml(rule_id: str, request: Request) -> RedirectResponse:
        form = await request.form()
        new_id, message = await run_in_threadpool(save_rule_text, rule_id, form)
        return RedirectResponse(f"/rule/{new_id}?message={_q(message)}", status_code=303)

    @app.get("/run", response_class=HTMLResponse)
    def run_form(request: Request) -> HTMLResponse:
        return bench.page(
            request, "run", title="Run a patient", samples=sorted(bench.by_name), chosen=None, fragment="",
            as_of=None,
        )

    @app.post("/run", response_class=HTMLResponse)
    async def run(request: Request) -> HTMLResponse:
        form = await request.form()
        upload = form.get("bundle")
        as_of = text_field(form, "as_of").strip() or None
        chosen = text_field(form, "sample").strip() or None
        lib = bench.library()
        status = 200
        try:
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                name = Path(upload.filename).name
                patient = CohortPatient(name, raw_patient_from_bytes(data, name), None, None, name)
            elif chosen in bench.by_name:
                patient = bench.by_name[chosen]
            else:
                raise ValueError("choose a sample or upload a bundle")
            fragment = await run_in_threadpool(bench.locked, patient_fragment, lib, patient, {}, None, as_of)
        except (InputRejected, ValueError) as exc:
            fragment, status = render("run-error", reason=str(exc)), 400
        return bench.page(
            request, "run", status, title="Run a patient", samples=sorted(bench.by_name), chosen=chosen,
            fragment=fragment, as_of=as_of,
        )

    @app.get("/lint", response_class=HTMLResponse)
    def lint_page(request: Request) -> HTMLResponse:
        return bench.page(request, "lint", title="Lint")

    @app.post("/lint/run")
    def lint_run() -> JSONResponse:
        def work(progress: Progress) -> str:
            progress("checking every rule file against the samples and the last commit", 0, 0)
            report = lint(bench.rules_dir, cohort=bench.cohort_dir, base="HEAD")
            return render(
                "lint-result",
                ok=report.ok,
                errors=report.of("error"),
                warnings=report.of("warning"),
                notes=report.of("info"),
            )

        return job_started(bench.jobs.start("lint", work))

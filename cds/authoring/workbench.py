"""``cds workbench``: a local web page where a pharmacist browses, tunes and checks rules.

FastAPI with server-rendered HTML and one static script (no build step, nothing fetched from the
internet). Unsaved parameter edits are evaluated in memory (``parameter_overrides``) so the impact
on the sample cohort and on one patient is visible before anything is written; saving writes the
YAML surgically (comments and order kept), bumps the version and returns the file to draft for
review, then lint runs on the result.

Every form carries the content hash of the file it was rendered from, so a save made from a
stale page is refused (409) instead of overwriting a newer edit; ``websecurity`` pins Host and
Origin and checks the CSRF token of every state-changing request.
"""

from __future__ import annotations

import hashlib
import math
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from ruamel.yaml.error import YAMLError
from starlette.datastructures import UploadFile

from cds import config
from cds.authoring import edit
from cds.authoring.cohort import CohortPatient, load_cohort, run_patient
from cds.authoring.explain import explain, label_for, unit_for
from cds.authoring.impact import compare, render_html_fragment
from cds.authoring.jobs import Jobs, Progress
from cds.authoring.lint import lint
from cds.authoring.websecurity import CSRF_FIELD, Guard, Refused
from cds.engine.conditions import Compare, Condition
from cds.engine.library import CompiledRule, CompiledRuleset, RuleLibrary, load_library
from cds.errors import ConfigurationError, InputRejected, RuleDefinitionError
from cds.evaluate import Evaluator
from cds.fhir.source import raw_patient_from_bytes

WORKING = config.WORKING_STATUSES
FORM_FIELDS = {CSRF_FIELD, "base"}
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
STATIC = {"workbench.css": "text/css", "workbench.js": "text/javascript"}
_ENV = Environment(loader=PackageLoader("cds.authoring", "templates"), autoescape=True)
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


def content_hash(path: Path) -> str:
    """The version token a form carries: SHA-256 of the file it was rendered from."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BadInput(ValueError):
    """A form value the workbench refuses (400 with the reason)."""


def coerce_value(name: str, current: Any, raw: str) -> Any:
    """A form value typed like the parameter's current value; non-finite numbers are refused."""
    try:
        value = edit.coerce(current, raw)
    except ValueError as exc:
        raise BadInput(f"{name}: {raw!r} is not a valid value ({exc})") from exc
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise BadInput(f"{name}: {raw!r} is not a finite number")
    if isinstance(current, list) and not value:
        raise BadInput(f"{name}: the list may not be empty")
    return value


def form_overrides(
    form: dict[str, Any], parameters: dict[str, Any], allowed: set[str] | None = None
) -> dict[str, Any]:
    """Changed parameter values of a form; ``allowed`` limits which parameters it may set."""
    out: dict[str, Any] = {}
    for key, raw in form.items():
        if key in FORM_FIELDS or key in ("sample", "rule"):
            continue
        if key not in parameters:
            raise BadInput(f"{key!r} is not a parameter")
        if allowed is not None and key not in allowed:
            raise BadInput(
                f"{key} is not a parameter of this rule's ruleset: change it from a rule of the "
                "ruleset that declares it"
            )
        if not isinstance(raw, str):
            raise BadInput(f"{key}: expected a text value")
        value = coerce_value(key, parameters[key], raw)
        if value != parameters[key]:
            out[key] = value
    return out


def create_app(rules_dir: Path, cohort_dir: Path, *, host: str = "127.0.0.1", port: int = 8765) -> FastAPI:
    """The workbench application over one rules directory and one sample cohort, bound to host:port."""
    app = FastAPI(title="HER2 CDS rule workbench", docs_url=None, redoc_url=None, openapi_url=None)
    guard = Guard(host, port)
    guard.install(app)
    jobs = Jobs()
    write_lock = threading.Lock()
    rules_dir = Path(rules_dir)
    cohort_path = Path(cohort_dir)
    cohort, _rejected = load_cohort(cohort_path)
    by_name = {p.name: p for p in cohort}

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> PlainTextResponse:
        return PlainTextResponse(f"Refused: {exc}", status_code=403)

    async def csrf(request: Request) -> None:
        await guard.check_csrf(request)

    checked = [Depends(csrf)]

    def library(overrides: dict[str, Any] | None = None) -> RuleLibrary:
        return load_library(rules_dir, statuses=WORKING, parameter_overrides=overrides)

    def session(request: Request) -> str:
        return str(request.state.session)

    def render(request: Request, name: str, status: int = 200, **kw: Any) -> HTMLResponse:
        token = guard.token(session(request))
        return HTMLResponse(_ENV.get_template(name).render(csrf=token, **kw), status_code=status)

    def message(
        request: Request, status: int, title: str, text: str, back: str | None = None
    ) -> HTMLResponse:
        return render(request, "message.html", status, title=title, message=text, back=back)

    def find_rule(lib: RuleLibrary, rule_id: str) -> tuple[CompiledRuleset, CompiledRule]:
        try:
            return lib.rule(rule_id)
        except KeyError as exc:
            raise HTTPException(404, f"no rule {rule_id}") from exc

    def stale(request: Request, path: Path, sent: Any, back: str) -> HTMLResponse | None:
        """409 when the form was rendered from another version of the file than the one on disk."""
        if sent == content_hash(path):
            return None
        data = edit.read(path)
        return message(
            request,
            409,
            "Not saved: the file changed",
            f"Not saved: {path.name} was changed since this page was loaded (it is now version "
            f"{data.get('version')}, status {data.get('status')}). Nothing was overwritten. Reload the "
            "page to see the current content, then make your change again.",
            back,
        )

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
        return _ENV.get_template("patient.html").render(
            ev=result.evaluation, rows=rows, overrides=overrides, only=only
        )

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        body = resources.files("cds.authoring").joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name])

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return render(request, "index.html", title="Rules", lib=library())

    def rule_view(
        request: Request,
        rule_id: str,
        *,
        status: int = 200,
        message: str | None = None,
        error: str | None = None,
        values: dict[str, str] | None = None,
        yaml_text: str | None = None,
    ) -> HTMLResponse:
        lib = library()
        rs, c = find_rule(lib, rule_id)
        params = []
        for name in _params_of(c.condition):
            owner = next((r for r in lib.rulesets if name in r.spec.parameters), None)
            spec = owner.spec.parameters[name] if owner else None
            params.append(
                {
                    "name": name,
                    "value": (values or {}).get(name, _fmt(lib.parameters[name])),
                    "unit": spec.unit if spec else "",
                    "description": spec.description if spec else "",
                    "source": (spec.source or "") if spec else "",
                    "file": owner.source.name if owner else "",
                    "editable": owner is rs,
                }
            )
        evidence = [lib.evidence.evidence[k] for k in c.rule.then.evidence]
        return render(
            request,
            "rule.html",
            status,
            title=rule_id,
            rs=rs,
            c=c,
            plain=plain_text(c.condition, lib),
            table=decision_rows(c.condition),
            params=params,
            evidence=evidence,
            samples=sorted(by_name),
            yaml_text=yaml_text if yaml_text is not None else edit.rule_text(rs.source, rule_id),
            base=content_hash(rs.source),
            message=message,
            error=error,
        )

    @app.get("/rule/{rule_id}", response_class=HTMLResponse)
    def rule_page(request: Request, rule_id: str, message: str | None = None) -> HTMLResponse:
        return rule_view(request, rule_id, message=message)

    @app.post("/impact", dependencies=checked)
    async def impact(request: Request) -> Response:
        saved = library()
        form = dict((await request.form()).items())
        try:
            overrides = form_overrides(form, saved.parameters)
        except BadInput as exc:
            return HTMLResponse(f"<p class='error'>{Markup.escape(str(exc))}</p>", status_code=400)
        if not overrides:
            return HTMLResponse("<p class='none'>No unsaved changes: nothing to compare.</p>")
        label = "unsaved: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in overrides.items())

        def work(progress: Progress) -> tuple[int, str]:
            try:
                edited = library(overrides)
            except RuleDefinitionError as exc:
                return 400, f"<p class='error'>{Markup.escape(str(exc))}</p>"
            report = compare(
                saved, edited, cohort, old_label="saved rules", new_label=label, progress=progress
            )
            return 200, render_html_fragment(report, examples=5)

        job = jobs.start(session(request), "impact on sample patients", work)
        return JSONResponse({"id": job.id})

    @app.get("/jobs/{job_id}")
    def job_state(request: Request, job_id: str) -> JSONResponse:
        job = jobs.get(job_id, session(request))
        if job is None:
            raise HTTPException(404, "no such job")
        return JSONResponse(job.state())

    @app.post("/run/fragment", response_class=HTMLResponse, dependencies=checked)
    async def run_fragment(request: Request) -> HTMLResponse:
        saved = library()
        form = dict((await request.form()).items())
        try:
            overrides = form_overrides(form, saved.parameters)
        except BadInput as exc:
            return HTMLResponse(f"<p class='error'>{Markup.escape(str(exc))}</p>", status_code=400)
        patient = by_name.get(str(form.get("sample")))
        if patient is None:
            return HTMLResponse("<p class='error'>unknown sample</p>", status_code=404)
        only = str(form.get("rule") or "") or None
        lib = library(overrides) if overrides else saved
        return HTMLResponse(patient_fragment(lib, patient, overrides, only))

    @app.post("/rule/{rule_id}/save", dependencies=checked)
    async def save(request: Request, rule_id: str) -> Response:
        form = dict((await request.form()).items())
        values = {k: v for k, v in form.items() if isinstance(v, str) and k not in FORM_FIELDS}
        with write_lock:
            saved = library()
            rs, _c = find_rule(saved, rule_id)
            conflict = stale(request, rs.source, form.get("base"), f"/rule/{rule_id}")
            if conflict is not None:
                return conflict
            try:
                overrides = form_overrides(form, saved.parameters, set(rs.spec.parameters))
                if not overrides:
                    return RedirectResponse(f"/rule/{rule_id}?message=Nothing+changed", status_code=303)
                versions = edit.set_parameters(rules_dir, overrides)
            except (BadInput, RuleDefinitionError, ConfigurationError, ValueError) as exc:
                return rule_view(request, rule_id, status=400, error=f"Not saved: {exc}", values=values)
        report = lint(rules_dir, cohort=None, base=None)
        msg = (
            f"Saved {', '.join(f'{f} (now {v}, draft)' for f, v in versions.items())}. "
            f"Lint: {len(report.of('error'))} error(s), {len(report.of('warning'))} warning(s)."
        )
        return RedirectResponse(f"/rule/{rule_id}?message={_q(msg)}", status_code=303)

    @app.post("/rule/{rule_id}/yaml", dependencies=checked)
    async def save_yaml(request: Request, rule_id: str) -> Response:
        form = await request.form()
        text = form.get("text")
        if not isinstance(text, str):
            return message(request, 400, "Not saved", "the rule YAML is missing", f"/rule/{rule_id}")
        with write_lock:
            rs, _c = find_rule(library(), rule_id)
            conflict = stale(request, rs.source, form.get("base"), f"/rule/{rule_id}")
            if conflict is not None:
                return conflict
            try:
                new_id, version = edit.replace_rule(rs.source, rule_id, text)
            except (
                YAMLError,
                RuleDefinitionError,
                ConfigurationError,
                ValueError,
                KeyError,
                TypeError,
            ) as exc:
                reason = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
                return rule_view(request, rule_id, status=400, error=f"Not saved: {reason}", yaml_text=text)
        return RedirectResponse(
            f"/rule/{new_id}?message={_q(f'Saved {rs.source.name} {version} (draft)')}", status_code=303
        )

    def run_page(request: Request, status: int = 200, **kw: Any) -> HTMLResponse:
        kw.setdefault("chosen", None)
        kw.setdefault("fragment", "")
        kw.setdefault("as_of", None)
        return render(request, "run.html", status, title="Run a patient", samples=sorted(by_name), **kw)

    @app.get("/run", response_class=HTMLResponse)
    def run_form(request: Request) -> HTMLResponse:
        return run_page(request)

    @app.post("/run", response_class=HTMLResponse, dependencies=checked)
    async def run(request: Request) -> HTMLResponse:
        form = await request.form()
        upload = form.get("bundle")
        as_of = str(form.get("as_of") or "").strip() or None
        chosen = str(form.get("sample") or "").strip() or None
        try:
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read(MAX_UPLOAD_BYTES + 1)
                if len(data) > MAX_UPLOAD_BYTES:
                    raise ValueError(f"the bundle is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
                name = Path(upload.filename).name
                patient = CohortPatient(name, raw_patient_from_bytes(data, name), None, None, name)
            elif chosen in by_name:
                patient = by_name[chosen]
            else:
                return run_page(request, 400, as_of=as_of, error="choose a sample or upload a bundle")
            fragment = patient_fragment(library(), patient, {}, None, as_of)
        except (InputRejected, ValueError) as exc:
            return run_page(request, 400, chosen=chosen, as_of=as_of, error=str(exc))
        return run_page(request, chosen=chosen, as_of=as_of, fragment=Markup(fragment))

    @app.get("/lint", response_class=HTMLResponse)
    def lint_page(request: Request) -> HTMLResponse:
        return render(request, "lint.html", title="Lint")

    @app.post("/lint/run", dependencies=checked)
    def lint_run(request: Request) -> JSONResponse:
        def work(progress: Progress) -> tuple[int, str]:
            report = lint(rules_dir, cohort=cohort_path, base="HEAD", progress=progress)
            html = _ENV.get_template("lint_result.html").render(
                ok=report.ok,
                errors=report.of("error"),
                warnings=report.of("warning"),
                notes=report.of("info"),
                acknowledged=[],
            )
            return 200, html

        job = jobs.start(session(request), "lint (sample patients evaluated)", work)
        return JSONResponse({"id": job.id})

    return app


def _q(text: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(text[:600])

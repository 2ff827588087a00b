"""Knowledge pages: search across rules and knowledge, browse the catalogue, value sets and cues,
and add a product or a member (name, code, unit spelling, cue phrase) with its source.

As for parameters, an addition is previewed on the sample cohort (and on one patient) before it is
saved: it is applied to a temporary copy of the rules directory, which the engine's own loaders
must accept (else 400 with their reason). Saving re-checks the file's hash (409 when stale),
writes it surgically, bumps its version and returns it to draft.
"""

from __future__ import annotations

from typing import get_args
from urllib.parse import quote_plus

import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from ruamel.yaml.error import YAMLError
from starlette.datastructures import FormData

from cds.authoring import knowledge, knowledge_edit
from cds.authoring.impact import compare, render_html_fragment
from cds.authoring.review import Progress
from cds.authoring.workbench.bench import Bench, check_base, fingerprint, job_started, text_field
from cds.authoring.workbench.rules_views import patient_fragment
from cds.errors import ConfigurationError, EditRejected, RuleDefinitionError
from cds.knowledge.catalogue import Route

ROUTES = get_args(Route)


def edit_of_form(form: FormData) -> knowledge_edit.KnowledgeEdit:
    """The addition a knowledge form asks for (400 with the reason when a field is wrong)."""
    try:
        if text_field(form, "op") == "product":
            fields = {
                name: text_field(form, name)
                for name in ("display", "agents", "rxnorm", "names", "covers", "route", "source")
            }
            return knowledge_edit.product_edit(text_field(form, "product_id"), fields)
        if text_field(form, "op") == "member":
            return knowledge_edit.member_edit(
                text_field(form, "file"),
                text_field(form, "path"),
                text_field(form, "member"),
                text_field(form, "source"),
                text_field(form, "factor"),
            )
    except ValueError as exc:
        raise EditRejected(str(exc)) from exc
    raise EditRejected("unknown knowledge edit (field op must be member or product)")


def validated(bench: Bench, change: knowledge_edit.KnowledgeEdit) -> str:
    """The edited file's text once the engine's loaders accept it (400 with their reason)."""
    try:
        return knowledge_edit.validated_text(bench.rules_dir, change)
    except (ValueError, YAMLError) as exc:
        raise EditRejected(f"not saved: {exc}") from exc
    except (RuleDefinitionError, ConfigurationError) as exc:
        raise EditRejected(f"not saved: the engine's loaders refuse it: {exc.reason}") from exc


def _status(bench: Bench, rel: str) -> tuple[str, str]:
    data = yaml.safe_load((bench.rules_dir / rel).read_text(encoding="utf-8")) or {}
    return str(data.get("version", "")), str(data.get("status", "approved"))


def register(app: FastAPI, bench: Bench) -> None:
    """Attach search and the knowledge pages."""

    @app.get("/search", response_class=HTMLResponse)
    def search(request: Request, q: str = "") -> HTMLResponse:
        hits = knowledge.search(bench.rules_dir, bench.library(), q) if q.strip() else []
        return bench.page(request, "search", title="Search", q=q, hits=hits)

    @app.get("/knowledge", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        pages = knowledge.pages(bench.rules_dir)
        files = []
        for rel in knowledge.KNOWLEDGE_FILES:
            version, status = _status(bench, rel)
            mine = [p for p in pages if p.file == rel]
            links = [{"title": p.title, "link": knowledge.page_link(p.file, p.path)} for p in mine]
            files.append({"file": rel, "version": version, "status": status, "pages": links})
        return bench.page(request, "knowledge", title="Knowledge", files=files)

    @app.get("/knowledge/entry", response_class=HTMLResponse)
    def entry(request: Request, file: str, path: str, message: str | None = None) -> HTMLResponse:
        found = knowledge.page(bench.rules_dir, file, path) if file in knowledge.KNOWLEDGE_FILES else None
        if found is None:
            raise HTTPException(404, f"no knowledge entry {path} in {file}")
        version, status = _status(bench, file)
        return bench.page(
            request,
            "knowledge-entry",
            title=found.title,
            page=found,
            version=version,
            status=status,
            entry_yaml=yaml.safe_dump(found.data, allow_unicode=True, sort_keys=False, width=100),
            base=fingerprint(bench.rules_dir / file),
            samples=sorted(bench.by_name),
            message=message,
        )

    @app.get("/knowledge/new-product", response_class=HTMLResponse)
    def new_product(request: Request) -> HTMLResponse:
        rel = "catalogue/products.yaml"
        version, status = _status(bench, rel)
        return bench.page(
            request,
            "product",
            title="Add a product",
            version=version,
            status=status,
            base=fingerprint(bench.rules_dir / rel),
            agents=bench.library().catalogue.agent_ids(),
            routes=ROUTES,
            samples=sorted(bench.by_name),
        )

    @app.post("/knowledge/preview")
    async def preview(request: Request) -> Response:
        form = await request.form()
        change = edit_of_form(form)
        text = await run_in_threadpool(validated, bench, change)
        saved = bench.library()

        def work(progress: Progress) -> str:
            progress("loading the edited knowledge", 0, 0)
            with knowledge_edit.edited_copy(bench.rules_dir, change.file, text) as edited:
                report = compare(
                    saved,
                    edited,
                    bench.cohort,
                    old_label="saved knowledge",
                    new_label="unsaved: " + change.summary(),
                    progress=progress,
                )
            return render_html_fragment(report, examples=5)

        return job_started(bench.jobs.start("impact on the sample patients", work))

    @app.post("/knowledge/try", response_class=HTMLResponse)
    async def try_patient(request: Request) -> HTMLResponse:
        form = await request.form()
        change = edit_of_form(form)
        patient = bench.by_name.get(text_field(form, "sample"))
        if patient is None:
            raise HTTPException(404, "unknown sample")
        text = await run_in_threadpool(validated, bench, change)

        def evaluate() -> str:
            with knowledge_edit.edited_copy(bench.rules_dir, change.file, text) as edited:
                return patient_fragment(edited, patient, {}, None)

        return HTMLResponse(await run_in_threadpool(bench.locked, evaluate))

    def save_change(form: FormData) -> tuple[str, str]:
        change = edit_of_form(form)
        path = bench.rules_dir / change.file
        with bench.write_lock:
            check_base(form, path, "this knowledge file")
            text = validated(bench, change)
            path.write_text(text, encoding="utf-8")
        version = knowledge_edit.version_of(text)
        if isinstance(change, knowledge_edit.ProductEdit):
            link = knowledge.page_link(change.file, f"products.{change.product_id}")
        else:
            link = knowledge.page_link(change.file, _page_of(change.path, bench))
        return link, f"Saved {change.file} (now {version}, draft): {change.summary()}"

    @app.post("/knowledge/save")
    async def save(request: Request) -> RedirectResponse:
        form = await request.form()
        link, message = await run_in_threadpool(save_change, form)
        return RedirectResponse(f"{link}&message={quote_plus(message[:600])}", status_code=303)


def _page_of(member_path: str, bench: Bench) -> str:
    """The page holding a member list (the longest page path that prefixes it)."""
    pages = knowledge.pages(bench.rules_dir)
    candidates = [p.path for p in pages if (member_path + ".").startswith(p.path + ".")]
    return max(candidates, key=len) if candidates else member_path.split(".")[0]

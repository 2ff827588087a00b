"""The Review page: every pending change side by side (YAML diff and plain language), and the
lifecycle of each rule and knowledge file (submit for review, approve, back to draft, retire).

Approval runs as a background job with progress (lint, then every embedded test case), is
refused while lint has errors or a case fails, and records who and when in the file and its
changelog. Every move re-checks the file's hash (409 when it changed since the page was opened).
"""

from __future__ import annotations

from datetime import date
from urllib.parse import quote_plus

import yaml
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape
from starlette.datastructures import FormData

from cds.authoring import edit, review
from cds.authoring.knowledge import KNOWLEDGE_FILES
from cds.authoring.workbench.bench import Bench, check_base, fingerprint, job_started, text_field
from cds.errors import EditRejected, RuleDefinitionError

LABELS = {
    "in-review": "Submit for review",
    "approved": "Approve",
    "draft": "Back to draft",
    "retired": "Retire",
}


def _file_rows(bench: Bench) -> list[dict[str, object]]:
    rows = []
    for rel in review.review_files(bench.rules_dir):
        path = bench.rules_dir / rel
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "version" not in data or rel == "evidence.yaml":
            continue
        if "/" not in rel and "ruleset" not in data:
            continue
        if "/" in rel and rel not in KNOWLEDGE_FILES:
            continue
        status = str(data.get("status", "approved"))
        rows.append(
            {
                "file": rel,
                "version": str(data.get("version")),
                "status": status,
                "approved_by": data.get("approved_by"),
                "approved_on": data.get("approved_on"),
                "moves": edit.lifecycle(path).get(status, ()),
                "base": fingerprint(path),
            }
        )
    return rows


def _move_of(bench: Bench, form: FormData) -> tuple[str, str, str]:
    """(file, target status, reviewer) of a lifecycle form, checked (400/409 when wrong)."""
    rel = text_field(form, "file")
    if rel not in {str(r["file"]) for r in _file_rows(bench)}:
        raise EditRejected(f"{rel!r} is not a rule or knowledge file of this workbench")
    path = bench.rules_dir / rel
    check_base(form, path, "this file")
    to = text_field(form, "to")
    status = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("status", "approved"))
    moves = edit.lifecycle(path).get(status, ())
    if to not in moves:
        raise EditRejected(f"{rel}: {status} can move to {', '.join(moves) or 'nothing'}, not {to}")
    by = text_field(form, "by").strip()
    if to == "approved" and not by:
        raise EditRejected("approval needs the reviewing pharmacist's name")
    if len(by) > 100 or not by.isprintable():
        raise EditRejected("the reviewer's name must be one line of at most 100 characters")
    return rel, to, by


def register(app: FastAPI, bench: Bench) -> None:
    """Attach the Review page and the lifecycle moves."""

    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request, message: str | None = None) -> HTMLResponse:
        base = review.baseline(bench.rules_dir, bench.snapshot)
        return bench.page(
            request,
            "review",
            title="Review",
            baseline=base.label,
            changes=review.pending(bench.rules_dir, base),
            files=_file_rows(bench),
            labels=LABELS,
            message=message,
        )

    def simple_move(form: FormData) -> str:
        with bench.write_lock:
            rel, to, by = _move_of(bench, form)
            try:
                review.move(bench.rules_dir, rel, to, by or None)
            except (ValueError, RuleDefinitionError) as exc:
                raise EditRejected(str(exc)) from exc
        return f"{rel}: status {to}"

    @app.post("/review/move")
    async def move(request: Request) -> Response:
        form = await request.form()
        if text_field(form, "to") != "approved":
            message = await run_in_threadpool(simple_move, form)
            return RedirectResponse(f"/review?message={quote_plus(message)}", status_code=303)
        rel, _to, by = await run_in_threadpool(_move_of, bench, form)

        def work(progress: review.Progress) -> str:
            with bench.write_lock:
                _move_of(bench, form)  # nothing changed while the job waited
                base = review.baseline(bench.rules_dir, bench.snapshot)
                try:
                    review.move(
                        bench.rules_dir, rel, "approved", by, progress=progress, base_text=base.texts.get(rel)
                    )
                except RuleDefinitionError as exc:
                    raise EditRejected(str(exc)) from exc
            return (
                f"<p class='approved msg'>{escape(rel)} approved by {escape(by)} on "
                f"{date.today().isoformat()}; its changelog is updated.</p>"
            )

        return job_started(bench.jobs.start(f"approval of {rel}", work))


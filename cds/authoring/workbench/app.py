"""``cds workbench``: a local web page where a pharmacist browses, tunes and checks rules.

FastAPI with server-rendered HTML and one static script (no build step, nothing fetched from the
internet). Every request passes the security guard first (Host, Origin, CSRF token, headers: see
``security``); every error of the one error tree becomes a page with its HTTP status and reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cds.authoring.cohort import load_cohort
from cds.authoring.review import snapshot
from cds.authoring.workbench import knowledge_views, review_views, rules_views
from cds.authoring.workbench.bench import Bench
from cds.authoring.workbench.security import Guard
from cds.errors import CdsError, outcome_of

STATIC = {"workbench.js": "application/javascript", "workbench.css": "text/css"}
HEADINGS = {400: "not saved", 403: "refused", 404: "not found", 409: "conflict", 413: "too large"}


def _static(name: str) -> bytes:
    return (resources.files("cds.authoring.workbench") / "static" / name).read_bytes()


def create_app(rules_dir: Path, cohort_dir: Path, *, allowed_hosts: Iterable[str] = ()) -> Guard:
    """The workbench over one rules directory and one sample cohort, behind its security guard.

    ``allowed_hosts`` adds Host values to the bound address (``host:port``), e.g. for a proxy."""
    app = FastAPI(title="HER2 CDS rule workbench", docs_url=None, redoc_url=None, openapi_url=None)
    cohort, _rejected = load_cohort(Path(cohort_dir))
    bench = Bench(Path(rules_dir), Path(cohort_dir), cohort, snapshot(Path(rules_dir)))
    assets = {name: _static(name) for name in STATIC}

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in assets:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(assets[name], media_type=STATIC[name])

    @app.exception_handler(CdsError)
    async def cds_error(request: Request, exc: CdsError) -> HTMLResponse:
        status = outcome_of(exc).http_status
        return bench.page(
            request,
            "error",
            status,
            title=HEADINGS.get(status, "error"),
            status=status,
            heading=HEADINGS.get(status, "error"),
            reason=exc.reason,
            back=urlsplit(request.headers.get("referer") or "/").path or "/",
        )

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> JSONResponse:
        found = bench.jobs.get(job_id)
        if found is None:
            return JSONResponse({"error": "no such job (it may have expired)"}, status_code=404)
        return JSONResponse(found.as_dict())

    rules_views.register(app, bench)
    knowledge_views.register(app, bench)
    review_views.register(app, bench)
    return Guard(app, hosts=allowed_hosts)

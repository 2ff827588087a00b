"""State shared by the workbench's views: the rules directory, the sample cohort, the locks, and
the helpers every view needs (load the library, render a page, check a stale save)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import FormData

from cds import config
from cds.authoring.cohort import CohortPatient
from cds.authoring.review import Baseline
from cds.authoring.workbench.jobs import Job, Jobs
from cds.authoring.workbench.templates import render
from cds.engine.library import RuleLibrary, load_library
from cds.errors import EditConflict, EditRejected

T = TypeVar("T")

# form fields every state-changing form carries besides its content
CONTROL_FIELDS = frozenset({"csrf", "base", "rule", "sample", "as_of"})


def fingerprint(path: Path) -> str:
    """The content hash a form is made from; a save whose hash is no longer current is stale."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _version_of(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            return line.partition(":")[2].strip()
    return "unknown"


@dataclass
class Bench:
    """One workbench: a rules directory and a sample cohort, shared by every request."""

    rules_dir: Path
    cohort_dir: Path
    cohort: list[CohortPatient]
    snapshot: Baseline
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    engine_lock: threading.RLock = field(default_factory=threading.RLock)
    jobs: Jobs = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self.engine_lock)

    @property
    def by_name(self) -> dict[str, CohortPatient]:
        """Sample patients by name."""
        return {p.name: p for p in self.cohort}

    def library(self, overrides: dict[str, Any] | None = None, directory: Path | None = None) -> RuleLibrary:
        """Every working ruleset (draft, in-review, approved), with unsaved parameter values if any."""
        return load_library(
            directory or self.rules_dir, statuses=config.WORKING_STATUSES, parameter_overrides=overrides
        )

    def locked(self, work: Callable[..., T], *args: Any) -> T:
        """Run engine work while no background job uses the engine (call it in a worker thread)."""
        with self.engine_lock:
            return work(*args)

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """A full page with the session's CSRF token."""
        return HTMLResponse(render(name, csrf=request.state.csrf, **context), status_code=status_code)


def check_base(form: FormData, path: Path, what: str = "this rule set") -> None:
    """Refuse a save made from an older version of ``path`` (409: reload, never overwrite)."""
    given = form.get("base")
    if not isinstance(given, str) or not given:
        raise EditRejected("the form does not say which version it was made from: reload the page")
    if given != fingerprint(path):
        raise EditConflict(
            f"{what} ({path.name}) changed since you opened it (now {_version_of(path)}): reload the "
            "page and make your change again; nothing was saved"
        )


def text_field(form: FormData, name: str) -> str:
    """A text field of a form ('' when absent; a file where text is expected is refused)."""
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EditRejected(f"field {name} must be text")
    return value


def job_started(job: Job) -> JSONResponse:
    """The answer to a POST that started a background job (the page polls /jobs/<id>)."""
    return JSONResponse({"job": job.id})

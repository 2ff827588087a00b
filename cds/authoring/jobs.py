"""Background jobs for the workbench's slow checks (lint, impact), polled by the page for progress.

One worker thread runs the jobs in order: the checks are CPU-bound and evaluate rules with the
same engine, so running them one at a time keeps the machine responsive and the results
deterministic. A job belongs to the browser session that started it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int, int], None]
MAX_KEPT = 64


@dataclass
class Job:
    """State of one job as the page sees it."""

    id: str
    session: str
    label: str
    progress: int = 0
    total: int = 0
    done: bool = False
    html: str = ""
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def state(self) -> dict[str, Any]:
        """JSON for the polling page."""
        with self.lock:
            return {
                "id": self.id,
                "label": self.label,
                "progress": self.progress,
                "total": self.total,
                "done": self.done,
                "status": self.status,
                "html": self.html if self.done else "",
            }


class Jobs:
    """Start jobs on one worker thread and look them up by id for their session."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, session: str, label: str, work: Callable[[Progress], tuple[int, str]]) -> Job:
        """Queue ``work(progress)``; it returns (HTTP-like status, HTML result)."""
        job = Job(secrets.token_urlsafe(12), session, label)

        def progress(done: int, total: int) -> None:
            with job.lock:
                job.progress, job.total = done, total

        def run() -> None:
            try:
                status, html = work(progress)
            except Exception as exc:  # a failed check is shown on the page, never a hung spinner
                status, html = 500, f"<p class='error'>{label} failed: {type(exc).__name__}: {exc}</p>"
            with job.lock:
                job.status, job.html, job.done = status, html, True

        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-MAX_KEPT]:
                del self._jobs[old]
        self._pool.submit(run)
        return job

    def get(self, job_id: str, session: str) -> Job | None:
        """The job, if it exists and belongs to this session."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.session == session else None

"""Long checks (impact over the cohort, lint, the approval gate) run as background jobs whose
progress the page polls, so a pharmacist sees "41 of 153 patients" instead of a silent wait.

One worker thread runs the jobs one at a time (the rule engine is not shared between threads);
the page starts a job with a POST (CSRF-checked like every POST) and polls ``GET /jobs/<id>``.
A job's id is random and its result is kept until 50 newer jobs have finished.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cds.errors import CdsError, outcome_of

KEEP = 50


@dataclass
class Job:
    """One background check: its stage, progress, and finally its HTML or its error."""

    id: str
    title: str
    stage: str = "waiting for the previous check to finish"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    html: str = ""
    error: str = ""
    status: int = 200

    def as_dict(self) -> dict[str, Any]:
        """What the page polls."""
        return {
            "id": self.id,
            "title": self.title,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "seconds": round(time.monotonic() - self.started, 1),
            "finished": self.finished,
            "html": self.html,
            "error": self.error,
            "status": self.status,
        }


Work = Callable[[Callable[[str, int, int], None]], str]


class Jobs:
    """The workbench's job runner (one worker) and the results of recent jobs."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._guard = threading.Lock()

    def start(self, title: str, work: Work) -> Job:
        """Queue ``work(progress)``; it returns HTML, or raises a CdsError/ValueError to report."""
        job = Job(secrets.token_urlsafe(16), title)
        with self._guard:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)

        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        def run() -> None:
            try:
                with self._lock:
                    progress("starting", 0, 0)
                    job.html = work(progress)
            except CdsError as exc:
                job.error, job.status = exc.reason, outcome_of(exc).http_status
            except ValueError as exc:
                job.error, job.status = str(exc), 400
            except Exception as exc:  # a bug: say so on the page rather than spin forever
                job.error, job.status = f"internal error: {type(exc).__name__}", 500
                raise
            finally:
                job.stage = "finished"
                job.finished = True

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        """A job by id (None when unknown or expired)."""
        with self._guard:
            return self._jobs.get(job_id)

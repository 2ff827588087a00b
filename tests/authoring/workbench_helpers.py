"""Test parts for the workbench: a real uvicorn on loopback over a copy of rules/ (optionally a git
repository, as a site's rules are), an HTTP client holding a workbench session, and page parsing."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from cds.authoring.workbench import create_app

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "fhir_samples"
IMG = ROOT / "docs" / "img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def copy_rules(tmp: Path, git: bool = False) -> Path:
    """A copy of rules/ under ``tmp`` (in a fresh git repository with one commit when ``git``)."""
    rules = tmp / "site" / "rules"
    shutil.copytree(ROOT / "rules", rules)
    if git:
        for args in (
            ["init", "-q", "-b", "main"],
            ["add", "-A"],
            ["-c", "user.name=Site", "-c", "user.email=site@example.org", "commit", "-qm", "site rules"],
        ):
            subprocess.run(["git", *args], cwd=rules.parent, check=True, capture_output=True)
    return rules


@contextmanager
def workbench(rules: Path, cohort: Path = SAMPLES) -> Iterator[str]:
    """The workbench over ``rules`` and ``cohort`` on loopback; yields its base URL."""
    with serve(create_app(rules, cohort)) as base:
        yield base


def field(html: str, name: str) -> str:
    """The value of a hidden or text input (the first with that name)."""
    match = re.search(rf'name="{re.escape(name)}"[^>]*?value="([^"]*)"', html)
    assert match, f"no field {name}"
    return match.group(1)


def csrf(html: str) -> str:
    """The page's CSRF token (meta tag)."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "no csrf meta tag"
    return match.group(1)


def client(base: str) -> httpx.Client:
    """An HTTP client for the workbench (it keeps the session cookie)."""
    return httpx.Client(base_url=base, timeout=120, follow_redirects=False)

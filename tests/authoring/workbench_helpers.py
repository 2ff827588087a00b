"""Test parts for the workbench: a real uvicorn on loopback over a copy of rules/ (optionally a git
repository, as a site's rules are), an HTTP client holding a workbench session, and page parsing."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cds.authoring.workbench import create_app
from tests.api.helpers import serve

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "fhir_samples"
IMG = ROOT / "docs" / "img"


def copy_rules(tmp: Path, git: bool = False) -> Path:
    """A copy of rules/ under ``tmp`` (in a fresh git repository with one commit when ``git``)."""
    rules = tmp / "site" / "rules"
    shutil.copytree(ROOT / "rules", rules)
    if git:
        commit_all(rules.parent)
    return rules


def commit_all(directory: Path) -> None:
    """Make ``directory`` a git repository whose one commit holds everything in it (a site's rules:
    lint, the changelog and the review diff compare with the last commit)."""
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=Site", "-c", "user.email=site@example.org", "commit", "-qm", "site rules"],
    ):
        subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)


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

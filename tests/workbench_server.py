"""A real workbench on loopback over a copy of rules/ (never the real files), for page and HTTP tests.

The ``workbench`` fixture is registered by tests/authoring/conftest.py."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from cds.authoring.workbench import create_app

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Workbench:
    """A running workbench: its base URL and the rules directory it edits."""

    base: str
    rules: Path

    def client(self) -> httpx.Client:
        """An HTTP client holding a workbench session (cookie) like a browser tab would."""
        return httpx.Client(base_url=self.base, follow_redirects=False, timeout=120)

    def token(self, client: httpx.Client, path: str = "/") -> str:
        """The CSRF token of the client's session, read from a page as a browser would."""
        page = client.get(path)
        found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert found, page.text[:200]
        return found.group(1)

    def form_fields(self, client: httpx.Client, path: str) -> dict[str, str]:
        """Hidden fields (csrf_token, base) of the first form on a page."""
        page = client.get(path).text
        return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


def serve(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    return srv, thread


@pytest.fixture()
def workbench(tmp_path: Path) -> Iterator[Workbench]:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    port = free_port()
    srv, thread = serve(create_app(rules, ROOT / "fhir_samples", host="127.0.0.1", port=port), port)
    yield Workbench(f"http://127.0.0.1:{port}", rules)
    srv.should_exit = True
    thread.join(timeout=10)

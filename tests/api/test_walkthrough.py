"""docs/cds-hooks.md's walkthrough runs as written and prints what the page says it prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Service
from .helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cds-hooks.md"


def _block(tag: str) -> str:
    match = re.search(rf"```{tag}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match, f"no {tag} block in {DOC}"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = _block("bash walkthrough").replace("8765", str(free_port()))
    expected = _block("text walkthrough-output")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cds"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from cds.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "fhir_samples").symlink_to(ROOT / "fhir_samples")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_hooks_request_is_deterministic_and_accepted(service: Service) -> None:
    from typer.testing import CliRunner

    from cds.cli import app

    args = [
        "hooks",
        "request",
        str(ROOT / "fhir_samples" / "order-tdm1-name-confusion.json"),
        "--hook",
        "order-select",
        "--order",
        str(ROOT / "fhir_samples" / "orders" / "order-tdm1-name-confusion.order.json"),
    ]
    first, again = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout
    body = json.loads(first.stdout)
    assert body["context"]["selections"] == ["MedicationRequest/order-tdm1-name-confusion-draft"]
    assert set(body["prefetch"]) == set(service.templates)
    response = service.call("her2-order-select", body)
    assert response.status_code == 200, response.text
    missing = CliRunner().invoke(app, args[:5])
    assert missing.exit_code == 2 and "needs a draft order" in missing.stderr

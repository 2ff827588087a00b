"""One convention for every command: --version, flags shown as flags, one --format spelling, the
--rules default; evaluate over a folder sums up, and "no findings" always says what was concluded."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cds.cli import app
from tests.api.helpers import free_port
from tests.conftest import ROOT, SAMPLES
from tests.external import external

CDS = [sys.executable, "-m", "cds.cli"]
runner = CliRunner()


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", {})
    return [prefix] + [p for name, sub in sorted(subs.items()) for p in _paths(sub, (*prefix, name))]


COMMANDS = _paths(typer.main.get_command(app))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], prog_name="cds", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_version_prints_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"her2-cds {version}\n")


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "cds")
def test_boolean_options_are_shown_as_flags(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "<bool>" not in text and "--help" in text


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "cds")
def test_format_is_spelled_one_way_text_and_json_first(path: tuple[str, ...]) -> None:
    text = " ".join(_help(path).split())
    if "--format" not in text:
        return
    assert text.count("--format") == 1
    match = re.search(r"-f, --format \[([a-z|]+)\] Output: ", text)
    assert match, text
    line = match[0]
    choices = match[1].split("|")
    if path == ("cohort", "run"):  # writes table files rather than printing a report
        assert choices[:2] == ["parquet", "csv"]
    else:
        assert choices[:2] == ["text", "json"], line


@pytest.mark.parametrize("path", [p for p in COMMANDS if "--rules" in _help(p) or "[RULES]" in _help(p)])
def test_every_rules_option_has_the_same_default(path: tuple[str, ...]) -> None:
    """Commands that read rules default to the bundled ones; a command that writes rule files
    (``rules ack``, ``workbench``) never does: it edits ./rules."""
    text = " ".join(_help(path).split())
    if path in (("rules", "ack"), ("workbench",)):
        assert "(default: $CDS_RULES_DIR, else ./rules; the bundled rules are never written)" in text
    else:
        assert "(default: $CDS_RULES_DIR, else the bundled rules)" in text


def test_an_unknown_format_is_a_usage_error() -> None:
    result = runner.invoke(app, ["evaluate", str(SAMPLES / "her2-zero.json"), "-f", "xml"])
    assert result.exit_code == 2 and "'xml' is not one of text, json" in result.output


def test_evaluating_a_folder_ends_with_a_summary_line(tmp_path: Path) -> None:
    for name in ("mbc-second-line", "her2-zero", "tdm1-platelets-grade3"):
        (tmp_path / f"{name}.json").write_bytes((SAMPLES / f"{name}.json").read_bytes())
    (tmp_path / "broken.json").write_text("{not json")
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--as-of", "2026-11-01"], env={"COLUMNS": "200"})
    assert result.exit_code == 2  # one file was rejected
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"4 file\(s\): 3 patient\(s\) evaluated, 1 rejected; (\d+) finding\(s\): (\d+) recommendation, "
        r"(\d+) alert, (\d+) data-gap, (\d+) info \((\d+) critical, (\d+) warning, (\d+) info\); "
        r"0 patient\(s\) without findings",
        last,
    ), last
    numbers = [int(n) for n in re.findall(r"\d+", last.split(";", 1)[1])]
    total, kinds, severities = numbers[0], numbers[1:5], numbers[5:8]
    assert total == sum(kinds) == sum(severities) and total >= 4


def test_a_patient_without_findings_is_told_what_was_concluded() -> None:
    result = runner.invoke(
        app, ["evaluate", str(external("mcode-pathways/T0_patient.json")), "--as-of", "2026-11-01"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "No findings: no rule fired. Concluded from the record: HER2 negative" in text
    assert "no current HER2-directed therapy." in text


def _wait_for(proc: subprocess.Popen[bytes], url: str, timeout: float = 1) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=timeout).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return out.decode(), err.decode()


def test_serve_keeps_its_database_in_the_user_data_directory_not_the_current_one(tmp_path: Path) -> None:
    cwd, data = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    env = {**os.environ, "CDS_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    env.pop("CDS_DATABASE_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [*CDS, "serve", "--insecure-dev", "--port", str(port), "--log-level", "info"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for(proc, f"http://127.0.0.1:{port}/cds-services")
    finally:
        _out, err = _stop(proc)
    assert list(cwd.iterdir()) == []
    assert (data / "cds-hooks.sqlite3").is_file()
    assert f"feedback and audit database: sqlite:///{data / 'cds-hooks.sqlite3'}" in err


def test_workbench_prints_its_url_on_start(tmp_path: Path) -> None:
    """It edits ./rules of the folder it starts in (never the bundled rules) and says so."""
    env = {k: v for k, v in os.environ.items() if k != "CDS_RULES_DIR"}
    refused = subprocess.run([*CDS, "workbench"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "no rules directory to edit here: pass --rules DIR" in refused.stderr
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    port = free_port()
    proc = subprocess.Popen(
        [*CDS, "workbench", "--port", str(port), "--cohort", str(SAMPLES)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()  # printed before the server starts listening
        _wait_for(proc, f"http://127.0.0.1:{port}/", timeout=60)
    finally:
        _stop(proc)
    assert first == f"rule workbench for rules on http://127.0.0.1:{port}/ (Ctrl-C to stop)\n"

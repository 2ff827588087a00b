"""The built wheel is complete: installed alone in a fresh venv (no repository, no PYTHONPATH), the
``cds`` command evaluates a patient from another directory with the rules bundled in the wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import orjson
import pytest

from cds import Evaluator, load_library, parse_as_of, raw_patient_from_path
from tests.conftest import ROOT, RULES, SAMPLES

# what the build reads; copied so the build leaves no build/ or *.egg-info in the checkout
BUILD_INPUTS = ["cds", "rules", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"]


def _sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", ".", "-w", tmp / "dist", cwd=src)
    [built] = (tmp / "dist").glob("her2_cds-*.whl")
    return built


def test_the_wheel_carries_every_rule_file_once_under_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    expected = sorted(
        f"cds/bundled_rules/{p.relative_to(RULES).as_posix()}"
        for p in RULES.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".yml", ".md")
    )
    assert sorted(n for n in names if n.startswith("cds/bundled_rules/")) == expected
    assert not [n for n in names if n.startswith("rules/")]
    assert any(n.endswith("licenses/LICENSE") for n in names)


@pytest.mark.slow
def test_the_installed_wheel_alone_evaluates_lists_and_tests_rules_from_another_directory(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)  # no --system-site-packages: only the wheel
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("CDS_")
    }
    _sh(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sample = shutil.copy(SAMPLES / "mbc-second-line.json", elsewhere / "patient.json")
    cds = venv / "bin" / "cds"

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _sh(cds, "--version", cwd=elsewhere, env=env).stdout == f"her2-cds {version}\n"

    evaluated = _sh(
        cds, "evaluate", "patient.json", "-f", "json", "--as-of", "2026-11-01", cwd=elsewhere, env=env
    )
    expected = Evaluator(load_library(RULES)).evaluate(
        raw_patient_from_path(Path(sample)), as_of=parse_as_of("2026-11-01")
    )
    assert evaluated.stdout.encode() == expected.evaluation.to_json() + b"\n"

    listed = orjson.loads(_sh(cds, "rules", "list", "-f", "json", cwd=elsewhere, env=env).stdout)
    assert [(r["ruleset"], r["version"]) for r in listed] == [
        (r.name, r.version) for r in load_library(RULES).rulesets
    ]
    where = _sh(cds, "rules", "list", cwd=elsewhere, env=env).stdout
    assert f"{venv}/lib/" in " ".join(where.split()) and "bundled_rules" in where

    tested = _sh(cds, "rules", "test", cwd=elsewhere, env=env).stdout
    assert re.fullmatch(r"\d+ passed, 0 failed \(\d+ cases in \d+ rulesets\)", tested.splitlines()[-1])
    assert not list(elsewhere.glob("*.sqlite3*")) and sorted(p.name for p in elsewhere.iterdir()) == [
        "patient.json"
    ]

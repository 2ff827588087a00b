"""scripts/ensure-chromium.sh never fails the test run: a busy apt is retried, then the browser tests skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "ensure-chromium.sh"


def _fake_bin(tmp_path: Path, uid: int) -> Path:
    """A PATH folder whose apt-get fails as when dpkg's lock is held (exit 100) and logs each call."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/apt.log\necho "E: Could not get lock" >&2\nexit 100\n'
    )
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for name in ("apt-get", "id"):
        (folder / name).chmod(0o755)
    return folder


def _run(tmp_path: Path, uid: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{_fake_bin(tmp_path, uid)}:{os.environ['PATH']}",
        "CDS_CHROMIUM": str(tmp_path / "no-chromium"),
        "CDS_APT_PAUSE": "0",
    }
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, check=False)


def test_a_held_apt_lock_is_retried_then_the_browser_tests_are_skipped_not_the_run(tmp_path: Path) -> None:
    done = _run(tmp_path, uid=0)
    assert done.returncode == 0
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert len(calls) == 3 and all("DPkg::Lock::Timeout=20 update" in c for c in calls)
    assert "attempt 3 of 3" in done.stderr
    assert done.stderr.strip().endswith("could not install chromium; browser tests will be skipped")


def test_without_root_nothing_is_installed_and_the_browser_tests_are_skipped(tmp_path: Path) -> None:
    done = _run(tmp_path, uid=1000)
    assert done.returncode == 0 and not (tmp_path / "apt.log").exists()
    assert "no-chromium is missing; browser tests will be skipped" in done.stderr


def test_test_sh_leaves_chromium_to_the_script_that_cannot_fail() -> None:
    text = (ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/ensure-chromium.sh\n" in text and "apt-get" not in text

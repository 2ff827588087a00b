"""Fixtures shared by the authoring tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def rules(tmp_path: Path) -> Path:
    """A private copy of the shipped rules directory, free to edit."""
    target = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", target)
    return target

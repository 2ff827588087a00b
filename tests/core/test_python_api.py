"""docs/python-api.md: every example on the page runs, with the output it shows."""

from __future__ import annotations

import doctest
import os

import pytest

from tests.conftest import ROOT


def test_every_python_api_example_runs_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("CDS_RULES_DIR", raising=False)
    assert os.getcwd() == str(ROOT)
    failures, attempted = doctest.testfile(
        str(ROOT / "docs" / "python-api.md"),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
        report=True,
    )
    assert attempted >= 25 and failures == 0

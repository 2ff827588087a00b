"""Externally written FHIR files for the robustness tests.

The small ones are vendored under ``tests/data/external/`` (listed, with repository, commit,
license and SHA-256, in ``tests/data/SOURCES.md``), so a fresh clone runs these tests. The large
ones are optional: a test that needs one looks in ``$CDS_EXTERNAL_DATA`` (and in a ``shared/
fhir-external`` folder beside the repository, the development layout), else skips and names the
URL to download it from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
VENDORED = DATA / "external"
ENV = "CDS_EXTERNAL_DATA"
_ROW = re.compile(
    r"^\| `(?P<file>[^`]+)` \| (?P<repo>\S+) \| `(?P<path>[^`]+)` \| `(?P<commit>[0-9a-f]{40})` "
    r"\| (?P<license>\S+) \| (?P<size>\d+) \| `(?P<sha256>[0-9a-f]{64})` \| (?P<vendored>yes|no) \|$",
    re.M,
)


@dataclass(frozen=True)
class Source:
    """One row of SOURCES.md: where an external file came from."""

    file: str
    repo: str
    path: str
    commit: str
    license: str
    size: int
    sha256: str
    vendored: bool

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


def sources() -> list[Source]:
    """Every external file the tests know about, vendored or not, in SOURCES.md order."""
    text = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    return [
        Source(
            file=m["file"],
            repo=m["repo"],
            path=m["path"],
            commit=m["commit"],
            license=m["license"],
            size=int(m["size"]),
            sha256=m["sha256"],
            vendored=m["vendored"] == "yes",
        )
        for m in _ROW.finditer(text)
    ]


def _optional_roots() -> list[Path]:
    roots = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    return [*roots, ROOT.parent / "shared" / "fhir-external"]


def find(rel: str) -> Path | None:
    """The external file ``rel`` (a ``file`` of SOURCES.md), vendored first; None if absent."""
    for root in (VENDORED, *_optional_roots()):
        if (root / rel).is_file():
            return root / rel
    return None


def external(rel: str) -> Path:
    """The external file ``rel``, or skip the test saying where to download it."""
    path = find(rel)
    if path is not None:
        return path
    known = {s.file: s for s in sources()}
    where = f"download {known[rel].url} to ${ENV}/{rel}" if rel in known else "see tests/data/SOURCES.md"
    pytest.skip(f"external test file {rel} is not in the repository (too large to vendor); {where}")


def bundles() -> list[str]:
    """Every external JSON file of SOURCES.md (vendored or not), as ``file`` names."""
    return [s.file for s in sources() if s.file.endswith(".json")]


def bulk_export() -> tuple[Path, bool]:
    """The SMART 10-patient Bulk export folder and whether it is complete.

    Only its Patient and Condition files (and the export log) are vendored; the full export
    (MedicationRequest, Procedure, Encounter too) is used when present in an optional location.
    """
    full = [s.file for s in sources() if s.file.startswith("smart-bulk-10-patients/")]
    for root in _optional_roots():
        if all((root / f).is_file() for f in full):
            return root / "smart-bulk-10-patients", True
    return VENDORED / "smart-bulk-10-patients", False

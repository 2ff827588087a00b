"""The README and docs are for people who have only the repository: they point at nothing outside it,
and the numbers they quote (rule-set versions, test-case, rule-set and sample counts, benchmark
figures) are checked here against the repository itself, so they cannot go stale silently."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds import Evaluator, RuleLibrary, load_library
from cds.authoring.testing import run_embedded_tests
from cds.config import WORKING_STATUSES
from tests.conftest import ROOT, RULES, SAMPLES

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FORBIDDEN = {
    "a specification section": re.compile(r"clinical-spec|§\s*\d"),
    "a folder outside the repository": re.compile(r"\.\./shared|/work/|shared/reference|fhir-external"),
    "an issue number": re.compile(r"\bissues? #?\d+|(?<![\w&/])#\d+\b"),
}


EDIT_TUTORIALS = {"authoring.md"}


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def working() -> RuleLibrary:
    return load_library(RULES, statuses=WORKING_STATUSES)


def _minor_bump(version: str) -> str:
    major, minor, _patch = (int(x) for x in version.split("."))
    return f"{major}.{minor + 1}.0"


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_docs_point_at_nothing_outside_the_repository(path: Path) -> None:
    text = _text(path)
    found = {what: m[0] for what, pattern in FORBIDDEN.items() if (m := pattern.search(text))}
    assert not found, found


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_links_to_repository_files_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", _text(path)):
        assert (path.parent / target).exists(), target


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_quoted_rule_set_versions_are_the_current_ones(path: Path, working: RuleLibrary) -> None:
    """``name@X.Y.Z``, ``name X.Y.Z``, ``"version": "X.Y.Z", "ruleset": "name"`` and friends must
    be the current version; ``name X -> Y`` and ``name.yaml (now version Y`` show an edit, so X is
    current and Y its minor bump."""
    current = {rs.name: rs.version for rs in working.rulesets}
    names = "|".join(map(re.escape, current))
    version = r"(\d+\.\d+\.\d+)"
    text = _text(path)
    checked = 0
    for m in re.finditer(rf"\b({names}) {version} (?:->|→) {version}", text):
        assert (m[2], m[3]) == (current[m[1]], _minor_bump(current[m[1]])), m[0]
        checked += 1
    for m in re.finditer(rf"\b({names})\.yaml \(now version {version}", text):
        assert m[2] == _minor_bump(current[m[1]]), m[0]
        checked += 1
    # the authoring tutorial shows a rule set after its edit, one minor version up
    allowed = {n: {v, _minor_bump(v)} if path.name in EDIT_TUTORIALS else {v} for n, v in current.items()}
    for m in re.finditer(rf"\b({names})(?:@| v?| version |`? v){version}\b(?! (?:->|→))", text):
        if text[: m.start()].endswith(("-> ", "→ ")):
            continue
        assert m[2] in allowed[m[1]], m[0]
        checked += 1
    for m in re.finditer(
        rf'"version": "{version}", "ruleset": "({names})"|"ruleset": "({names})", "version": "{version}"',
        text,
    ):
        name, value = (m[2], m[1]) if m[1] else (m[3], m[4])
        assert value == current[name], m[0]
        checked += 1
    for m in re.finditer(rf"v{version} \(({names})\b", text):
        assert m[1] == current[m[2]], m[0]
        checked += 1
    if path.name == "cds-hooks.md":
        assert checked >= 4  # the card examples quote versions: the patterns must keep finding them


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_quoted_counts_are_the_repositorys(path: Path, working: RuleLibrary) -> None:
    samples = len(list(SAMPLES.glob("*.json")))
    cases = len(run_embedded_tests(working, Evaluator(working)))
    text = " ".join(_text(path).split())
    for m in re.finditer(
        r"(?<![\d,.])(\d+) (?:synthetic (?:patients|scenarios)|sample patients|samples)\b", text
    ):
        assert int(m[1]) == samples, m[0]
    for m in re.finditer(r"\b\d+ of (\d+) patients change", text):
        assert int(m[1]) == samples, m[0]
    for m in re.finditer(r"(\d+) passed, (\d+) failed \((\d+) cases in (\d+) rulesets\)", text):
        passed, failed, total, rulesets = (int(x) for x in m.groups())
        assert (passed + failed, total, rulesets) == (cases, cases, len(working.rulesets)), m[0]


def test_every_benchmark_figure_names_the_command_that_made_it() -> None:
    text = _text(ROOT / "docs" / "performance.md")
    sections = re.split(r"\n(?=## )", text)
    for section in sections[1:]:
        if re.search(r"\d ?(?:ms|s|patients/s|MB|MiB|x|×)\b", section):
            commands = re.findall(r"python bench/(\w+)\.py", section)
            assert commands, section.splitlines()[0]
            for name in commands:
                assert (ROOT / "bench" / f"{name}.py").is_file(), name

"""The review loop: every pending change (working files against git HEAD, or against the files
as the workbench found them outside git), in YAML and in plain language, and the gate an
approval must pass (no lint error, every embedded test case passing).

Used by the workbench's Review page and by ``cds rules promote``; approval writes who and when
into the file (``edit.promote``) and regenerates that file's changelog.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from cds import config
from cds.authoring import edit, gitutil
from cds.authoring.changelog import changelog_of, describe
from cds.authoring.testing import run_case
from cds.engine.library import load_library
from cds.errors import ConfigurationError, RuleDefinitionError
from cds.evaluate import Evaluator

Progress = Callable[[str, int, int], None]  # (stage, done, total)
GLOBS = ("*.yaml", "catalogue/*.yaml", "valuesets/*.yaml")


def _quiet(_stage: str, _done: int, _total: int) -> None:
    """No progress report."""


def review_files(rules_dir: Path) -> list[str]:
    """Rule and knowledge files of a rules directory, relative to it."""
    return sorted(p.relative_to(rules_dir).as_posix() for g in GLOBS for p in rules_dir.glob(g))


@dataclass(frozen=True)
class Baseline:
    """What pending changes are compared with: git HEAD, or a snapshot taken at start-up."""

    label: str
    texts: dict[str, str | None]


def snapshot(rules_dir: Path) -> Baseline:
    """The files as they are now (the baseline outside git)."""
    texts: dict[str, str | None] = {
        rel: (rules_dir / rel).read_text(encoding="utf-8") for rel in review_files(rules_dir)
    }
    return Baseline("the files as the workbench found them at start-up (not a git repository)", texts)


def baseline(rules_dir: Path, fallback: Baseline) -> Baseline:
    """git HEAD when the rules directory is in a repository with a commit, else ``fallback``."""
    root = gitutil.repo_root(rules_dir)
    if root is None or not gitutil.is_commit(root, "HEAD"):
        return fallback
    rel = gitutil.relative(root, rules_dir)
    prefix = f"{rel}/" if rel not in ("", ".") else ""
    files = set(review_files(rules_dir)) | {
        p.removeprefix(prefix) for p in gitutil.ls_tree(root, "HEAD", rel or ".") if p.endswith(".yaml")
    }
    texts = {f: gitutil.show(root, "HEAD", prefix + f) for f in sorted(files)}
    return Baseline("git HEAD (the last commit)", texts)


@dataclass(frozen=True)
class Pending:
    """One file that differs from the baseline."""

    file: str
    old: str | None
    new: str | None
    yaml_diff: tuple[str, ...]
    plain: tuple[str, ...]
    version: str
    old_version: str
    status: str

    @property
    def knowledge(self) -> bool:
        """Whether the file is knowledge (catalogue, value sets) rather than a ruleset."""
        return "/" in self.file


def _data(text: str | None) -> dict[str, Any] | None:
    data = yaml.safe_load(text) if text else None
    return data if isinstance(data, dict) else None


def pending(rules_dir: Path, base: Baseline) -> list[Pending]:
    """Every rule or knowledge file whose text differs from the baseline."""
    out: list[Pending] = []
    for rel in sorted(set(base.texts) | set(review_files(rules_dir))):
        path = rules_dir / rel
        new = path.read_text(encoding="utf-8") if path.exists() else None
        old = base.texts.get(rel)
        if new == old:
            continue
        diff = difflib.unified_diff(
            (old or "").splitlines(), (new or "").splitlines(), "before", "now", n=2, lineterm=""
        )
        before, after = _data(old), _data(new)
        plain = describe(rel, before, after) if after is not None else ["file removed"]
        default = "approved" if "/" in rel else ""
        out.append(
            Pending(
                rel,
                old,
                new,
                tuple(list(diff)[2:]),
                tuple(plain),
                str((after or {}).get("version", "")),
                str((before or {}).get("version", "")),
                str((after or {}).get("status", default)),
            )
        )
    return out


def approval_blockers(rules_dir: Path, progress: Progress = _quiet) -> list[str]:
    """Why the rules cannot be approved now: each lint error and each failing embedded test case
    (over the whole directory, draft files included: approval covers what will ship)."""
    from cds.authoring.lint import lint

    progress("lint: checking every rule file", 0, 0)
    report = lint(rules_dir, cohort=None, base=None)
    blockers = [f"lint error: {d}" for d in report.of("error")]
    try:
        library = load_library(rules_dir, statuses=config.WORKING_STATUSES)
    except (RuleDefinitionError, ConfigurationError) as exc:
        return [*blockers, f"the rules do not load: {exc}"]
    evaluator = Evaluator(library)
    cases = [(rs, case) for rs in library.rulesets for case in rs.spec.tests]
    for done, (rs, case) in enumerate(cases):
        progress("embedded test cases", done, len(cases))
        outcome = run_case(rs, case, library, evaluator)
        if not outcome.passed:
            blockers.append(f"test case failed: {outcome.file}: {outcome.name}: {outcome.diff()}")
    progress("embedded test cases", len(cases), len(cases))
    return blockers


def write_changelog(rules_dir: Path, rel: str, base_text: str | None = None) -> Path | None:
    """Regenerate one file's changelog under ``changelogs/`` (when that folder exists)."""
    folder = rules_dir / "changelogs"
    found = changelog_of(rules_dir, rel, base_text)
    if found is None or not folder.is_dir():
        return None
    target = folder / f"{found[0]}.md"
    target.write_text(found[1] + "\n", encoding="utf-8")
    return target


def move(
    rules_dir: Path,
    rel: str,
    to: str,
    by: str | None = None,
    *,
    on: date | None = None,
    progress: Progress = _quiet,
    base_text: str | None = None,
) -> str:
    """Move one file along its lifecycle; approval is refused (ValueError listing why) while lint
    has errors or an embedded test fails, and records who and when in the file and its changelog."""
    path = rules_dir / rel
    if rel not in review_files(rules_dir):
        raise ValueError(f"{rel!r} is not a rule or knowledge file of {rules_dir}")
    if to == "approved":
        if not (by or "").strip():
            raise ValueError("approval needs the reviewing pharmacist's name")
        blockers = approval_blockers(rules_dir, progress)
        if blockers:
            raise ValueError(
                f"cannot approve {rel}: {sum(b.startswith('lint') for b in blockers)} lint error(s), "
                f"{sum(b.startswith('test') for b in blockers)} failing test(s): " + "; ".join(blockers[:10])
            )
    edit.promote(path, to, by, on)
    if to == "approved":
        write_changelog(rules_dir, rel, base_text)
    return to

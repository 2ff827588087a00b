"""A CHANGELOG per ruleset, generated from git history (never hand-written, so it cannot drift).

For every commit that touched a rule file, the file is read at that commit and compared with the
previous one: version and status changes, approval, rules added/removed/changed, parameter
values old -> new, test cases added. Entries are grouped under the version they produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cds.authoring import gitutil


def _rules(data: dict[str, Any]) -> dict[str, Any]:
    return {str(r.get("id")): r for r in data.get("rules") or [] if isinstance(r, dict)}


def _params(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v or {}).get("value") for k, v in (data.get("parameters") or {}).items()}


def _by_id(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {str(p.get("id")): p for p in data.get(key) or [] if isinstance(p, dict)}


def _acks(data: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{a.get('rule')} / {a.get('other')}": a
        for a in data.get("acknowledged_overlaps") or []
        if isinstance(a, dict)
    }


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Plain-language differences between two versions of a rule file."""
    if old is None:
        return [
            f"created ({len(_rules(new))} rules, {len(_params(new))} parameters, "
            f"{len(new.get('tests') or [])} test cases)"
        ]
    out: list[str] = []
    if old.get("status") != new.get("status"):
        out.append(
            f"status {old.get('status')} -> {new.get('status')}"
            + (
                f" (approved by {new.get('approved_by')} on {new.get('approved_on')})"
                if new.get("status") == "approved"
                else ""
            )
        )
    elif new.get("status") == "approved" and (old.get("approved_by"), old.get("approved_on")) != (
        new.get("approved_by"),
        new.get("approved_on"),
    ):
        out.append(f"approval renewed (by {new.get('approved_by')} on {new.get('approved_on')})")
    po, pn = _params(old), _params(new)
    for name in sorted(set(po) | set(pn)):
        if po.get(name) != pn.get(name):
            out.append(f"parameter {name}: {po.get(name, '-')} -> {pn.get(name, '-')}")
    for noun, key in (("rule", "rules"), ("policy", "policies")):
        bo, bn = _by_id(old, key), _by_id(new, key)
        out += [f"{noun} added: {i}" for i in sorted(set(bn) - set(bo))]
        out += [f"{noun} removed: {i}" for i in sorted(set(bo) - set(bn))]
        out += [f"{noun} changed: {i}" for i in sorted(set(bo) & set(bn)) if bo[i] != bn[i]]
    ao, an = _acks(old), _acks(new)
    for pair in sorted(set(an) - set(ao)):
        out.append(f"overlap acknowledged: {pair} ({an[pair].get('reviewer')}, {an[pair].get('date')})")
    out += [f"overlap acknowledgement renewed: {p}" for p in sorted(set(ao) & set(an)) if ao[p] != an[p]]
    out += [f"overlap acknowledgement removed: {p}" for p in sorted(set(ao) - set(an))]
    added_tests = len(new.get("tests") or []) - len(old.get("tests") or [])
    if added_tests > 0:
        out.append(f"{added_tests} test case(s) added")
    return out


def changelogs(directory: Path) -> dict[str, str]:
    """ruleset name -> Markdown changelog, newest version first."""
    root = gitutil.repo_root(directory)
    result: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "evidence.yaml":
            continue
        current = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(current, dict) or "ruleset" not in current:
            continue
        name = str(current["ruleset"])
        entries: list[tuple[str, str, str, str, list[str]]] = []
        if root is not None:
            rel = gitutil.relative(root, path)
            history = list(reversed(gitutil.log(root, rel)))
            previous: dict[str, Any] | None = None
            for commit, day, author, subject in history:
                text = gitutil.show(root, commit, rel)
                data = yaml.safe_load(text) if text else None
                if not isinstance(data, dict):
                    continue
                entries.append(
                    (
                        str(data.get("version")),
                        day,
                        author,
                        f"{subject} ({commit[:7]})",
                        changes(previous, data),
                    )
                )
                previous = data
        lines = [
            f"# Changelog: {name}",
            "",
            f"Current: {current.get('version')} ({current.get('status')}). "
            "Generated from git history by `cds rules changelog`; do not edit by hand.",
            "",
        ]
        for version, day, author, subject, items in reversed(entries):
            lines.append(f"## {version} ({day}, {author})")
            lines.append(f"- {subject}")
            lines += [f"  - {item}" for item in items]
            lines.append("")
        result[name] = "\n".join(lines)
    return result

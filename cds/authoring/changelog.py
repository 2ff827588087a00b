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


def _approval(data: dict[str, Any]) -> str:
    return f"approved by {data.get('approved_by')} on {data.get('approved_on')}"


def _lifecycle(old: dict[str, Any], new: dict[str, Any], default: str | None = None) -> list[str]:
    """Status moves and approvals (a knowledge file without a status is approved)."""
    before, after = old.get("status", default), new.get("status", default)
    if before != after:
        note = f" ({_approval(new)})" if after == "approved" and new.get("approved_by") else ""
        return [f"status {before} -> {after}{note}"]
    if after == "approved" and new.get("approved_by") and (
        (old.get("approved_by"), old.get("approved_on")) != (new.get("approved_by"), new.get("approved_on"))
    ):
        return [f"approval renewed ({_approval(new)})"]
    return []


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Plain-language differences between two versions of a rule file."""
    if old is None:
        return [
            f"created ({len(_rules(new))} rules, {len(_params(new))} parameters, "
            f"{len(new.get('tests') or [])} test cases)"
        ]
    out = _lifecycle(old, new)
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


META = ("version", "status", "approved_by", "approved_on", "member_sources")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _walk(old: Any, new: Any, path: str, sources: dict[str, Any], out: list[str]) -> None:
    def source(member: Any) -> str:
        found = (sources.get(path) or {}).get(str(member)) if isinstance(sources.get(path), dict) else None
        return f" (source: {found})" if found else ""

    if isinstance(old, dict) and isinstance(new, dict):
        values = (*old.values(), *new.values())
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        for key in new:
            where = f"{path}.{key}" if path else str(key)
            if key not in old:
                shown = f"{key!r} = {_text(new[key])}" if numbers else f"{key} ({_text(new[key])})"
                out.append(f"{path or 'file'}: added {shown}{source(key)}")
            else:
                _walk(old[key], new[key], where, sources, out)
        out += [f"{path or 'file'}: removed {key}" for key in old if key not in new]
    elif isinstance(old, list) and isinstance(new, list):
        out += [f"{path}: added {v!r}{source(v)}" for v in new if v not in old]
        out += [f"{path}: removed {v!r}" for v in old if v not in new]
    elif old != new:
        out.append(f"{path}: {_text(old)} -> {_text(new)}")


def knowledge_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Plain-language differences between two versions of a knowledge file (catalogue, value
    sets): entries and members added or removed, values changed, each added member's source."""
    if old is None:
        return ["created"]
    out = _lifecycle(old, new, "approved")
    sources = new.get("member_sources") if isinstance(new.get("member_sources"), dict) else {}
    _walk(
        {k: v for k, v in old.items() if k not in META},
        {k: v for k, v in new.items() if k not in META},
        "",
        sources or {},
        out,
    )
    return out


def describe(rel: str, old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Plain-language changes of a rule or knowledge file (``rel`` relative to the rules dir)."""
    return knowledge_changes(old, new) if "/" in rel else changes(old, new)


def _load(text: str | None) -> dict[str, Any] | None:
    data = yaml.safe_load(text) if text else None
    return data if isinstance(data, dict) else None


def changelog_name(rel: str, data: dict[str, Any]) -> str | None:
    """The changelog file stem of a rule file (its ruleset) or knowledge file (folder-stem)."""
    if "/" in rel:
        return rel.removesuffix(".yaml").replace("/", "-")
    return str(data["ruleset"]) if "ruleset" in data else None


def changelog_of(directory: Path, rel: str, base_text: str | None = None) -> tuple[str, str] | None:
    """(name, Markdown) of one file's changelog, newest first. Changes not yet committed come
    first, compared with HEAD (or with ``base_text`` outside git)."""
    path = directory / rel
    current = _load(path.read_text(encoding="utf-8"))
    name = changelog_name(rel, current) if current is not None else None
    if current is None or name is None:
        return None
    root = gitutil.repo_root(directory)
    entries: list[tuple[str, str, str, str, list[str]]] = []
    previous: dict[str, Any] | None = None
    if root is not None:
        relpath = gitutil.relative(root, path)
        for commit, day, author, subject in reversed(gitutil.log(root, relpath)):
            data = _load(gitutil.show(root, commit, relpath))
            if data is None:
                continue
            subject = f"{subject} ({commit[:7]})"
            entries.append((str(data.get("version")), day, author, subject, describe(rel, previous, data)))
            previous = data
        base_text = gitutil.show(root, "HEAD", relpath) if gitutil.is_commit(root, "HEAD") else None
    if base_text != path.read_text(encoding="utf-8"):
        before = _load(base_text) if base_text is not None else previous
        items = describe(rel, before, current)
        version = str(current.get("version"))
        entries.append((version, "not committed", "working tree", "uncommitted changes", items))
    status = current.get("status", "approved")
    lines = [
        f"# Changelog: {name if '/' not in rel else rel}",
        "",
        f"Current: {current.get('version')} ({status}). "
        "Generated from git history by `cds rules changelog`; do not edit by hand.",
        "",
    ]
    for version, day, author, subject, items in reversed(entries):
        lines.append(f"## {version} ({day}, {author})")
        lines.append(f"- {subject}")
        lines += [f"  - {item}" for item in items]
        lines.append("")
    return name, "\n".join(lines)


KNOWLEDGE_GLOBS = ("catalogue/*.yaml", "valuesets/*.yaml")


def changelogs(directory: Path) -> dict[str, str]:
    """name -> Markdown changelog of every ruleset and knowledge file, newest version first."""
    result: dict[str, str] = {}
    files = [p for p in sorted(directory.glob("*.yaml")) if p.name != "evidence.yaml"]
    files += [p for pattern in KNOWLEDGE_GLOBS for p in sorted(directory.glob(pattern))]
    for path in files:
        found = changelog_of(directory, path.relative_to(directory).as_posix())
        if found is not None:
            result[found[0]] = found[1]
    return result

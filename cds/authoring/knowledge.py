"""The knowledge under the rules, for a pharmacist to browse and search: the drug catalogue
(``catalogue/*.yaml``), the value sets and the text cues (``valuesets/*.yaml``), as pages (one
per catalogue entry, concept, analyte or cue section) with the lists and unit maps they hold.
Additions are made by ``knowledge_edit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds.engine.library import RuleLibrary
from cds.knowledge.catalogue import normalise

KNOWLEDGE_FILES = (
    "catalogue/agents.yaml",
    "catalogue/products.yaml",
    "catalogue/regimens.yaml",
    "valuesets/concepts.yaml",
    "valuesets/observations.yaml",
    "valuesets/cues.yaml",
)
META_KEYS = frozenset({"version", "status", "approved_by", "approved_on", "member_sources"})


@dataclass(frozen=True)
class MemberList:
    """A list of names or codes, or a map of unit spellings to factors, inside a knowledge page."""

    path: str
    kind: str  # "list" | "map"
    members: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One browsable knowledge entry: a catalogue entry, a concept, an analyte, a cue section."""

    file: str
    path: str
    title: str
    data: Any
    lists: tuple[MemberList, ...]

    @property
    def words(self) -> str:
        """Everything searchable in the entry, normalised."""
        return normalise(" ".join([self.file, self.path, self.title, *_strings(self.data)]))


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif node is not None:
        yield str(node)


def is_number(value: Any) -> bool:
    """A number that is not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def member_lists(node: Any, path: str, sources: dict[str, Any]) -> list[MemberList]:
    """Every editable list (of text) or unit map (text -> number) under a node, by dotted path."""
    out: list[MemberList] = []
    if not isinstance(node, dict):
        return out
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        known = sources.get(where) if isinstance(sources.get(where), dict) else {}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.append(MemberList(where, "list", tuple(value), dict(known or {})))
        elif isinstance(value, dict) and value and all(is_number(v) for v in value.values()):
            members = tuple(f"{k} = {fmt_number(v)}" for k, v in value.items())
            out.append(MemberList(where, "map", members, dict(known or {})))
        elif isinstance(value, dict):
            out += member_lists(value, where, sources)
    return out


def fmt_number(value: Any) -> str:
    """A number as the pages show it (whole floats without .0)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def pages(rules_dir: Path) -> list[Page]:
    """Every knowledge entry: ``section.id`` for collections of entries (products, concepts,
    analytes, answers), else one page per top-level section (coded codes, each cue section)."""
    out: list[Page] = []
    for rel in KNOWLEDGE_FILES:
        data = yaml.safe_load((rules_dir / rel).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        sources = data.get("member_sources") if isinstance(data.get("member_sources"), dict) else {}
        for key, value in data.items():
            if key in META_KEYS or not isinstance(value, dict | list):
                continue
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                for entry_id, entry in value.items():
                    title = str(entry.get("display") or entry_id)
                    path = f"{key}.{entry_id}"
                    lists = member_lists(entry, path, sources or {})
                    out.append(Page(rel, path, title, entry, tuple(lists)))
            else:
                lists = member_lists({key: value}, "", sources or {})
                out.append(Page(rel, str(key), str(key).replace("_", " "), value, tuple(lists)))
    return out


def page(rules_dir: Path, rel: str, path: str) -> Page | None:
    """One knowledge page by file and path."""
    return next((p for p in pages(rules_dir) if p.file == rel and p.path == path), None)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    kind: str  # rule | catalogue | value set | cues
    label: str
    link: str
    detail: str


def search(rules_dir: Path, library: RuleLibrary, query: str, limit: int = 200) -> list[Hit]:
    """Rules, catalogue entries, value sets and cue lists whose text contains every query word."""
    words = normalise(query).split()
    if not words:
        return []

    def matches(text: str) -> bool:
        return all(w in text for w in words)

    hits: list[Hit] = []
    for rs in library.rulesets:
        for rid, compiled in sorted(rs.rules.items()):
            rule = compiled.rule
            parts = [rid, rule.title, rule.description, rule.then.code, rule.then.summary]
            text = normalise(" ".join(parts))
            if matches(text):
                hits.append(Hit("rule", rid, f"/rule/{rid}", f"{rs.name} {rs.version}: {rule.title}"))
    for p in pages(rules_dir):
        if matches(p.words):
            kind = "catalogue" if p.file.startswith("catalogue/") else (
                "cues" if p.file.endswith("cues.yaml") else "value set"
            )
            found = [m for lst in p.lists for m in lst.members if matches(normalise(m))]
            detail = f"{p.file}: {p.path}" + (f" (matching: {', '.join(found[:5])})" if found else "")
            hits.append(Hit(kind, p.title, page_link(p.file, p.path), detail))
    return hits[:limit]


def page_link(rel: str, path: str) -> str:
    """The workbench address of a knowledge page."""
    from urllib.parse import urlencode

    return "/knowledge/entry?" + urlencode({"file": rel, "path": path})

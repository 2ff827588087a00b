"""Review status and member sources of a knowledge file (catalogue, value sets, cues).

Knowledge files are reviewed like rule files: a file may carry ``status`` (draft, in-review,
approved; a file without one is approved, as shipped) with ``approved_by``/``approved_on``, and
production refuses to start on a file that is not approved. A member added to a list or unit map
(a product name, a code, a unit spelling, a cue phrase) names its source under ``member_sources``
(dotted path -> member -> source) in the same file; every loader checks that each entry points at
a member that exists and has a non-empty source, so provenance cannot drift from the data.
"""

from __future__ import annotations

from typing import Any

from cds.errors import ConfigurationError

KNOWLEDGE_STATUSES = ("draft", "in-review", "approved")


def node_at(data: Any, path: str) -> Any:
    """The node at a dotted path of mapping keys (None when a key is missing)."""
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def members_of(node: Any) -> list[str] | None:
    """The members of a list (its items) or a map (its keys) as text; None for anything else."""
    if isinstance(node, list):
        return [str(v) for v in node]
    if isinstance(node, dict):
        return [str(k) for k in node]
    return None


def check_member_sources(data: dict[str, Any], where: str) -> None:
    """Every ``member_sources`` entry names a member of this file and a non-empty source."""
    raw = data.get("member_sources")
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: member_sources must map a dotted path to {{member: source}}")
    for path, sources in raw.items():
        members = members_of(node_at(data, str(path)))
        if members is None:
            raise ConfigurationError(f"{where} member_sources: {path!r} is not a list or map of this file")
        if not isinstance(sources, dict) or not sources:
            raise ConfigurationError(f"{where} member_sources.{path}: expected {{member: source}}")
        for member, source in sources.items():
            if str(member) not in members:
                raise ConfigurationError(f"{where} member_sources.{path}: {member!r} is not in {path}")
            if not isinstance(source, str) or not source.strip():
                raise ConfigurationError(f"{where} member_sources.{path}: {member!r} needs a source")


def knowledge_status(data: dict[str, Any], where: str) -> str:
    """The file's review status (approved when it has none), after checking its member sources."""
    status = data.get("status", "approved")
    if status not in KNOWLEDGE_STATUSES:
        raise ConfigurationError(f"{where}: status must be one of {', '.join(KNOWLEDGE_STATUSES)}")
    check_member_sources(data, where)
    return str(status)

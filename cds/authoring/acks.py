"""Overlap acknowledgements: fingerprints, lookup, and the surgical write behind ``cds rules ack``.

An acknowledgement (``acknowledged_overlaps:`` in a rule file, validated by
``cds.engine.schema.OverlapAck``) records that a reviewer read both rules of an overlap lint
reports and found it intended. It holds a fingerprint of both rules as reviewed: their conditions
with parameter values resolved, and the outcome fields the conflict check compares. Any change to
either (a threshold, a condition, an action) changes the fingerprint, so the acknowledgement goes
stale and the warning returns for a new review. Wording (title, summary, detail, labels) is not
in it: rewording a rule does not undo a clinical review.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from cds.authoring import edit, overlaps
from cds.authoring.implications import load_implications
from cds.engine.conditions import Compare, Condition
from cds.engine.library import CompiledRule, CompiledRuleset, RuleLibrary, load_library
from cds.engine.schema import OverlapAck
from cds.errors import RuleDefinitionError

SECTION = "acknowledged_overlaps"
ALL_STATUSES = frozenset({"draft", "in-review", "approved", "retired"})
SECTION_COMMENT = (
    "# Overlaps `cds rules lint` reported that a reviewer found intended. Written by `cds rules ack`"
    " (never by hand):\n# an entry silences its warning until either rule changes."
)


def _value(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return [_value(x) for x in v] if isinstance(v, list) else v
    return float(v)


def _condition(cond: Condition) -> Any:
    if isinstance(cond, Compare):
        return [cond.path, cond.op, _value(cond.value)]
    return [cond.op, [_condition(item) for item in cond.items]]


def _rule(rule_id: str, compiled: CompiledRule) -> list[Any]:
    then = compiled.rule.then
    return [
        rule_id,
        _condition(compiled.condition),
        [then.code, then.kind, then.action, then.strength, then.regimen, then.applies_to],
        then.resolved_severity(),
    ]


def fingerprint(id_a: str, a: CompiledRule, id_b: str, b: CompiledRule) -> str:
    """16 hex digits identifying both rules' conditions and outcomes (order of the pair ignored)."""
    data = sorted((_rule(id_a, a), _rule(id_b, b)), key=lambda item: str(item[0]))
    return hashlib.sha256(orjson.dumps(data)).hexdigest()[:16]


@dataclass(frozen=True)
class Ack:
    """An acknowledgement as found in a loaded rule file."""

    ruleset: CompiledRuleset
    index: int  # position in the file's acknowledged_overlaps list
    entry: OverlapAck

    @property
    def pair(self) -> frozenset[str]:
        """The two rule ids (unordered)."""
        return frozenset((self.entry.rule, self.entry.other))

    def describe(self) -> str:
        """Who acknowledged it, when and why."""
        e = self.entry
        return f"acknowledged by {e.reviewer} on {e.date.isoformat()}: {e.reason}"


def index(library: RuleLibrary) -> dict[frozenset[str], Ack]:
    """Every acknowledgement of the library by rule pair (retired files are not reviewed)."""
    out: dict[frozenset[str], Ack] = {}
    for rs in library.rulesets:
        if rs.spec.status == "retired":
            continue
        for i, entry in enumerate(rs.spec.acknowledged_overlaps):
            ack = Ack(rs, i, entry)
            out.setdefault(ack.pair, ack)
    return out


def _entry_map(entry: OverlapAck) -> CommentedMap:
    out = CommentedMap()
    out["rule"] = DoubleQuotedScalarString(entry.rule)
    out["other"] = DoubleQuotedScalarString(entry.other)
    out["reviewer"] = DoubleQuotedScalarString(entry.reviewer)
    out["date"] = entry.date
    out["reason"] = DoubleQuotedScalarString(" ".join(entry.reason.split()))
    out["fingerprint"] = DoubleQuotedScalarString(entry.fingerprint)
    return out


def _item_span(data: Any, lines: list[str], position: int) -> tuple[int, int]:
    """First row and the row after the last content row of one list item of the section."""
    seq = data[SECTION]
    start = seq.lc.item(position)[0]
    end = seq.lc.item(position + 1)[0] if position + 1 < len(seq) else edit._section_end(data, lines, SECTION)
    while end > start and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def write(path: Path, entry: OverlapAck, replace: int | None = None) -> str:
    """Add (or, with ``replace``, overwrite the entry at that position) one acknowledgement in a
    rule file, editing only those lines; the directory is validated before anything is written.
    Returns the new text."""
    text = path.read_text(encoding="utf-8")
    data = edit.read_text(text)
    lines = text.rstrip("\n").split("\n")
    item = edit._item_text(_entry_map(entry))
    if data.get(SECTION):
        if replace is not None:
            start, end = _item_span(data, lines, replace)
            lines[start:end] = item
        else:
            at = edit._section_end(data, lines, SECTION)
            lines[at:at] = item
    elif SECTION in data:  # an empty section (``acknowledged_overlaps: []``)
        row = data.lc.key(SECTION)[0]
        lines[row : row + 1] = [f"{SECTION}:", *item]
    else:
        lines += ["", *SECTION_COMMENT.split("\n"), f"{SECTION}:", *item]
    new_text = "\n".join(lines) + "\n"
    edit.validate_text(path.parent, path.name, new_text, set(ALL_STATUSES))
    path.write_text(new_text, encoding="utf-8")
    return new_text


def new_entry(rule: str, other: str, reviewer: str, reason: str, on: date, stamp: str) -> OverlapAck:
    """A validated acknowledgement (raises pydantic's ValidationError with what is wrong)."""
    return OverlapAck(rule=rule, other=other, reviewer=reviewer, date=on, reason=reason, fingerprint=stamp)


def acknowledge(
    directory: Path, rule: str, other: str, *, reviewer: str, reason: str, on: date
) -> tuple[Path, OverlapAck, bool]:
    """Write (or renew) the acknowledgement of the overlap between two rules.

    Refuses pairs lint would not warn about: rules that do not conflict, a conflict a policy
    resolves, or rules that can never fire together. Returns (file written, entry, replaced an
    existing entry). Raises ValueError for a bad request, RuleDefinitionError for invalid rules.
    """
    library = load_library(directory, statuses=ALL_STATUSES)
    implications, problems = load_implications(directory)
    if problems:
        raise RuleDefinitionError(problems)
    for rid in (rule, other):
        try:
            library.rule(rid)
        except KeyError:
            raise ValueError(f"no rule {rid!r} in {directory}") from None
    found = overlaps.pair(library, rule, other, implications)
    if found is None:
        raise ValueError(
            f"{rule} and {other} do not conflict, so lint reports no overlap: nothing to acknowledge"
        )
    if found.resolved_by:
        raise ValueError(
            f"{rule} and {other}: {found.resolved_by}, so lint does not warn: nothing to acknowledge"
        )
    if found.witness is None:
        raise ValueError(
            f"{rule} and {other} can never fire for the same patient (no facts satisfy both), so lint "
            "does not warn about them: nothing to acknowledge"
        )
    rs_rule, compiled = library.rule(rule)
    _rs_other, compiled_other = library.rule(other)
    stamp = fingerprint(rule, compiled, other, compiled_other)
    existing = index(library).get(frozenset((rule, other)))
    if existing is not None:
        first, second = existing.entry.rule, existing.entry.other
        entry = new_entry(first, second, reviewer, reason, on, stamp)
        write(existing.ruleset.source, entry, replace=existing.index)
        return existing.ruleset.source, entry, True
    entry = new_entry(rule, other, reviewer, reason, on, stamp)
    write(rs_rule.source, entry)
    return rs_rule.source, entry, False

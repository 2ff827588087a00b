"""Edits a pharmacist makes without touching Python: parameters, lifecycle status, new rules.

Every edit goes through ruamel.yaml round-trip mode so comments, key order and flow style of the
rule file survive, then through the loader so an invalid edit is refused before it is written.
Content edits bump the version (minor: behaviour changes) and send an approved ruleset back to
``draft``: an approval covers one version only, so it must be renewed (``cds rules promote``).
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from copy import deepcopy
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from cds import config
from cds.authoring import analysis
from cds.engine.library import RuleLibrary, load_library
from cds.errors import ConfigurationError

LIFECYCLE = {
    "draft": ("in-review", "retired"),
    "in-review": ("approved", "draft", "retired"),
    "approved": ("retired", "draft"),
    "retired": ("draft",),
}


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def read(path: Path) -> Any:
    """A rule file in round-trip form."""
    return _yaml().load(path.read_text(encoding="utf-8"))


def dump(data: Any) -> str:
    """Round-trip text of a rule file."""
    buf = io.StringIO()
    _yaml().dump(data, buf)
    return buf.getvalue()


def bump(version: str, part: str = "minor") -> str:
    """Next semver: ``major``, ``minor`` or ``patch``."""
    major, minor, patch = (int(p) for p in version.split("."))
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _scalar_end(line: str, col: int) -> int:
    """End column of the scalar (plain, quoted or flow list) starting at ``col``."""
    ch = line[col : col + 1]
    if ch in ("'", '"'):
        end = line.index(ch, col + 1)
        while ch == '"' and line[end - 1] == "\\":
            end = line.index(ch, end + 1)
        return end + 1
    if ch == "[":
        return line.index("]", col) + 1
    end = col
    while end < len(line) and line[end] not in ",}" and not line.startswith(" #", end):
        end += 1
    return len(line[:end].rstrip())


def format_scalar(value: Any) -> str:
    """YAML text for a parameter value that both YAML 1.1 and 1.2 read back identically."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    if isinstance(value, list):
        return "[" + ", ".join(format_scalar(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_at(lines: list[str], pos: tuple[int, int], new: str) -> None:
    row, col = pos
    line = lines[row]
    lines[row] = line[:col] + new + line[_scalar_end(line, col) :]


def _reopen_text(text: str, part: str) -> str:
    """Bump the version and send an approved/in-review file back to draft, editing only those lines."""
    data = read_text(text)
    lines = text.split("\n")
    _replace_at(lines, data.lc.value("version"), bump(str(data["version"]), part))
    if data.get("status") in ("approved", "in-review"):
        _replace_at(lines, data.lc.value("status"), "draft")
        drop = sorted((data.lc.key(k)[0] for k in ("approved_by", "approved_on") if k in data), reverse=True)
        for row in drop:
            del lines[row]
    return "\n".join(lines)


def read_text(text: str) -> Any:
    """Round-trip parse of rule-file text (positions kept for surgical edits)."""
    return _yaml().load(text)


def validate_text(directory: Path, filename: str, text: str, statuses: set[str] | None = None) -> RuleLibrary:
    """Load the directory as it would be with ``filename`` replaced by ``text`` (raises on errors)."""
    with tempfile.TemporaryDirectory(prefix="cds-edit-") as tmp:
        copy = Path(tmp) / "rules"
        shutil.copytree(directory, copy)
        (copy / filename).write_text(text, encoding="utf-8")
        return load_library(copy, statuses=statuses or config.WORKING_STATUSES)


def find_parameter(directory: Path, name: str) -> Path:
    """The rule file that declares a parameter."""
    for path in sorted(directory.glob("*.yaml")):
        data = read(path)
        if isinstance(data, CommentedMap) and name in (data.get("parameters") or {}):
            return path
    raise ConfigurationError(f"no rule file in {directory} declares parameter {name!r}")


def coerce(current: Any, text: str) -> Any:
    """Parse a form value to the type of the current parameter value (ValueError says why not).

    Numbers must be finite: "nan" or "inf" would make every comparison false and silence a rule."""
    text = text.strip()
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not true/false")
        return text.lower() == "true"
    if isinstance(current, list):
        return [coerce(current[0] if current else 0.0, t) for t in text.strip("[]").split(",") if t.strip()]
    if isinstance(current, int | float):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return int(value) if isinstance(current, int) and value.is_integer() else value
    if not text:
        raise ValueError("a value is required")
    return text


def set_parameters(directory: Path, values: dict[str, Any], part: str = "minor") -> dict[str, str]:
    """Write new parameter values (already typed), bump each touched file once; file -> new version.

    Validates the whole directory with the new values before writing anything.
    """
    by_file: dict[Path, dict[str, Any]] = {}
    for name, value in values.items():
        by_file.setdefault(find_parameter(directory, name), {})[name] = value
    texts: dict[Path, str] = {}
    for path, changes in by_file.items():
        text = path.read_text(encoding="utf-8")
        data = read_text(text)
        lines = text.split("\n")
        touched = False
        for name, value in changes.items():
            node = data["parameters"][name]
            if node["value"] != value:
                _replace_at(lines, node.lc.value("value"), format_scalar(value))
                touched = True
        if touched:
            texts[path] = _reopen_text("\n".join(lines), part)
    _validate_many(directory, texts)
    versions = {}
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
        versions[path.name] = str(read(path)["version"])
    return versions


def _validate_many(directory: Path, texts: dict[Path, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="cds-edit-") as tmp:
        copy = Path(tmp) / "rules"
        shutil.copytree(directory, copy)
        for path, text in texts.items():
            (copy / path.name).write_text(text, encoding="utf-8")
        load_library(copy, statuses=config.WORKING_STATUSES)


KNOWLEDGE_LIFECYCLE = {
    "draft": ("in-review",),
    "in-review": ("approved", "draft"),
    "approved": ("draft",),
}
KNOWLEDGE_FOLDERS = ("catalogue", "valuesets")


def is_knowledge(path: Path) -> bool:
    """Whether a file is a knowledge file (catalogue, value sets) rather than a ruleset."""
    return path.parent.name in KNOWLEDGE_FOLDERS


def rules_root(path: Path) -> Path:
    """The rules directory a file belongs to (knowledge files live one folder down)."""
    return path.parent.parent if is_knowledge(path) else path.parent


def lifecycle(path: Path) -> dict[str, tuple[str, ...]]:
    """The status moves a file allows: knowledge is never retired (every rule reads it)."""
    return KNOWLEDGE_LIFECYCLE if is_knowledge(path) else LIFECYCLE


def promote(path: Path, to: str, by: str | None = None, on: date | None = None) -> str:
    """Move a ruleset or knowledge file along draft -> in-review -> approved (-> retired);
    approval records who and when. A knowledge file without ``status`` is approved."""
    text = path.read_text(encoding="utf-8")
    data = read_text(text)
    current = str(data.get("status", "approved"))
    moves = lifecycle(path)
    if to not in moves.get(current, ()):
        allowed = ", ".join(moves.get(current, ())) or "nothing"
        raise ValueError(f"{path.name}: {current} can move to {allowed}, not {to}")
    if to == "approved" and not (by or "").strip():
        raise ValueError("approval needs --by (the reviewing pharmacist)")
    lines = text.split("\n")
    if "status" in data:
        status_row = data.lc.value("status")[0]
        _replace_at(lines, data.lc.value("status"), to)
    else:
        status_row = data.lc.key("version")[0] + 1
        lines.insert(status_row, f"status: {to}")
    for row in sorted((data.lc.key(k)[0] for k in ("approved_by", "approved_on") if k in data), reverse=True):
        if row >= status_row and "status" not in data:
            row += 1
        del lines[row]
        if row < status_row:
            status_row -= 1
    if to == "approved":
        stamp = (on or date.today()).isoformat()
        lines[status_row + 1 : status_row + 1] = [
            f"approved_by: {format_scalar((by or '').strip())}",
            f"approved_on: {stamp}",
        ]
    new_text = "\n".join(lines)
    root = rules_root(path)
    validate_text(
        root, path.relative_to(root).as_posix(), new_text, {"draft", "in-review", "approved", "retired"}
    )
    path.write_text(new_text, encoding="utf-8")
    return to


def _quoted(obj: Any) -> Any:
    """Strings double-quoted so that YAML 1.1 readers never turn "no" or "yes" into booleans."""
    if isinstance(obj, dict):
        out = CommentedMap()
        for k, v in obj.items():
            out[k] = _quoted(v)
        return out
    if isinstance(obj, list):
        return CommentedSeq(_quoted(v) for v in obj)
    if isinstance(obj, str):
        return DoubleQuotedScalarString(obj)
    return obj


def _item_text(item: Any, indent: str = "  ") -> list[str]:
    """A list item in block style, indented like the rule files (``  - key: ...``)."""
    body = dump(item).rstrip("\n").split("\n")
    return [f"{indent}- {body[0]}", *[f"{indent}  {line}" if line else "" for line in body[1:]]]


def _section_end(data: Any, lines: list[str], key: str) -> int:
    """Row after the last non-blank, non-comment line of a top-level section."""
    keys = list(data.keys())
    following = keys[keys.index(key) + 1 :] if key in keys else []
    end = data.lc.key(following[0])[0] if following else len(lines)
    while end > 0 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def insert_rule(path: Path, rule: dict[str, Any], tests: list[dict[str, Any]], part: str = "minor") -> str:
    """Append a rule and its tests to a rule file (validated first); returns the new version."""
    text = path.read_text(encoding="utf-8")
    data = read_text(text)
    if any(r["id"] == rule["id"] for r in data.get("rules") or []):
        raise ValueError(f"{path.name} already has a rule {rule['id']!r}")
    lines = text.rstrip("\n").split("\n")
    if tests:
        test_lines = [line for t in tests for line in _item_text(_quoted(t))]
        if "tests" in data:
            at = _section_end(data, lines, "tests")
            lines[at:at] = test_lines
        else:
            lines += ["", "tests:", *test_lines]
    rule_lines = ["", *_item_text(rule if isinstance(rule, CommentedMap) else _quoted(rule))]
    if "rules" in data:
        at = _section_end(data, lines, "rules")
        lines[at:at] = rule_lines
    else:
        lines += ["", "rules:", *rule_lines[1:]]
    new_text = _reopen_text("\n".join(lines) + "\n", part)
    validate_text(path.parent, path.name, new_text)
    path.write_text(new_text, encoding="utf-8")
    return str(read_text(new_text)["version"])


def replace_rule(path: Path, rule_id: str, rule_text: str, part: str = "minor") -> tuple[str, str]:
    """Replace one rule by YAML text written in the workbench; returns (new rule id, new version)."""
    try:
        new_rule = read_text(rule_text)
    except YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(new_rule, CommentedMap) or "id" not in new_rule:
        raise ValueError("the rule must be a YAML mapping with id, title, description, when, then")
    lines, start, end = _rule_span(path.read_text(encoding="utf-8"), rule_id)
    body = rule_text.strip("\n").split("\n")
    lines[start:end] = [f"  - {body[0]}", *[f"    {line}" if line.strip() else "" for line in body[1:]]]
    new_text = _reopen_text("\n".join(lines), part)
    validate_text(path.parent, path.name, new_text)
    path.write_text(new_text, encoding="utf-8")
    return str(new_rule["id"]), str(read_text(new_text)["version"])


def _rule_span(text: str, rule_id: str) -> tuple[list[str], int, int]:
    """(lines, start, end) of one rule's lines in a rule file; trailing blank and comment lines
    are left out, since they introduce what follows (the next rule or section)."""
    data = read_text(text)
    rules = data["rules"]
    index = next((i for i, r in enumerate(rules) if r["id"] == rule_id), None)
    if index is None:
        raise KeyError(rule_id)
    lines = text.split("\n")
    start = rules.lc.item(index)[0]
    end = rules.lc.item(index + 1)[0] if index + 1 < len(rules) else _section_end(data, lines, "rules")
    while end > start and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return lines, start, end


def rule_text(path: Path, rule_id: str) -> str:
    """One rule of a file exactly as written (comments kept), dedented, for the workbench editor."""
    lines, start, end = _rule_span(path.read_text(encoding="utf-8"), rule_id)
    block = lines[start:end]
    return "\n".join(line[4:] if line.startswith("    ") else line.lstrip(" -") for line in block) + "\n"


def scaffold(library: RuleLibrary, source: str, new_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A copy of an existing rule under a new id, plus test cases derived from its conditions.

    ``source`` is ``ruleset:rule-id``. The tests are one facts snapshot on which the rule fires and,
    for each top-level condition, one on which only that condition fails (the boundary).
    """
    ruleset_name, _, rule_id = source.partition(":")
    rs = next((r for r in library.rulesets if r.name == ruleset_name), None)
    if rs is None or rule_id not in rs.rules:
        raise KeyError(f"no rule {rule_id!r} in ruleset {ruleset_name!r}")
    compiled = rs.rules[rule_id]
    raw = read(rs.source)
    original = next(r for r in raw["rules"] if r["id"] == rule_id)
    rule = deepcopy(original)
    rule["id"] = new_id
    rule["title"] = f"{original['title']} (copy: edit me)"
    rule["then"]["code"] = new_id
    tests: list[dict[str, Any]] = []
    fires = analysis.witnesses(compiled.condition)
    if fires:
        tests.append(
            {
                "name": f"{new_id} fires",
                "facts": analysis.facts_snapshot(fires[0]),
                "expect": {"fired": [new_id], "exact": False},
            }
        )
    for label, witness in analysis.negation_witnesses(compiled.condition):
        tests.append(
            {
                "name": f"{new_id} silent when {label}",
                "facts": analysis.facts_snapshot(witness),
                "expect": {"not_fired": [new_id], "exact": False},
            }
        )
    return rule, tests

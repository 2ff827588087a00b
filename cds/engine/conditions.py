"""The rule condition language: parse, type-check, compile to durable_rules, evaluate, explain.

A condition is a one-key mapping (plus an optional ``label``):

    all: [cond, ...]                      every condition holds
    any: [cond, ...]                      at least one holds
    <fact.path>: <value>                  equals (value may be a $parameter)
    <fact.path>: {<op>: <value>}          op: == != < <= > >= in between exists missing

A fact that is unknown (None) never satisfies a comparison, exactly as in durable_rules; only
``missing`` matches it. There is deliberately no ``not``: absence is an explicit fact or
``missing`` (durable_rules' ``$not`` depends on fact order, rules-engine-and-authoring.md §1.7).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from cds.engine.schema import OPERATORS
from cds.errors import ConditionError

Scalar = float | int | bool | str


@dataclass(frozen=True)
class Compare:
    """One comparison of a fact path with a literal or parameter value."""

    path: str
    op: str
    value: Any
    param: str | None = None
    label: str | None = None

    def describe(self) -> str:
        """Plain-language form, e.g. ``labs.platelets.value < 50 ($tdm1_platelet_hold)``."""
        shown = f"${self.param} (= {_fmt(self.value)})" if self.param else _fmt(self.value)
        if self.op in ("exists", "missing"):
            return f"{self.path} is {'known' if self.op == 'exists' else 'unknown'}"
        if self.op == "between":
            return f"{self.path} between {shown}"
        return f"{self.path} {self.op} {shown}"


@dataclass(frozen=True)
class Group:
    """An ``all`` or ``any`` group."""

    op: Literal["all", "any"]
    items: tuple[Condition, ...]
    label: str | None = None


Condition = Union[Compare, Group]  # noqa: UP007 - recursive alias


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def parse_condition(
    raw: Any, params: Mapping[str, Any], fact_types: Mapping[str, Any], where: str = "when"
) -> Condition:
    """Parse and type-check one condition against the fact model and the declared parameters."""
    if not isinstance(raw, dict):
        raise ConditionError("a condition must be a mapping", where)
    label = raw.get("label")
    if label is not None and not isinstance(label, str):
        raise ConditionError("label must be text", f"{where}.label")
    keys = [k for k in raw if k != "label"]
    if len(keys) != 1:
        raise ConditionError(f"a condition has exactly one key besides label, got {keys}", where)
    key = keys[0]
    body = raw[key]
    if key in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise ConditionError(f"{key} needs a non-empty list of conditions", f"{where}.{key}")
        items = tuple(
            parse_condition(item, params, fact_types, f"{where}.{key}[{i}]") for i, item in enumerate(body)
        )
        return Group(key, items, label)
    if key not in fact_types:
        near = difflib.get_close_matches(key, list(fact_types), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ConditionError(
            f"unknown fact path {key!r}{hint}; `cds rules facts` lists every path", f"{where}.{key}"
        )
    if isinstance(body, dict):
        if len(body) != 1:
            raise ConditionError("an operator mapping has exactly one operator", f"{where}.{key}")
        op, value = next(iter(body.items()))
        if op not in OPERATORS:
            raise ConditionError(
                f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}", f"{where}.{key}"
            )
    else:
        op, value = "==", body
    param = None
    if isinstance(value, str) and value.startswith("$"):
        param = value[1:]
        if param not in params:
            raise ConditionError(f"unknown parameter ${param}", f"{where}.{key}")
        value = params[param]
    if op in ("exists", "missing") and value is not True:
        raise ConditionError(f"write {op}: true", f"{where}.{key}")
    _check_type(key, op, value, fact_types[key], f"{where}.{key}")
    return Compare(key, op, value, param, label)


def _allowed(annotation: Any) -> tuple[set[type], set[Any]]:
    """(python types, literal values) an annotation admits."""
    kinds: set[type] = set()
    literals: set[Any] = set()
    origin = typing.get_origin(annotation)
    if origin is Literal:
        literals.update(typing.get_args(annotation))
        kinds.add(str)
    elif origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            k, lit = _allowed(arg)
            kinds |= k
            literals |= lit
    elif annotation is type(None):
        pass
    elif isinstance(annotation, type):
        kinds.add(annotation)
    return kinds, literals


def _check_type(path: str, op: str, value: Any, annotation: Any, where: str) -> None:
    kinds, literals = _allowed(annotation)
    if op in ("exists", "missing"):
        return
    numeric = bool(kinds & {int, float}) and bool not in kinds
    values = value if op in ("in", "between") else [value]
    if op in ("in", "between") and not isinstance(value, list):
        raise ConditionError(f"{op} needs a list", where)
    if op == "between" and len(value) != 2:
        raise ConditionError("between needs [low, high]", where)
    if op in ("<", "<=", ">", ">=", "between") and not numeric:
        raise ConditionError(f"{path} is not numeric; {op} compares numbers", where)
    for v in values:
        if numeric:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConditionError(f"{path} is a number; {v!r} is not", where)
        elif bool in kinds:
            if not isinstance(v, bool):
                raise ConditionError(f"{path} is true/false; {v!r} is not", where)
        elif literals:
            if v not in literals:
                allowed = ", ".join(sorted(str(x) for x in literals))
                raise ConditionError(f"{path} is one of {allowed}; {v!r} is not", where)
        elif str in kinds and not isinstance(v, str):
            raise ConditionError(f"{path} is text; {v!r} is not", where)


def paths_of(cond: Condition) -> list[str]:
    """Fact paths a condition reads, in order of first appearance."""
    if isinstance(cond, Compare):
        return [cond.path]
    out: list[str] = []
    for item in cond.items:
        for p in paths_of(item):
            if p not in out:
                out.append(p)
    return out


def to_durable(cond: Condition) -> dict[str, Any]:
    """Compile to a durable_rules expression over one fact (rules-engine-and-authoring.md §3.3)."""
    if isinstance(cond, Group):
        parts = [to_durable(i) for i in cond.items]
        if len(parts) == 1:
            return parts[0]
        return {"$and" if cond.op == "all" else "$or": parts}
    p, v = cond.path, cond.value
    if cond.op == "==":
        return {p: v}
    if cond.op == "in":
        return {p: v[0]} if len(v) == 1 else {"$or": [{p: x} for x in v]}
    if cond.op == "between":
        return {"$and": [{"$gte": {p: v[0]}}, {"$lte": {p: v[1]}}]}
    if cond.op == "exists":
        return {"$ex": {p: 1}}
    if cond.op == "missing":
        return {"$nex": {p: 1}}
    op = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}[cond.op]
    return {op: {p: v}}


def _compare(cond: Compare, actual: Any) -> bool:
    op, v = cond.op, cond.value
    if op == "missing":
        return actual is None
    if op == "exists":
        return actual is not None
    if actual is None:
        return False
    if op == "==":
        return bool(actual == v)
    if op == "!=":
        return bool(actual != v)
    if op == "in":
        return actual in v
    if op == "between":
        return bool(v[0] <= actual <= v[1])
    if op == "<":
        return bool(actual < v)
    if op == "<=":
        return bool(actual <= v)
    if op == ">":
        return bool(actual > v)
    return bool(actual >= v)


def evaluate(cond: Condition, get: typing.Callable[[str], Any]) -> bool:
    """Evaluate in Python with durable_rules' semantics (unknown never matches a comparison)."""
    if isinstance(cond, Compare):
        return _compare(cond, get(cond.path))
    if cond.op == "all":
        return all(evaluate(i, get) for i in cond.items)
    return any(evaluate(i, get) for i in cond.items)


def matched_labels(cond: Condition, get: typing.Callable[[str], Any]) -> list[str]:
    """Labels of the labelled conditions that hold (for templates like "obtain {matched}")."""
    out: list[str] = []
    if cond.label and evaluate(cond, get):
        out.append(cond.label)
    if isinstance(cond, Group):
        for item in cond.items:
            for label in matched_labels(item, get):
                if label not in out:
                    out.append(label)
    return out


def first_failure(cond: Condition, get: typing.Callable[[str], Any]) -> str | None:
    """Why a condition does not hold, with the patient's actual value; None when it holds."""
    if evaluate(cond, get):
        return None
    if isinstance(cond, Compare):
        actual = get(cond.path)
        shown = "unknown" if actual is None else _fmt(actual)
        return f"{cond.path} = {shown} does not satisfy {cond.describe()}"
    if cond.op == "all":
        for item in cond.items:
            reason = first_failure(item, get)
            if reason:
                return reason
        return None
    reasons = [first_failure(i, get) for i in cond.items]
    return "none of: " + "; ".join(r for r in reasons if r)


def describe(cond: Condition, indent: int = 0) -> str:
    """The condition as indented plain text (for the workbench and docs)."""
    pad = "  " * indent
    if isinstance(cond, Compare):
        return pad + cond.describe()
    head = pad + ("ALL of:" if cond.op == "all" else "ANY of:")
    return "\n".join([head, *(describe(i, indent + 1) for i in cond.items)])

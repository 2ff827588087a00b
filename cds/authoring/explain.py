"""``cds rules explain``: every rule for one patient, fired or not, and why, with provenance.

The core trace says which condition failed; a pharmacist also needs the patient's value in its
unit, the FHIR resource it came from and its date, e.g.
``platelets 52 ×10³/µL (Observation/p1, 2026-11-20) is not < 50``. Units come from the
parameter the rule compares with (rule files declare them) or, failing that, from the fact
model's fixed units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds.engine.conditions import Compare, Condition, evaluate
from cds.engine.library import RuleLibrary
from cds.evaluate import Result
from cds.facts.model import PatientFacts
from cds.findings.build import fmt

# The fact model fixes these units (cds/facts/model.py); parameters may state their own.
PATH_UNITS = (
    ("age_days", "days"),
    ("days_ago", "days"),
    ("gap_days", "days"),
    ("x_uln", "× ULN"),
    ("labs.platelets", "×10³/µL"),
    ("labs.anc", "×10⁹/L"),
    ("lvef.drop", "points"),
    ("lvef.value", "%"),
    ("lvef.baseline", "%"),
    ("weight.kg", "kg"),
    ("age_years", "years"),
    ("dose_mg_per_kg", "mg/kg"),
    ("dose_mg", "mg"),
)
UNIT_DISPLAY = {"10*3/uL": "×10³/µL", "10*9/L": "×10⁹/L", "x ULN": "× ULN", "%": "%"}


def unit_for(path: str, library: RuleLibrary | None = None, param: str | None = None) -> str:
    """Display unit of a numeric fact path (from the compared parameter when it declares one)."""
    from cds.authoring.analysis import domains

    if domains().get(path) is not None and domains()[path].kind not in ("number", "int"):
        return ""
    if library is not None and param:
        for rs in library.rulesets:
            declared = rs.spec.parameters.get(param)
            if declared is not None and declared.unit:
                return UNIT_DISPLAY.get(declared.unit, declared.unit)
    for fragment, unit in PATH_UNITS:
        if fragment in path:
            return unit
    return ""


def label_for(path: str) -> str:
    """A short name for a fact path: ``labs.platelets.value`` -> ``platelets``."""
    parts = path.split(".")
    if parts[0] == "labs" and len(parts) == 3 and parts[2] == "value":
        return parts[1]
    if parts[0] == "labs" and len(parts) == 3:
        return f"{parts[1]} {parts[2]}"
    return path


def _date_for(path: str, facts: PatientFacts) -> str | None:
    parent = path.rsplit(".", 1)[0]
    for candidate in (f"{parent}.date", f"{parent}.episode_date"):
        try:
            value = facts.get(candidate)
        except KeyError:
            continue
        if value:
            return str(value)[:10]
    return None


NEGATED = {
    "==": "is not",
    "!=": "is",
    "<": "is not <",
    "<=": "is not ≤",
    ">": "is not >",
    ">=": "is not ≥",
    "in": "is not one of",
    "between": "is not between",
}


def describe_failure(cmp: Compare, facts: PatientFacts, library: RuleLibrary | None = None) -> str:
    """One failing comparison in words with the patient's value, unit, source and date."""
    actual = facts.get(cmp.path)
    unit = unit_for(cmp.path, library, cmp.param)
    suffix = f" {unit}" if unit else ""
    name = label_for(cmp.path)
    if cmp.op == "exists":
        return f"{name} is unknown (no usable value), but the rule needs it"
    shown = "unknown" if actual is None and cmp.op != "missing" else fmt(actual)
    source = facts.resources_for(cmp.path)
    date = _date_for(cmp.path, facts)
    where = ", ".join([*source[:3], *([date] if date else [])])
    origin = f" ({where})" if where else ""
    if cmp.op == "missing":
        return f"{name} {shown}{suffix}{origin} is known, but the rule needs it unknown"
    if actual is None:
        return f"{name} is unknown{origin}, so it cannot be {cmp.op} {_value(cmp)}"
    expected = _value(cmp) + (suffix if cmp.op in ("<", "<=", ">", ">=", "between") else "")
    param = f" [${cmp.param}]" if cmp.param else ""
    return f"{name} {shown}{suffix}{origin} {NEGATED[cmp.op]} {expected}{param}"


def _value(cmp: Compare) -> str:
    if cmp.op == "between":
        return f"{fmt(cmp.value[0])} and {fmt(cmp.value[1])}"
    if cmp.op == "in":
        return "[" + ", ".join(fmt(v) for v in cmp.value) + "]"
    return fmt(cmp.value)


def failing(cond: Condition, get: Callable[[str], Any]) -> list[Compare]:
    """Comparisons that make a condition fail: the first failing one of an ``all``, all of an ``any``."""
    if evaluate(cond, get):
        return []
    if isinstance(cond, Compare):
        return [cond]
    if cond.op == "all":
        for item in cond.items:
            found = failing(item, get)
            if found:
                return found
        return []
    return [c for item in cond.items for c in failing(item, get)]


@dataclass(frozen=True)
class RuleExplanation:
    """One rule's outcome for one patient."""

    ruleset: str
    version: str
    status: str
    rule_id: str
    code: str
    outcome: str  # fired | suppressed | not fired
    reason: str  # why not (or which policy suppressed it); the matched values when fired


def explain(library: RuleLibrary, result: Result) -> list[RuleExplanation]:
    """Every rule of the library for the patient of ``result`` (evaluated with this library)."""
    facts = result.facts
    cache: dict[str, Any] = {}

    def get(path: str) -> Any:
        if path not in cache:
            cache[path] = facts.get(path)
        return cache[path]

    shown = {(f.rule.ruleset, f.rule.id) for f in result.evaluation.findings}
    suppressed = {s.rule: s for s in result.suppressed}
    out: list[RuleExplanation] = []
    for rs in library.rulesets:
        for rid in sorted(rs.rules):
            compiled = rs.rules[rid]
            code = compiled.rule.then.code
            if evaluate(compiled.condition, get):
                if (rs.name, rid) in shown:
                    outcome, reason = (
                        "fired",
                        "; ".join(f"{label_for(p)} = {fmt(get(p))}" for p in compiled.paths),
                    )
                else:
                    s = suppressed.get(rid)
                    outcome = "suppressed"
                    reason = (
                        f"conditions hold, but policy {s.by_policy} drops it because of {s.because_of}"
                        if s
                        else "conditions hold, but the finding was dropped"
                    )
            else:
                outcome = "not fired"
                parts = [describe_failure(c, facts, library) for c in failing(compiled.condition, get)]
                reason = parts[0] if len(parts) == 1 else "none of: " + "; ".join(parts)
            out.append(RuleExplanation(rs.name, rs.version, rs.spec.status, rid, code, outcome, reason))
    return out

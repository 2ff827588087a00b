"""Static analysis of rule conditions over the fact model: satisfiability, witnesses, overlaps.

A rule condition is an ``all``/``any`` tree of single-fact comparisons, so it expands to a
disjunction of conjunctions (DNF). A conjunction is satisfiable iff every fact path it reads has a
value meeting all of its comparisons; paths are independent in the fact model, so each path is
checked on its own domain (numbers, whole numbers, true/false, enumerations, free text, unknown).
For every domain a finite candidate set built from the constants the rule mentions is complete
(an interval of numbers always contains a constant, a midpoint or a value just beyond them), so
"no candidate fits" proves "can never fire", and a fitting candidate is a concrete witness that
the workbench, ``rules new`` and the overlap check turn into a facts snapshot.

Fact implications (``rules/facts/implications.yaml``: "ILD since the T-DXd start implies ILD
history") couple paths the fact model keeps apart. When given, the paths they link are solved
together, so an overlap that needs ``ild_since_start.tdxd`` true and ``ild_history`` false is
proved impossible instead of reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise, product
from typing import Any

from cds.engine.conditions import Compare, Condition, Group, _allowed, _compare
from cds.engine.runtime import project
from cds.errors import AnalysisTooComplex
from cds.facts.model import PatientFacts, leaf_paths

MAX_CONJUNCTIONS = 512
MAX_COMBINATIONS = 4096  # value combinations tried for paths linked by implications
AGENT = "<agent>"  # the path segment an implication binds to any one catalogue agent
_OTHER_TEXT = "other-value"  # a text value no rule mentions (stands for "anything else")


TooComplex = AnalysisTooComplex  # the name the authoring modules use


@dataclass(frozen=True)
class Domain:
    """The values a fact path can take: its kind, enumeration and whether it may be unknown."""

    kind: str  # number | int | bool | enum | text
    nullable: bool
    literals: tuple[Any, ...] = ()


def domain_of(annotation: Any) -> Domain:
    """The analysis domain of a fact-model annotation."""
    kinds, literals = _allowed(annotation)
    nullable = "None" in str(annotation) or type(None) in getattr(annotation, "__args__", ())
    if bool in kinds:
        return Domain("bool", nullable)
    if literals:
        return Domain("enum", nullable, tuple(sorted(literals, key=str)))
    if float in kinds:
        return Domain("number", nullable)
    if int in kinds:
        return Domain("int", nullable)
    return Domain("text", nullable)


class _Domains(dict[str, Domain]):
    """Domains by fact path; agent-keyed paths (``therapy.on.<agent>``) share one domain, stored
    under the wildcard agent ``*``, so any catalogue agent resolves without a library."""

    def __missing__(self, path: str) -> Domain:
        parts = path.split(".")
        for index in range(len(parts)):
            candidate = ".".join([*parts[:index], "*", *parts[index + 1 :]])
            if dict.__contains__(self, candidate):
                return dict.__getitem__(self, candidate)
        raise KeyError(path)

    def get(self, path: str, default: Any = None) -> Any:
        try:
            return self[path]
        except KeyError:
            return default


_DOMAINS: _Domains | None = None


def domains() -> dict[str, Domain]:
    """Domain of every fact path (cached: the fact model is fixed for a process)."""
    global _DOMAINS
    if _DOMAINS is None:
        _DOMAINS = _Domains({path: domain_of(ann) for path, ann in leaf_paths(agents=("*",)).items()})
    return _DOMAINS


def dnf(cond: Condition, limit: int = MAX_CONJUNCTIONS) -> list[tuple[Compare, ...]]:
    """The condition as a list of conjunctions of comparisons (any of them makes it hold)."""
    if isinstance(cond, Compare):
        return [(cond,)]
    parts = [dnf(item, limit) for item in cond.items]
    if cond.op == "any":
        out = [conj for part in parts for conj in part]
    else:
        out = []
        for combo in product(*parts):
            out.append(tuple(c for conj in combo for c in conj))
            if len(out) > limit:
                raise TooComplex(f"more than {limit} alternative condition combinations")
    if len(out) > limit:
        raise TooComplex(f"more than {limit} alternative condition combinations")
    return out


def _numbers(compares: Iterable[Compare]) -> list[float]:
    values: list[float] = []
    for c in compares:
        raw = c.value if isinstance(c.value, list) else [c.value]
        values.extend(float(v) for v in raw if isinstance(v, int | float) and not isinstance(v, bool))
    return values


def candidates(domain: Domain, compares: Sequence[Compare]) -> list[Any]:
    """A finite set of values that contains a solution whenever the comparisons have one."""
    out: list[Any] = [None] if domain.nullable else []
    if domain.kind == "bool":
        return [*out, True, False]
    if domain.kind == "enum":
        return [*out, *domain.literals]
    if domain.kind == "text":
        texts = [v for c in compares for v in (c.value if isinstance(c.value, list) else [c.value])]
        mentioned = list(dict.fromkeys(str(t) for t in texts if isinstance(t, str)))
        fresh = _OTHER_TEXT
        while fresh in mentioned:
            fresh += "-x"
        return [*out, *mentioned, fresh]
    consts = sorted(set(_numbers(compares))) or [0.0]
    if domain.kind == "int":
        ints: set[int] = set()
        for v in consts:
            base = math.floor(v)
            ints.update({base - 1, base, base + 1, base + 2})
        return [*out, *sorted(ints)]
    nums = [consts[0] - 1, *consts, consts[-1] + 1]
    nums += [(a + b) / 2 for a, b in pairwise(consts)]
    return [*out, *sorted(nums)]


def solve_path(domain: Domain, compares: Sequence[Compare]) -> tuple[bool, Any]:
    """(satisfiable, a witness value) for the comparisons on one path."""
    for value in candidates(domain, compares):
        if all(_compare(c, value) for c in compares):
            return True, value
    return False, None


@dataclass(frozen=True)
class Implication:
    """``premise`` holding forces ``conclusion`` to hold (a fact-derivation guarantee).

    A path segment ``<agent>`` stands for any one catalogue agent, the same in both comparisons.
    """

    id: str
    premise: Compare
    conclusion: Compare

    def instances(self, path: str) -> list[tuple[str, Compare, Compare]]:
        """Ground copies whose premise or conclusion is ``path`` (key, premise, conclusion)."""
        out = []
        for pattern in (self.premise.path, self.conclusion.path):
            agent = _bind(pattern, path)
            if agent is None or (not agent and AGENT in self.premise.path + self.conclusion.path):
                continue  # no match, or the agent stays unbound (only a named agent binds it)
            premise, conclusion = (_ground(c, agent) for c in (self.premise, self.conclusion))
            out.append((f"{self.id}[{agent}]", premise, conclusion))
        return out


def _bind(pattern: str, path: str) -> str | None:
    """The agent a concrete path binds in a pattern ("" for a pattern without one), or None."""
    want, have = pattern.split("."), path.split(".")
    if len(want) != len(have):
        return None
    agent = ""
    for w, h in zip(want, have, strict=True):
        if w == AGENT:
            if agent and agent != h:
                return None
            agent = h
        elif w != h:
            return None
    return agent


def _ground(c: Compare, agent: str) -> Compare:
    return replace(c, path=".".join(agent if p == AGENT else p for p in c.path.split(".")))


@dataclass(frozen=True)
class Solution:
    """Outcome of a conjunction: a witness assignment, or the path whose comparisons conflict."""

    witness: dict[str, Any] | None
    conflict_path: str | None = None
    conflict: tuple[Compare, ...] = ()
    implication: str | None = None  # the implication that made the comparisons conflict


def _relevant(
    paths: Iterable[str], implications: Sequence[Implication]
) -> list[tuple[str, Compare, Compare]]:
    """Ground implications reachable from the conjunction's paths (closure over new paths).
    An agent-keyed premise only binds agents the conjunction (or an earlier match) names."""
    found: dict[str, tuple[str, Compare, Compare]] = {}
    frontier = set(paths)
    known = set(frontier)
    while frontier:
        new: set[str] = set()
        for imp in implications:
            for path in sorted(frontier):
                for key, premise, conclusion in imp.instances(path):
                    if key in found:
                        continue
                    found[key] = (key, premise, conclusion)
                    new.update({premise.path, conclusion.path} - known)
        known |= new
        frontier = new
    return [found[k] for k in sorted(found)]


def _components(links: Iterable[tuple[str, str]]) -> list[set[str]]:
    groups: list[set[str]] = []
    for a, b in links:
        hit = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*hit)
        groups = [g for g in groups if g not in hit] + [merged]
    return groups


_DEFAULTS = PatientFacts()


def _default(path: str) -> Any:
    """The fact model's value when nothing is known (a free path left at it stays out of witnesses)."""
    try:
        return _DEFAULTS.get(path)
    except KeyError:
        return None


def _holds(premise: Compare, conclusion: Compare, values: Mapping[str, Any]) -> bool:
    return not _compare(premise, values.get(premise.path)) or _compare(
        conclusion, values.get(conclusion.path)
    )


def solve(
    conj: Sequence[Compare],
    doms: Mapping[str, Domain] | None = None,
    implications: Sequence[Implication] = (),
) -> Solution:
    """Solve a conjunction path by path (paths linked by an implication together)."""
    doms = doms or domains()
    by_path: dict[str, list[Compare]] = {}
    for c in conj:
        by_path.setdefault(c.path, []).append(c)
    rel = _relevant(by_path, implications) if implications else []
    groups = _components((p.path, q.path) for _k, p, q in rel)
    linked = set().union(*groups) if groups else set()
    witness: dict[str, Any] = {}
    for path, compares in by_path.items():
        if path in linked:
            continue
        ok, value = solve_path(doms[path], compares)
        if not ok:
            return Solution(None, path, tuple(compares))
        witness[path] = value
    for group in sorted(groups, key=sorted):
        paths = sorted(group)
        imps = [(k, p, q) for k, p, q in rel if p.path in group]
        options: list[list[Any]] = []
        for path in paths:
            own = by_path.get(path, [])
            extra = [c for _k, p, q in imps for c in (p, q) if c.path == path]
            values = [v for v in candidates(doms[path], [*own, *extra]) if all(_compare(c, v) for c in own)]
            if not values:
                return Solution(None, path, tuple(own))
            if path not in by_path:  # a free path: prefer its default, then values triggering no premise
                premises = [i for _k, i, _q in imps if i.path == path]
                default = _default(path)
                values.sort(key=lambda v: (any(_compare(i, v) for i in premises), v != default))
            options.append(values)
        if math.prod(len(o) for o in options) > MAX_COMBINATIONS:
            raise TooComplex(f"more than {MAX_COMBINATIONS} value combinations for {', '.join(paths)}")
        for combo in product(*options):
            values_at = dict(zip(paths, combo, strict=True))
            if all(_holds(p, q, values_at) for _k, p, q in imps):
                witness.update({p: v for p, v in values_at.items() if p in by_path or v != _default(p)})
                break
        else:
            clash = tuple(c for p in paths for c in by_path.get(p, []))
            # name the implications between constrained paths (the others only relay)
            named = [k for k, p, q in imps if p.path in by_path and q.path in by_path]
            named = named or [k for k, _p, _q in imps]
            return Solution(None, paths[0], clash, ", ".join(sorted({k.split("[")[0] for k in named})))
    return Solution(witness)


def witnesses(cond: Condition) -> list[dict[str, Any]]:
    """A witness assignment for every satisfiable alternative of the condition."""
    out = []
    for conj in dnf(cond):
        sol = solve(conj)
        if sol.witness is not None:
            out.append(sol.witness)
    return out


def why_never(cond: Condition, implications: Sequence[Implication] = ()) -> str | None:
    """None when the condition can hold; else a plain sentence saying which comparisons clash."""
    conjs = dnf(cond)
    clashes = []
    for conj in conjs:
        sol = solve(conj, implications=implications)
        if sol.witness is not None:
            return None
        clash = " and ".join(c.describe() for c in sol.conflict)
        clashes.append(f"{clash} (fact implication {sol.implication})" if sol.implication else clash)
    unique = list(dict.fromkeys(clashes))
    return "; ".join(unique[:3]) + (
        " cannot both hold" if len(unique) == 1 else " (each alternative clashes)"
    )


def facts_snapshot(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """A nested facts mapping (as embedded tests write it) from path -> value; unknown is left out."""
    return project(tuple(sorted(assignment)), assignment.get)


def facts_from(assignment: Mapping[str, Any]) -> PatientFacts | None:
    """PatientFacts for a witness, or None if the model rejects it (the witness is then unused)."""
    try:
        facts = PatientFacts.model_validate(facts_snapshot(assignment))
    except ValueError:
        return None
    for path, value in assignment.items():
        if value is None and facts.get(path) is not None:
            return None  # a non-null default would contradict an "unknown" witness
    return facts


def joint_witness(
    a: Condition, b: Condition, implications: Sequence[Implication] = ()
) -> dict[str, Any] | None:
    """An assignment satisfying both conditions at once (and every implication), or None if
    they are exclusive."""
    da, db = dnf(a), dnf(b)
    for ca in da:
        for cb in db:
            sol = solve((*ca, *cb), implications=implications)
            if sol.witness is not None:
                return sol.witness
    return None


def negation_witnesses(cond: Condition) -> list[tuple[str, dict[str, Any]]]:
    """For an ``all`` condition: per item, an assignment where that item fails and every other holds.

    These are the boundary "must stay silent" test cases a scaffolded rule starts with.
    """
    if not isinstance(cond, Group) or cond.op != "all":
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(cond.items):
        if not isinstance(item, Compare):
            continue
        others = tuple(c for i, c in enumerate(cond.items) if i != index)
        rest = Group("all", others) if others else None
        for flipped in _flips(item):
            conjs = dnf(Group("all", (*((rest,) if rest else ()), flipped)))
            sol = next((s for s in (solve(c) for c in conjs) if s.witness is not None), None)
            if sol is not None and sol.witness is not None:
                out.append((f"not {item.describe()}", sol.witness))
                break
    return out


def _flips(c: Compare) -> list[Compare]:
    """Comparisons covering where ``c`` fails (boundary first)."""
    inverse = {
        "<": ">=",
        "<=": ">",
        ">": "<=",
        ">=": "<",
        "==": "!=",
        "!=": "==",
        "exists": "missing",
        "missing": "exists",
    }
    if c.op in inverse:
        value: Any = True if c.op in ("exists", "missing") else c.value
        if c.op in ("exists", "missing"):
            return [Compare(c.path, inverse[c.op], True)]
        return [Compare(c.path, inverse[c.op], value), Compare(c.path, "missing", True)]
    if c.op == "between":
        return [Compare(c.path, "<", c.value[0]), Compare(c.path, ">", c.value[1])]
    if c.op == "in":
        doms = domains()
        dom = doms[c.path]
        outside = [v for v in candidates(dom, [c]) if v is not None and v not in c.value]
        return [Compare(c.path, "==", v) for v in outside[:1]] + [Compare(c.path, "missing", True)]
    return []

"""Run a compiled ``RuleLibrary`` on one patient's facts: durable_rules fires, Python explains.

durable_rules decides which rules fire. The Python evaluator of the same conditions is used only
to explain (the values each fired rule matched, the first failing condition of the others) and,
in tests and benchmarks, as a cross-check that both agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds.engine.conditions import evaluate, first_failure
from cds.engine.durable import DurableRunner
from cds.engine.library import MAX_FACT_PATHS, CompiledRuleset, RuleLibrary
from cds.facts.model import PatientFacts


@dataclass(frozen=True)
class Fired:
    """One rule that fired, with the fact values it read."""

    ruleset: CompiledRuleset
    rule_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class TraceEntry:
    """Every rule's outcome for one patient (the ``--trace`` / explain view)."""

    ruleset: str
    version: str
    rule_id: str
    fired: bool
    reason: str | None  # first failing condition with the patient's value, when not fired
    values: dict[str, Any]


def getter(facts: PatientFacts) -> Callable[[str], Any]:
    """A cached dotted-path reader over the facts."""
    cache: dict[str, Any] = {}

    def get(path: str) -> Any:
        if path not in cache:
            cache[path] = facts.get(path)
        return cache[path]

    return get


_SPLIT: dict[str, tuple[tuple[str, ...], str]] = {}


def project(paths: tuple[str, ...], get: Callable[[str], Any]) -> dict[str, Any]:
    """The nested engine fact holding only known values of the paths a ruleset reads."""
    fact: dict[str, Any] = {}
    for path in paths:
        value = get(path)
        if value is None:
            continue
        split = _SPLIT.get(path)
        if split is None:
            *parents, leaf = path.split(".")
            split = _SPLIT[path] = (tuple(parents), leaf)
        node = fact
        for part in split[0]:
            node = node.setdefault(part, {})
        node[split[1]] = value
    return fact


MAX_GROUP_RULES = 200  # durable_rules fails around 480 rules in one ruleset (issue #312)


@dataclass(frozen=True)
class _Group:
    """Rulesets asserted together: one durable ruleset holding all their rules.

    durable's cost is mostly per assert (its Python action loop, session state, ``delete_state``),
    so the library's rulesets share as few asserts as the fact-size and rule-count limits allow:
    each rule is a condition on the one patient fact, so which rules fire does not depend on
    which durable ruleset holds them.
    """

    durable_name: str
    paths: tuple[str, ...]
    actions: dict[str, tuple[int, str]]  # durable action name -> (ruleset index, rule id)
    definition: dict[str, Any]


def _groups(library: RuleLibrary) -> list[_Group]:
    """Pack the library's rulesets, in order, into groups under ``MAX_FACT_PATHS`` paths and
    ``MAX_GROUP_RULES`` rules (a ruleset over either limit is refused when it is loaded)."""
    members: list[list[int]] = []
    paths: list[dict[str, None]] = []
    for index, ruleset in enumerate(library.rulesets):
        if not ruleset.rules:
            continue
        if members:
            union = paths[-1] | dict.fromkeys(ruleset.paths)
            count = sum(len(library.rulesets[i].rules) for i in members[-1]) + len(ruleset.rules)
            if len(union) <= MAX_FACT_PATHS and count <= MAX_GROUP_RULES:
                members[-1].append(index)
                paths[-1] = union
                continue
        members.append([index])
        paths.append(dict.fromkeys(ruleset.paths))
    groups: list[_Group] = []
    for indices, group_paths in zip(members, paths, strict=True):
        names = "|".join(library.rulesets[i].durable_name for i in indices)
        actions: dict[str, tuple[int, str]] = {}
        definition: dict[str, Any] = {}
        for i in indices:
            ruleset = library.rulesets[i]
            for rule_id in sorted(ruleset.rules):
                action = f"r{len(actions)}"
                actions[action] = (i, rule_id)
                definition[action] = {**ruleset.durable[rule_id], "run": action}
        digest = hashlib.sha256(names.encode()).hexdigest()[:16]
        groups.append(_Group(f"cds-{digest}", tuple(group_paths), actions, definition))
    return groups


class RuleEngine:
    """One durable Host for a library; build once per process and reuse for every patient."""

    def __init__(self, library: RuleLibrary) -> None:
        self.library = library
        self._groups = _groups(library)
        self._runner = DurableRunner({g.durable_name: g.definition for g in self._groups})

    def forget(self) -> None:
        """Forget which rules fired for facts seen before (see ``DurableRunner.forget``)."""
        self._runner.forget()

    def fire(self, facts: PatientFacts) -> list[Fired]:
        """Fire every loaded ruleset on the facts; deterministic order (ruleset, rule id)."""
        get = getter(facts)
        hits: set[tuple[int, str]] = set()
        for group in self._groups:
            for action in self._runner.fire(group.durable_name, project(group.paths, get)):
                hits.add(group.actions[action])
        fired: list[Fired] = []
        for index, rule_id in sorted(hits):
            ruleset = self.library.rulesets[index]
            fired.append(Fired(ruleset, rule_id, {p: get(p) for p in ruleset.rules[rule_id].paths}))
        return fired

    def trace(self, facts: PatientFacts, fired: list[Fired]) -> list[TraceEntry]:
        """Every rule with fired/not fired and, when not fired, why (with the patient's value)."""
        get = getter(facts)
        fired_ids = {(f.ruleset.name, f.rule_id) for f in fired}
        out: list[TraceEntry] = []
        for ruleset in self.library.rulesets:
            for rule_id in sorted(ruleset.rules):
                compiled = ruleset.rules[rule_id]
                did = (ruleset.name, rule_id) in fired_ids
                out.append(
                    TraceEntry(
                        ruleset.name,
                        ruleset.version,
                        rule_id,
                        did,
                        None if did else first_failure(compiled.condition, get),
                        {p: get(p) for p in compiled.paths},
                    )
                )
        return out


def fire_in_python(library: RuleLibrary, facts: PatientFacts) -> list[tuple[str, str]]:
    """The reference evaluator: (ruleset, rule id) that hold, without durable_rules."""
    get = getter(facts)
    return [
        (rs.name, rid)
        for rs in library.rulesets
        for rid in sorted(rs.rules)
        if evaluate(rs.rules[rid].condition, get)
    ]

"""Conflicting overlaps: pairs of rules whose findings contradict each other and can fire together.

Two rules conflict when they produce the same code with different outcomes (only one is shown),
or a preferred recommendation gives a drug that a hold/discontinue/review alert is about. A
conflict is an overlap when a joint witness exists (a facts assignment satisfying both conditions
and every fact implication, re-checked on the real fact model). A policy that suppresses one of
the pair, or marks it for review, whenever the other fires resolves the contradiction in data,
so such pairs are reported as resolved, not as warnings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cds.authoring import analysis
from cds.engine.conditions import evaluate
from cds.engine.library import CompiledRule, CompiledRuleset, RuleLibrary
from cds.engine.runtime import getter
from cds.engine.schema import Policy, Then
from cds.knowledge.catalogue import Catalogue

AVOID_ACTIONS = {"review", "hold", "hold-reduce", "discontinue"}
Progress = Callable[[str, int, int], None]


def _drugs(compiled: CompiledRule, catalogue: Catalogue) -> set[str]:
    """The catalogue agents a recommendation's regimen gives, or an alert is about."""
    then = compiled.rule.then
    if then.kind == "recommendation" and then.regimen and then.regimen in catalogue.regimens:
        return set(catalogue.regimens[then.regimen].agents)
    if then.kind == "alert" and then.applies_to:
        if then.applies_to in catalogue.agents:
            return {then.applies_to}
        return set(catalogue.with_class(then.applies_to))
    return set()


def _outcome(then: Then) -> str:
    return f"{then.action or then.strength}, {then.resolved_severity()}"


def conflict_reason(a: CompiledRule, b: CompiledRule, catalogue: Catalogue) -> str | None:
    """Why two rules must not fire for the same patient, or None if they may."""
    ta, tb = a.rule.then, b.rule.then
    if ta.code == tb.code and (ta.action, ta.strength, ta.regimen, ta.resolved_severity()) != (
        tb.action,
        tb.strength,
        tb.regimen,
        tb.resolved_severity(),
    ):
        return (
            f"both produce {ta.code} with different outcomes "
            f"({_outcome(ta)} vs {_outcome(tb)}); only one can be shown"
        )
    for rec, alert in ((a, b), (b, a)):
        tr, tl = rec.rule.then, alert.rule.then
        if (
            tr.kind == "recommendation"
            and tr.strength == "preferred"
            and tl.kind == "alert"
            and tl.action in AVOID_ACTIONS
        ):
            shared = _drugs(rec, catalogue) & _drugs(alert, catalogue)
            if shared:
                return (
                    f"preferred recommendation {tr.code} ({tr.regimen}) and {tl.action} alert "
                    f"{tl.code} on {'/'.join(sorted(shared))}"
                )
    return None


def _triggers(policy: Policy, code: str) -> bool:
    return policy.if_code == code or bool(policy.if_code_prefix and code.startswith(policy.if_code_prefix))


def policy_resolution(a: CompiledRule, b: CompiledRule, policies: Sequence[Policy]) -> str | None:
    """The policy that suppresses one rule's finding, or marks it for review, whenever the other's
    finding is present (so both never show as two confident findings); None if there is none."""
    for first, second in ((a, b), (b, a)):
        trigger, target = first.rule.then, second.rule.then
        if trigger.code == target.code:
            continue
        for policy in policies:
            if not _triggers(policy, trigger.code) or target.code in policy.keep_codes:
                continue
            if (
                target.code in policy.suppress_codes
                or target.kind in policy.suppress_kinds
                or policy.suppress_all_others
            ):
                return f"policy {policy.id} suppresses {target.code} when {trigger.code} is present"
            if policy.review_note and policy.marks(target.code, target.kind):
                return f"policy {policy.id} marks {target.code} for review when {trigger.code} is present"
    return None


@dataclass(frozen=True)
class Overlap:
    """A conflicting pair and whether (and how) both can fire for one patient."""

    ruleset_a: CompiledRuleset
    rule_a: str
    ruleset_b: CompiledRuleset
    rule_b: str
    reason: str
    witness: dict[str, Any] | None  # a verified facts assignment on which both fire
    resolved_by: str | None  # a policy that resolves the conflict

    @property
    def pair(self) -> frozenset[str]:
        """The two rule ids (unordered)."""
        return frozenset((self.rule_a, self.rule_b))


def joint_witness(
    a: CompiledRule, b: CompiledRule, implications: Sequence[analysis.Implication] = ()
) -> dict[str, Any] | None:
    """A facts assignment on which both rules fire (checked on the fact model), or None."""
    try:
        witness = analysis.joint_witness(a.condition, b.condition, implications)
    except analysis.TooComplex:
        return None
    if witness is None:
        return None
    facts = analysis.facts_from(witness)
    if facts is None or not (evaluate(a.condition, getter(facts)) and evaluate(b.condition, getter(facts))):
        return None
    return witness


def active_rules(library: RuleLibrary) -> list[tuple[CompiledRuleset, str, CompiledRule]]:
    """Every rule of a ruleset that is not retired, in library order."""
    return [
        (rs, rid, c) for rs in library.rulesets if rs.spec.status != "retired" for rid, c in rs.rules.items()
    ]


def conflicting_pairs(
    library: RuleLibrary,
    implications: Sequence[analysis.Implication] = (),
    progress: Progress | None = None,
) -> list[Overlap]:
    """Every conflicting pair of active rules, with its joint witness (None when exclusive)."""
    rules = active_rules(library)
    out = []
    for i, (rs_a, id_a, a) in enumerate(rules):
        if progress is not None:
            progress("checking overlaps", i, len(rules))
        for rs_b, id_b, b in rules[i + 1 :]:
            reason = conflict_reason(a, b, library.catalogue)
            if reason is None:
                continue
            out.append(
                Overlap(
                    rs_a,
                    id_a,
                    rs_b,
                    id_b,
                    reason,
                    joint_witness(a, b, implications),
                    policy_resolution(a, b, library.policies),
                )
            )
    if progress is not None:
        progress("checking overlaps", len(rules), len(rules))
    return out


def pair(
    library: RuleLibrary, id_a: str, id_b: str, implications: Sequence[analysis.Implication] = ()
) -> Overlap | None:
    """The conflict between two named rules (any ruleset), or None when they do not conflict."""
    rs_a, a = library.rule(id_a)
    rs_b, b = library.rule(id_b)
    reason = conflict_reason(a, b, library.catalogue)
    if reason is None:
        return None
    return Overlap(
        rs_a,
        id_a,
        rs_b,
        id_b,
        reason,
        joint_witness(a, b, implications),
        policy_resolution(a, b, library.policies),
    )

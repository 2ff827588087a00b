"""Fired rules -> findings: templates, basis, evidence, review flags, policies, ordering.

Only what rules cannot express happens here, and it is data-driven: suppression policies from the
rule files (e.g. recommendations blocked while a ``gap.her2-*`` is open), one finding per code,
and the deterministic order of clinical-spec §3.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cds.engine.conditions import evaluate, matched_labels
from cds.engine.library import RuleLibrary
from cds.engine.runtime import Fired, getter
from cds.facts.model import PatientFacts
from cds.findings.model import Basis, Evidence, Finding, RuleRef, Suppressed

PLACEHOLDER = re.compile(r"\{(\$?[a-z_][a-z0-9_.]*)\}")
UNVERIFIED_NOTE = "Unverified rule content: verify against the current label before acting."


def fmt(value: Any) -> str:
    """Human formatting of a fact value for summaries and details."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, list):
        return "/".join(fmt(v) for v in value)
    return str(value)


def render(
    template: str,
    get: Callable[[str], Any],
    params: dict[str, Any],
    matched: list[str],
    display: Callable[[str], str] | None = None,
) -> str:
    """Fill ``{fact.path}``, ``{$parameter}`` and ``{matched}`` placeholders. Catalogue ids in a
    fact value (``tdm1``, ``phesgo``) are shown by their display names (T-DM1, Phesgo)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "matched":
            return ", ".join(matched) if matched else "none"
        if name.startswith("$"):
            return fmt(params.get(name[1:]))
        try:
            value = get(name)
        except KeyError:
            return m.group(0)
        if display is not None and isinstance(value, str):
            return ", ".join(display(part) for part in value.split(", "))
        return fmt(value)

    return " ".join(PLACEHOLDER.sub(sub, template).split())


def build_findings(
    library: RuleLibrary, facts: PatientFacts, fired: list[Fired]
) -> tuple[list[Finding], list[Suppressed]]:
    """Findings for the fired rules, after policies, one per code, sorted (clinical-spec §3)."""
    get = getter(facts)
    show = library.catalogue.display
    findings: list[Finding] = []
    for f in fired:
        compiled = f.ruleset.rules[f.rule_id]
        rule, then = compiled.rule, compiled.rule.then
        matched = [
            render(label, get, library.parameters, [], show)
            for label in matched_labels(compiled.condition, get)
        ]
        summary = render(then.summary, get, library.parameters, matched, show)
        detail = render(then.detail, get, library.parameters, matched, show)
        review = rule.evidence_status == "unverified"
        notes: list[str] = []
        for condition, note in compiled.review:
            if evaluate(condition, get):
                review = True
                notes.append(render(note, get, library.parameters, matched, show))
        if then.applies_to and facts.order.present and _order_is_for(library, facts, then.applies_to):
            detail = f"Before this dose (draft order): {detail}"
        if notes:
            detail = f"{detail} Review: {' '.join(notes)}"
        if rule.evidence_status == "unverified":
            detail = f"{detail} {UNVERIFIED_NOTE}"
        findings.append(
            Finding(
                code=then.code,
                kind=then.kind,
                severity=then.resolved_severity(),
                strength=then.strength,
                regimen=then.regimen,
                action=then.action,
                summary=summary,
                detail=detail,
                review_required=review,
                rule=RuleRef(
                    id=rule.id,
                    version=f.ruleset.version,
                    ruleset=f.ruleset.name,
                    evidence_status=rule.evidence_status,
                ),
                evidence=[
                    Evidence(label=e.label, citation=e.citation, url=e.url)
                    for e in (library.evidence.evidence[k] for k in then.evidence)
                ],
                basis=[Basis(fact=p, value=get(p), resources=facts.resources_for(p)) for p in compiled.paths],
            )
        )
    return apply_policies(library, findings, facts)


def _order_is_for(library: RuleLibrary, facts: PatientFacts, applies_to: str) -> bool:
    """Whether the draft order counts as the agent (or is of the drug class) an alert is about."""
    ordered = [a for a, yes in facts.order.agents.items() if yes]
    catalogue = library.catalogue
    if applies_to in catalogue.agents:
        return applies_to in ordered
    return any(applies_to in catalogue.agents[a].classes for a in ordered if a in catalogue.agents)


def apply_policies(
    library: RuleLibrary, findings: list[Finding], facts: PatientFacts | None = None
) -> tuple[list[Finding], list[Suppressed]]:
    """Apply the policies (suppression, review marks), keep one finding per code, and sort."""
    ordered = sorted(findings, key=Finding.sort_key)
    suppressed: list[Suppressed] = []
    alive = list(ordered)
    get = getter(facts) if facts is not None else None
    for policy in library.policies:
        if policy.if_fact is not None:
            if get is None or get(policy.if_fact) is not True:
                continue
            trigger_code: str | None = None
        else:
            triggers = [
                f
                for f in alive
                if (policy.if_code and f.code == policy.if_code)
                or (policy.if_code_prefix and f.code.startswith(policy.if_code_prefix))
            ]
            if not triggers:
                continue
            trigger_code = triggers[0].code
        keep: list[Finding] = []
        for f in alive:
            hit = (
                f.code != trigger_code
                and f.code not in policy.keep_codes
                and (
                    f.code in policy.suppress_codes
                    or f.kind in policy.suppress_kinds
                    or (policy.suppress_all_others and trigger_code is not None)
                )
            )
            if hit:
                suppressed.append(
                    Suppressed(
                        code=f.code,
                        rule=f.rule.id,
                        by_policy=policy.id,
                        because_of=trigger_code or policy.if_fact or "",
                    )
                )
                continue
            if policy.review_note and f.code != trigger_code and policy.marks(f.code, f.kind):
                note = render(policy.review_note, get, library.parameters, []) if get else policy.review_note
                if note not in f.detail:
                    f = f.model_copy(update={"review_required": True, "detail": f"{f.detail} Review: {note}"})
            keep.append(f)
        alive = keep
    seen: set[str] = set()
    unique: list[Finding] = []
    for f in alive:
        if f.code in seen:
            suppressed.append(
                Suppressed(code=f.code, rule=f.rule.id, by_policy="one-finding-per-code", because_of=f.code)
            )
            continue
        seen.add(f.code)
        unique.append(f)
    return unique, suppressed

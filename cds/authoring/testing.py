"""Run the test cases embedded in rule files (``tests:``), as pharmacists wrote them.

A case gives a partial facts snapshot (defaults fill the rest) or a bundle path, and the finding
codes the ruleset must produce, compared as a set (``exact``), plus codes that must not fire.
Every case is also evaluated by the pure-Python reference evaluator; durable_rules and the
reference must agree, so an engine quirk cannot pass unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds.engine.library import CompiledRuleset, RuleLibrary
from cds.engine.runtime import RuleEngine, fire_in_python
from cds.engine.schema import TestCase
from cds.errors import InputRejected
from cds.evaluate import Evaluator, parse_as_of
from cds.facts.model import PatientFacts
from cds.fhir.source import raw_patient_from_path, read_order
from cds.findings.build import build_findings

DEFAULT_TEST_AS_OF = "2026-11-01"


@dataclass(frozen=True)
class CaseOutcome:
    """The result of one embedded test case."""

    ruleset: str
    file: str
    name: str
    passed: bool
    expected: tuple[str, ...]
    got: tuple[str, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    def diff(self) -> str:
        """A readable diff: what was missing, what was extra, what must not have fired."""
        return "; ".join(self.problems) if self.problems else "ok"


def _codes_for(
    ruleset: CompiledRuleset, library: RuleLibrary, engine: RuleEngine, facts: PatientFacts
) -> list[str]:
    fired = [f for f in engine.fire(facts) if f.ruleset.name == ruleset.name]
    findings, _ = build_findings(library, facts, fired)
    return [f.code for f in findings]


def expand_dotted(facts: dict[str, Any]) -> dict[str, Any]:
    """Snapshot keys may be dotted (``therapy: {on.tdm1: true, started.tdm1: true}``): agent-keyed
    facts read naturally in a flow mapping; nested dicts are merged."""
    out: dict[str, Any] = {}
    for key, value in facts.items():
        node = out
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict):
            merged = expand_dotted(value)
            existing = node.get(leaf)
            node[leaf] = {**existing, **merged} if isinstance(existing, dict) else merged
        else:
            node[leaf] = value
    return out


def case_facts(
    ruleset: CompiledRuleset, case: TestCase, library: RuleLibrary, evaluator: Evaluator
) -> PatientFacts | str:
    """The facts a case runs on (its snapshot, or its bundle evaluated as of its date); str = why not."""
    if case.facts is not None:
        try:
            return PatientFacts.model_validate(expand_dotted(case.facts))
        except ValidationError as exc:
            first = exc.errors()[0]
            return f"facts snapshot is not valid: {first['msg']} at {'.'.join(str(p) for p in first['loc'])}"
    assert case.bundle is not None
    base = ruleset.source.parent
    bundle = (base / case.bundle) if (base / case.bundle).exists() else Path(case.bundle)
    try:
        order = None
        if case.order:
            order_path = (base / case.order) if (base / case.order).exists() else Path(case.order)
            order = read_order(order_path.read_bytes(), str(order_path))
        record = evaluator.parse(raw_patient_from_path(bundle), order)
    except (InputRejected, OSError) as exc:
        return f"bundle not usable: {exc}"
    from cds.facts.build import build_facts

    as_of = parse_as_of(case.as_of or DEFAULT_TEST_AS_OF)
    return build_facts(record, library.valuesets, library.params, as_of)


def run_case(
    ruleset: CompiledRuleset, case: TestCase, library: RuleLibrary, evaluator: Evaluator
) -> CaseOutcome:
    """Run one case and compare its codes with the expectation."""
    problems: list[str] = []
    facts = case_facts(ruleset, case, library, evaluator)
    if isinstance(facts, str):
        return CaseOutcome(
            ruleset.name, ruleset.source.name, case.name, False, tuple(case.expect.fired), (), (facts,)
        )
    got = _codes_for(ruleset, library, evaluator.engine, facts)
    reference = {rid for name, rid in fire_in_python(library, facts) if name == ruleset.name}
    durable = {f.rule_id for f in evaluator.engine.fire(facts) if f.ruleset.name == ruleset.name}
    if reference != durable:
        problems.append(f"engines disagree: durable_rules {sorted(durable)} vs reference {sorted(reference)}")
    expected = set(case.expect.fired)
    missing = sorted(expected - set(got))
    extra = sorted(set(got) - expected)
    if missing:
        problems.append(f"expected but not fired: {', '.join(missing)}")
    if extra and case.expect.exact:
        problems.append(f"fired but not expected: {', '.join(extra)}")
    wrong = sorted(set(case.expect.not_fired) & set(got))
    if wrong:
        problems.append(f"must not fire but did: {', '.join(wrong)}")
    return CaseOutcome(
        ruleset.name,
        ruleset.source.name,
        case.name,
        not problems,
        tuple(sorted(expected)),
        tuple(sorted(set(got))),
        tuple(problems),
    )


def run_embedded_tests(library: RuleLibrary, evaluator: Evaluator | None = None) -> list[CaseOutcome]:
    """Every embedded case of every loaded ruleset, in file order."""
    evaluator = evaluator or Evaluator(library)
    return [run_case(rs, case, library, evaluator) for rs in library.rulesets for case in rs.spec.tests]


def explain_outcome(library: RuleLibrary, evaluator: Evaluator, outcome: CaseOutcome) -> list[str]:
    """A readable diff for a failed case: each problem, then why each missing code did not fire
    (first failing condition with the case's value) and what made each unexpected code fire."""
    from cds.authoring.explain import describe_failure, failing, label_for
    from cds.engine.runtime import getter

    lines = [
        f"expected: {', '.join(outcome.expected) or '(nothing)'}",
        f"got:      {', '.join(outcome.got) or '(nothing)'}",
        *outcome.problems,
    ]
    ruleset = next((rs for rs in library.rulesets if rs.name == outcome.ruleset), None)
    case = next((c for c in ruleset.spec.tests if c.name == outcome.name), None) if ruleset else None
    if ruleset is None or case is None:
        return lines
    facts = case_facts(ruleset, case, library, evaluator)
    if isinstance(facts, str):
        return lines
    get = getter(facts)
    missing = set(outcome.expected) - set(outcome.got)
    extra = (set(outcome.got) - set(outcome.expected)) | (set(case.expect.not_fired) & set(outcome.got))
    for rid, compiled in sorted(ruleset.rules.items()):
        code = compiled.rule.then.code
        if code in missing:
            fails = failing(compiled.condition, get)
            why = "; ".join(describe_failure(c, facts, library) for c in fails) or "suppressed by a policy"
            lines.append(f"- {code} not fired: rule {rid}: {why}")
        elif code in extra and compiled.paths:
            values = ", ".join(f"{label_for(p)} = {get(p)}" for p in compiled.paths)
            lines.append(f"+ {code} fired: rule {rid} holds with {values}")
    return lines

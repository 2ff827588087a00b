"""``cds rules lint``: every problem a pharmacist can make in a rules directory, with file:line.

Errors block (exit non-zero): schema and reference errors (from the loader), rules that can never
fire, test expectations naming codes no rule produces, approved content changed without a
version bump. Warnings are listed for review: conflicting overlaps (found statically, then
checked on the sample cohort), rules no embedded test exercises, missing evidence, unknown
enumeration values, lifecycle jumps. The loader already checks paths, operators, parameter and
evidence keys; lint adds what needs the whole directory, the cohort or git.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds import config
from cds.authoring import analysis, gitutil
from cds.authoring.cohort import load_cohort, run_patient
from cds.engine.conditions import Compare, evaluate
from cds.engine.library import CompiledRule, CompiledRuleset, RuleLibrary, load_library
from cds.engine.runtime import getter
from cds.errors import ConditionError, ConfigurationError, Diagnostic, InputRejected, RuleDefinitionError
from cds.evaluate import Evaluator
from cds.facts.model import PatientFacts, leaf_paths
from cds.knowledge.catalogue import Catalogue

ALL_STATUSES = frozenset({"draft", "in-review", "approved", "retired"})
WORKING_STATUSES = config.WORKING_STATUSES
TRANSITIONS = {
    "draft": {"draft", "in-review", "retired"},
    "in-review": {"in-review", "draft", "approved", "retired"},
    "approved": {"approved", "draft", "in-review", "retired"},
    "retired": {"retired", "draft"},
}
AGENT_VALUED = {"order.agent", "order.product", "order.matches_other_agent"}  # catalogue ids
AVOID_ACTIONS = {"review", "hold", "hold-reduce", "discontinue"}
PLACEHOLDER = re.compile(r"\{(\$?[a-z_][a-z0-9_.]*)\}")
CONTENT_EXCLUDED = {"tests", "status", "approved_by", "approved_on"}


@dataclass
class LintReport:
    """Diagnostics of one lint run (errors, warnings, notes) and what was checked."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def add(
        self,
        file: str,
        message: str,
        *,
        severity: str = "error",
        rule: str | None = None,
        field_: str | None = None,
        line: int | None = None,
    ) -> None:
        """Record one diagnostic."""
        self.diagnostics.append(
            Diagnostic(file, message, rule=rule, field=field_, line=line, severity=severity)
        )

    def of(self, severity: str) -> list[Diagnostic]:
        """Diagnostics of one severity, in file/line order."""
        return sorted(
            (d for d in self.diagnostics if d.severity == severity),
            key=lambda d: (d.file, d.line or 0, d.rule or "", d.message),
        )

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.of("error")


def rule_lines(path: Path) -> dict[str, int]:
    """1-based line of every rule's ``id`` in a rule file (for file:line diagnostics)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return out
    for key, value in node.value:
        if getattr(key, "value", None) == "rules" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if getattr(k, "value", None) == "id":
                            out[str(v.value)] = v.start_mark.line + 1
    return out


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
            f"({ta.action or ta.strength} vs {tb.action or tb.strength}); only one can be shown"
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


def _enum_words(description: str | None) -> set[str] | None:
    """Allowed words when a free-text fact's description enumerates them ("a, b, c")."""
    if not description:
        return None
    tail = description.rsplit(":", 1)[-1]
    words = [w.strip().strip('"') for w in tail.split(",")]
    if len(words) < 2 or not all(re.fullmatch(r"[a-z0-9_+\-]+", w) for w in words):
        return None
    return set(words)


def _descriptions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}

    def walk(model: Any, prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = f.description

    walk(PatientFacts, "")
    return out


def _compares(cond: Any) -> Iterable[Any]:
    if isinstance(cond, Compare):
        yield cond
    else:
        for item in cond.items:
            yield from _compares(item)


def check_rules(library: RuleLibrary, report: LintReport) -> None:
    """Per-rule checks: can fire, placeholders, enumeration values, evidence, applies_to."""
    paths = leaf_paths(agents=library.catalogue.agent_ids())
    descriptions = _descriptions()
    for rs in library.rulesets:
        if rs.spec.status == "retired":
            continue
        lines = rule_lines(rs.source)
        file = str(rs.source)
        for rid, compiled in rs.rules.items():
            line = lines.get(rid)
            try:
                never = analysis.why_never(compiled.condition)
            except analysis.TooComplex as exc:
                report.add(
                    file, f"condition too complex to analyse: {exc}", severity="warning", rule=rid, line=line
                )
                never = None
            if never:
                report.add(file, f"can never fire: {never}", rule=rid, field_="when", line=line)
            then = compiled.rule.then
            for text_field in ("summary", "detail"):
                for name in PLACEHOLDER.findall(getattr(then, text_field)):
                    if name == "matched":
                        continue
                    if name.startswith("$") and name[1:] not in library.parameters:
                        report.add(
                            file,
                            f"unknown parameter {{{name}}} in {text_field}",
                            rule=rid,
                            field_=f"then.{text_field}",
                            line=line,
                        )
                    elif not name.startswith("$") and name not in paths:
                        report.add(
                            file,
                            f"unknown fact {{{name}}} in {text_field}",
                            rule=rid,
                            field_=f"then.{text_field}",
                            line=line,
                        )
            for cmp in _compares(compiled.condition):
                words = (
                    _enum_words(descriptions.get(cmp.path))
                    if analysis.domains()[cmp.path].kind == "text"
                    else None
                )
                values = cmp.value if isinstance(cmp.value, list) else [cmp.value]
                if cmp.path in AGENT_VALUED:
                    words = {*library.catalogue.items, "other", "ambiguous"}
                for v in values:
                    if words and isinstance(v, str) and v not in words:
                        report.add(
                            file,
                            f"{cmp.path} is never {v!r} (known values: {', '.join(sorted(words))})",
                            severity="warning",
                            rule=rid,
                            field_="when",
                            line=line,
                        )
            if not then.evidence:
                report.add(
                    file,
                    f"no evidence cited for this {then.kind}",
                    severity="warning",
                    rule=rid,
                    field_="then.evidence",
                    line=line,
                )
    used = {k for rs in library.rulesets for c in rs.rules.values() for k in c.rule.then.evidence}
    for key in sorted(set(library.evidence.evidence) - used):
        report.add(
            str(library.directory / "evidence.yaml"),
            f"evidence {key!r} is not cited by any rule",
            severity="info",
        )


def _active(library: RuleLibrary) -> list[tuple[CompiledRuleset, str, CompiledRule]]:
    return [
        (rs, rid, c) for rs in library.rulesets if rs.spec.status != "retired" for rid, c in rs.rules.items()
    ]


def conflicting_pairs(
    library: RuleLibrary,
) -> list[tuple[tuple[CompiledRuleset, str], tuple[CompiledRuleset, str], str, dict[str, Any] | None]]:
    """Pairs of rules whose findings conflict, with a verified joint witness when they overlap."""
    rules = _active(library)
    out = []
    for i, (rs_a, id_a, a) in enumerate(rules):
        for rs_b, id_b, b in rules[i + 1 :]:
            reason = conflict_reason(a, b, library.catalogue)
            if reason is None:
                continue
            try:
                witness = analysis.joint_witness(a.condition, b.condition)
            except analysis.TooComplex:
                witness = None
            if witness is not None:
                facts = analysis.facts_from(witness)
                if facts is None or not (
                    evaluate(a.condition, getter(facts)) and evaluate(b.condition, getter(facts))
                ):
                    witness = None
            out.append(((rs_a, id_a), (rs_b, id_b), reason, witness))
    return out


def _brief(witness: dict[str, Any]) -> str:
    shown = [f"{p}={v}" for p, v in sorted(witness.items()) if v is not None]
    return ", ".join(shown)


def check_overlaps(
    library: RuleLibrary, report: LintReport, cofired: dict[tuple[str, str], list[str]]
) -> None:
    """Warn on conflicting rules that can fire together; name sample patients where they did."""
    for (rs_a, id_a), (rs_b, id_b), reason, witness in conflicting_pairs(library):
        together = cofired.get(tuple(sorted((id_a, id_b))), [])  # type: ignore[arg-type]
        if witness is None and not together:
            continue
        msg = f"overlaps {id_b} ({rs_b.source.name}): {reason}"
        if witness is not None:
            msg += f"; both hold for e.g. {_brief(witness)}"
        if together:
            msg += f"; co-fired in {len(together)} sample patient(s): {', '.join(together[:5])}"
        report.add(
            str(rs_a.source), msg, severity="warning", rule=id_a, line=rule_lines(rs_a.source).get(id_a)
        )


def cohort_cofire(
    library: RuleLibrary, cohort: Path, report: LintReport
) -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """Run the sample cohort: which rule pairs co-fired (by patient) and which rules ever fired."""
    patients, rejected = load_cohort(cohort)
    for line in rejected:
        report.add(str(cohort), f"cohort patient not usable: {line}", severity="info")
    evaluator = Evaluator(library)
    pairs: dict[tuple[str, str], list[str]] = {}
    ever: set[str] = set()
    for patient in patients:
        try:
            result = run_patient(evaluator, patient)
        except InputRejected as exc:
            report.add(str(cohort), f"cohort patient not usable: {exc}", severity="info")
            continue
        fired = sorted({f.rule_id for f in evaluator.engine.fire(result.facts)})
        ever.update(fired)
        for i, a in enumerate(fired):
            for b in fired[i + 1 :]:
                pairs.setdefault((a, b), []).append(patient.name)
    report.checked.append(f"sample cohort {cohort}: {len(patients)} patients")
    return pairs, ever


def check_tests(library: RuleLibrary, report: LintReport) -> None:
    """Every rule exercised by an embedded case; every expected code produced by some rule."""
    from cds.authoring.testing import case_facts

    evaluator = Evaluator(library)
    for rs in library.rulesets:
        if rs.spec.status == "retired":
            continue
        file = str(rs.source)
        codes = {c.rule.then.code for c in rs.rules.values()}
        exercised: set[str] = set()
        for case in rs.spec.tests:
            for code in [*case.expect.fired, *case.expect.not_fired]:
                if code not in codes:
                    report.add(
                        file,
                        f"test {case.name!r} expects {code!r}, which no rule of {rs.name} produces",
                        field_="tests",
                    )
            facts = case_facts(rs, case, library, evaluator)
            if isinstance(facts, str):
                continue
            get = getter(facts)
            exercised.update(
                rid
                for rid, c in rs.rules.items()
                if evaluate(c.condition, get) and c.rule.then.code in case.expect.fired
            )
        lines = rule_lines(rs.source)
        for rid in sorted(set(rs.rules) - exercised):
            report.add(
                file,
                "no embedded test case fires this rule (add one under tests:)",
                severity="warning",
                rule=rid,
                line=lines.get(rid),
            )


def _content(data: Any) -> Any:
    return {k: v for k, v in data.items() if k not in CONTENT_EXCLUDED} if isinstance(data, dict) else data


def _semver(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return ()


def check_versions(directory: Path, report: LintReport, base: str = "HEAD") -> None:
    """Approved content changed without a version bump, versions going back, lifecycle jumps."""
    root = gitutil.repo_root(directory)
    if root is None:
        report.add(str(directory), "not in a git repository: version-bump check skipped", severity="info")
        return
    if not gitutil.is_commit(root, base):
        report.add(str(directory), f"git ref {base!r} not found: version-bump check skipped", severity="info")
        return
    report.checked.append(f"versions against git {base}")
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "evidence.yaml":
            continue
        old_text = gitutil.show(root, base, gitutil.relative(root, path))
        if old_text is None:
            continue
        try:
            old, new = yaml.safe_load(old_text), yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        file = str(path)
        changed = _content(old) != _content(new)
        ov, nv = str(old.get("version")), str(new.get("version"))
        os_, ns = str(old.get("status")), str(new.get("status"))
        if changed and ov == nv and "approved" in (os_, ns):
            report.add(
                file,
                f"content of {os_} ruleset changed since {base} but version is still {nv}: "
                "bump it (parameters/conditions: minor; wording: patch)",
                field_="version",
                line=_key_line(path, "version"),
            )
        if _semver(nv) < _semver(ov):
            report.add(
                file,
                f"version went back from {ov} to {nv}",
                field_="version",
                line=_key_line(path, "version"),
            )
        if ns not in TRANSITIONS.get(os_, {ns}):
            report.add(
                file,
                f"status jumped from {os_} to {ns}: go through in-review",
                severity="warning",
                field_="status",
                line=_key_line(path, "status"),
            )
        if ns == "approved" and changed and old.get("approved_on") == new.get("approved_on"):
            report.add(
                file,
                "approved content changed but approved_by/approved_on were not renewed",
                field_="approved_on",
                line=_key_line(path, "approved_on"),
            )


def _key_line(path: Path, key: str) -> int | None:
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith(f"{key}:"):
            return number
    return None


def lint(directory: Path, *, cohort: Path | None = None, base: str | None = "HEAD") -> LintReport:
    """Lint a rules directory; ``cohort`` adds the sample-patient check, ``base`` the git check."""
    report = LintReport()
    directory = Path(directory)
    try:
        library = load_library(directory, statuses=ALL_STATUSES)
    except RuleDefinitionError as exc:
        report.diagnostics.extend(exc.diagnostics)
        library = None
    except ConfigurationError as exc:
        report.add(str(directory), str(exc))
        library = None
    except ConditionError as exc:  # defensive: the loader reports these as diagnostics
        report.add(str(directory), str(exc))
        library = None
    if base:
        check_versions(directory, report, base)
    if library is None:
        return report
    report.checked.append(
        f"{len(library.rulesets)} rulesets, {sum(len(r.rules) for r in library.rulesets)} rules"
    )
    for rs in library.rulesets:
        if rs.spec.status in ("draft", "in-review"):
            report.add(
                str(rs.source),
                f"status {rs.spec.status}: not loaded by cds evaluate/serve/cohort "
                "until approved (use --include-drafts to try it)",
                severity="info",
                line=_key_line(rs.source, "status"),
            )
    check_rules(library, report)
    check_tests(library, report)
    cofired: dict[tuple[str, str], list[str]] = {}
    if cohort is not None and cohort.exists():
        cofired, ever = cohort_cofire(library, cohort, report)
        for rs, rid, _c in _active(library):
            if rid not in ever:
                report.add(
                    str(rs.source),
                    "no sample patient fires this rule",
                    severity="info",
                    rule=rid,
                    line=rule_lines(rs.source).get(rid),
                )
    check_overlaps(library, report, cofired)
    return report

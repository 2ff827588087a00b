"""``cds rules lint``: every problem a pharmacist can make in a rules directory, with file:line.

Errors block (exit non-zero): schema and reference errors (from the loader), malformed fact
implications or overlap acknowledgements, rules that can never fire, test expectations naming
codes no rule produces, approved content changed without a version bump. Warnings are listed for
review: conflicting overlaps (found statically with the fact implications of
``rules/facts/implications.yaml``, then checked on the sample cohort), rules no embedded test
exercises, missing evidence, unknown enumeration values, lifecycle jumps, stale acknowledgements.
An overlap a reviewer acknowledged in the rule file (``cds rules ack``), or that a policy resolves,
is counted in ``LintReport.acknowledged`` instead of warned about. The loader already checks paths,
operators, parameter and evidence keys; lint adds what needs the whole directory, the cohort or git.

``lint(..., progress=callback)`` reports ``callback(stage, done, total)`` as it goes (the sample
cohort and the overlap pairs are the long stages). Sample-patient facts and rule-file line maps are
cached for the process, keyed by file contents, so the workbench re-lints in about a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds import config
from cds.authoring import acks, analysis, gitutil
from cds.authoring.cohort import cached_cohort, cohort_facts
from cds.authoring.implications import load_implications
from cds.authoring.overlaps import AVOID_ACTIONS, Overlap, active_rules, conflict_reason, conflicting_pairs
from cds.engine.conditions import Compare, evaluate
from cds.engine.library import YAML_LOADER, RuleLibrary, load_library
from cds.engine.runtime import getter
from cds.errors import ConditionError, ConfigurationError, Diagnostic, RuleDefinitionError
from cds.evaluate import Evaluator
from cds.facts.model import PatientFacts, leaf_paths

__all__ = ["AVOID_ACTIONS", "Acknowledged", "LintReport", "conflict_reason", "lint", "rule_lines"]

ALL_STATUSES = acks.ALL_STATUSES
WORKING_STATUSES = config.WORKING_STATUSES
TRANSITIONS = {
    "draft": {"draft", "in-review", "retired"},
    "in-review": {"in-review", "draft", "approved", "retired"},
    "approved": {"approved", "draft", "in-review", "retired"},
    "retired": {"retired", "draft"},
}
AGENT_VALUED = {"order.agent", "order.product", "order.matches_other_agent"}  # catalogue ids
PLACEHOLDER = re.compile(r"\{(\$?[a-z_][a-z0-9_.]*)\}")
# review metadata, not clinical content: changing these needs no version bump
CONTENT_EXCLUDED = {"tests", "status", "approved_by", "approved_on", acks.SECTION}
_LOADER = YAML_LOADER
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Acknowledged:
    """An overlap lint found but does not warn about, and why: an acknowledgement in the rule
    file (``by="acknowledgement"``) or a policy that resolves it (``by="policy"``)."""

    diagnostic: Diagnostic
    by: str
    note: str


@dataclass
class LintReport:
    """Diagnostics of one lint run (errors, warnings, notes), what was checked, and the overlaps
    that were reviewed (acknowledged or resolved by a policy) rather than warned about."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    acknowledged: list[Acknowledged] = field(default_factory=list)

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

    def reviewed(self, by: str) -> list[Acknowledged]:
        """Overlaps not warned about, by ``acknowledgement`` or ``policy``, in file/line order."""
        return sorted(
            (a for a in self.acknowledged if a.by == by),
            key=lambda a: (a.diagnostic.file, a.diagnostic.line or 0, a.diagnostic.message),
        )

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.of("error")


@dataclass(frozen=True)
class FileLines:
    """Where things are in one rule file (1-based lines)."""

    rules: dict[str, int]
    acks: list[int]


_LINES: dict[Path, tuple[tuple[int, int], FileLines]] = {}


def file_lines(path: Path) -> FileLines:
    """Line of every rule id and acknowledgement of a rule file (cached until the file changes)."""
    try:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        key = path.resolve()
        hit = _LINES.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return FileLines({}, [])
    rules: dict[str, int] = {}
    ack_lines: list[int] = []
    if isinstance(node, yaml.MappingNode):
        for k, value in node.value:
            name = getattr(k, "value", None)
            if not isinstance(value, yaml.SequenceNode):
                continue
            if name == "rules":
                for item in value.value:
                    if isinstance(item, yaml.MappingNode):
                        for ik, iv in item.value:
                            if getattr(ik, "value", None) == "id":
                                rules[str(iv.value)] = iv.start_mark.line + 1
            elif name == acks.SECTION:
                ack_lines = [item.start_mark.line + 1 for item in value.value]
    result = FileLines(rules, ack_lines)
    _LINES[key] = (stamp, result)
    return result


def rule_lines(path: Path) -> dict[str, int]:
    """1-based line of every rule's ``id`` in a rule file (for file:line diagnostics)."""
    return file_lines(path).rules


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


def check_rules(
    library: RuleLibrary, report: LintReport, implications: Sequence[analysis.Implication] = ()
) -> None:
    """Per-rule checks: can fire, placeholders, enumeration values, evidence, applies_to."""
    paths = leaf_paths(agents=library.catalogue.agent_ids())
    descriptions = _descriptions()
    for rs in library.rulesets:
        if rs.spec.status == "retired":
            continue
        lines = file_lines(rs.source).rules
        file = str(rs.source)
        for rid, compiled in rs.rules.items():
            line = lines.get(rid)
            try:
                never = analysis.why_never(compiled.condition, implications)
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


def _brief(witness: dict[str, Any]) -> str:
    shown = [f"{p}={v}" for p, v in sorted(witness.items()) if v is not None]
    return ", ".join(shown)


def check_acks(library: RuleLibrary, report: LintReport) -> dict[frozenset[str], acks.Ack]:
    """Every acknowledgement names a rule that exists; returns them by rule pair."""
    known = {rid for rs in library.rulesets for rid in rs.rules}
    found = acks.index(library)
    for rs in library.rulesets:
        for i, entry in enumerate(rs.spec.acknowledged_overlaps):
            first = found.get(frozenset((entry.rule, entry.other)))
            if rs.spec.status != "retired" and first is not None and first.ruleset is not rs:
                duplicate = acks.Ack(rs, i, entry)
                report.add(
                    str(rs.source),
                    f"{entry.rule} / {entry.other} is also acknowledged in {first.ruleset.source.name}: "
                    "keep one entry",
                    rule=entry.rule,
                    field_=f"{acks.SECTION}[{i}]",
                    line=_ack_line(duplicate),
                )
    for ack in found.values():
        if ack.entry.other not in known:
            report.add(
                str(ack.ruleset.source),
                f"acknowledges an overlap with {ack.entry.other!r}, which no rule file defines "
                "(remove the entry, or fix the rule id)",
                rule=ack.entry.rule,
                field_=f"{acks.SECTION}[{ack.index}].other",
                line=_ack_line(ack),
            )
    return found


def _ack_line(ack: acks.Ack) -> int | None:
    lines = file_lines(ack.ruleset.source).acks
    return lines[ack.index] if ack.index < len(lines) else None


def _fingerprint(library: RuleLibrary, overlap: Overlap) -> str:
    return acks.fingerprint(
        overlap.rule_a,
        overlap.ruleset_a.rules[overlap.rule_a],
        overlap.rule_b,
        overlap.ruleset_b.rules[overlap.rule_b],
    )


def check_overlaps(
    library: RuleLibrary,
    report: LintReport,
    cofired: dict[tuple[str, str], list[str]],
    implications: Sequence[analysis.Implication] = (),
    progress: Progress | None = None,
) -> None:
    """Warn on conflicting rules that can fire together (a verified joint witness, or sample
    patients where they did), unless a policy resolves the pair or a current acknowledgement in
    the rule files covers it; stale and unneeded acknowledgements are reported too."""
    found = check_acks(library, report)
    used: set[frozenset[str]] = set()
    for overlap in conflicting_pairs(library, implications, progress):
        id_a, id_b = overlap.rule_a, overlap.rule_b
        together = cofired.get((id_a, id_b) if id_a < id_b else (id_b, id_a), [])
        if overlap.witness is None and not together:
            continue
        msg = f"overlaps {id_b} ({overlap.ruleset_b.source.name}): {overlap.reason}"
        if overlap.witness is not None:
            msg += f"; both hold for e.g. {_brief(overlap.witness)}"
        if together:
            msg += f"; co-fired in {len(together)} sample patient(s): {', '.join(together[:5])}"
        file, line = str(overlap.ruleset_a.source), file_lines(overlap.ruleset_a.source).rules.get(id_a)
        diag = Diagnostic(file, msg, rule=id_a, line=line, severity="warning")
        if overlap.resolved_by:
            report.acknowledged.append(Acknowledged(diag, "policy", overlap.resolved_by))
            continue
        ack = found.get(overlap.pair)
        if ack is None:
            report.diagnostics.append(diag)
            continue
        used.add(overlap.pair)
        if ack.entry.fingerprint == _fingerprint(library, overlap):
            report.acknowledged.append(Acknowledged(diag, "acknowledgement", ack.describe()))
            continue
        report.add(
            file,
            f"{msg}; acknowledgement is stale: {id_a} or {id_b} changed since "
            f"{ack.entry.reviewer} reviewed it on {ack.entry.date.isoformat()} "
            f"({ack.ruleset.source.name} line {_ack_line(ack)}): review both rules again, then "
            f"`cds rules ack {ack.entry.rule} {ack.entry.other} --reviewer ... --reason ...`",
            severity="warning",
            rule=id_a,
            line=line,
        )
    for pair, ack in sorted(found.items(), key=lambda kv: sorted(kv[0])):
        if pair in used or ack.entry.other not in {r for rs in library.rulesets for r in rs.rules}:
            continue
        report.add(
            str(ack.ruleset.source),
            f"acknowledged overlap with {ack.entry.other} is not reported any more (the rules no "
            "longer conflict, cannot fire together, or a policy resolves them): remove the entry",
            severity="info",
            rule=ack.entry.rule,
            line=_ack_line(ack),
        )


def cohort_cofire(
    library: RuleLibrary,
    cohort: Path,
    report: LintReport,
    evaluator: Evaluator | None = None,
    progress: Progress | None = None,
) -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """Run the sample cohort: which rule pairs co-fired (by patient) and which rules ever fired."""
    patients, rejected = cached_cohort(cohort)
    for line in rejected:
        report.add(str(cohort), f"cohort patient not usable: {line}", severity="info")
    evaluator = evaluator or Evaluator(library)
    pairs: dict[tuple[str, str], list[str]] = {}
    ever: set[str] = set()
    for patient, facts in cohort_facts(library, patients, progress):
        if not isinstance(facts, PatientFacts):
            report.add(str(cohort), f"cohort patient not usable: {facts}", severity="info")
            continue
        fired = sorted({f.rule_id for f in evaluator.engine.fire(facts)})
        ever.update(fired)
        for i, a in enumerate(fired):
            for b in fired[i + 1 :]:
                pairs.setdefault((a, b), []).append(patient.name)
    report.checked.append(f"sample cohort {cohort}: {len(patients)} patients")
    return pairs, ever


def check_tests(library: RuleLibrary, report: LintReport, evaluator: Evaluator | None = None) -> None:
    """Every rule exercised by an embedded case; every expected code produced by some rule."""
    from cds.authoring.testing import case_facts

    evaluator = evaluator or Evaluator(library)
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
        lines = file_lines(rs.source).rules
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
    changed_params: dict[str, tuple[str, Any, Any]] = {}  # name -> (declaring file, old, new)
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "evidence.yaml":
            continue
        old_text = gitutil.show(root, base, gitutil.relative(root, path))
        if old_text is None:
            continue
        try:
            old = yaml.load(old_text, Loader=_LOADER)
            new = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
        except (yaml.YAMLError, ValueError):  # reported by the loader
            continue
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        file = str(path)
        for name, spec in (new.get("parameters") or {}).items():
            before = ((old.get("parameters") or {}).get(name) or {}).get("value")
            after = (spec or {}).get("value") if isinstance(spec, dict) else None
            if name in (old.get("parameters") or {}) and before != after:
                changed_params[str(name)] = (path.name, before, after)
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
    _shared_parameter_changes(directory, changed_params, report, base)


def _shared_parameter_changes(
    directory: Path, changed: dict[str, tuple[str, Any, Any]], report: LintReport, base: str
) -> None:
    """A parameter changed in one file changes every other ruleset that uses it: say which, so the
    reviewer of that ruleset sees its behaviour changed though its own file did not."""
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        for name, (owner, before, after) in sorted(changed.items()):
            if owner == path.name or not re.search(rf"\${re.escape(name)}\b", text):
                continue
            report.add(
                str(path),
                f"uses ${name} from {owner}, which changed since {base} ({before} -> {after}): this "
                "ruleset's behaviour changes too; review its tests and impact with the change",
                severity="warning",
                field_="parameters",
                line=next((n for n, t in enumerate(text.splitlines(), start=1) if f"${name}" in t), None),
            )


def _key_line(path: Path, key: str) -> int | None:
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith(f"{key}:"):
            return number
    return None


def lint(
    directory: Path,
    *,
    cohort: Path | None = None,
    base: str | None = "HEAD",
    progress: Progress | None = None,
) -> LintReport:
    """Lint a rules directory; ``cohort`` adds the sample-patient check, ``base`` the git check,
    ``progress(stage, done, total)`` is called as the stages advance."""

    def step(stage: str, done: int = 0, total: int = 1) -> None:
        if progress is not None:
            progress(stage, done, total)

    report = LintReport()
    directory = Path(directory)
    step("loading rules")
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
    implications, problems = load_implications(directory)
    report.diagnostics.extend(problems)
    if base:
        step("checking versions")
        check_versions(directory, report, base)
    if library is None:
        step("done", 1, 1)
        return report
    report.checked.append(
        f"{len(library.rulesets)} rulesets, {sum(len(r.rules) for r in library.rulesets)} rules"
    )
    if implications:
        report.checked.append(f"{len(implications)} fact implications")
    for rs in library.rulesets:
        if rs.spec.status in ("draft", "in-review"):
            report.add(
                str(rs.source),
                f"status {rs.spec.status}: not loaded by cds evaluate/serve/cohort "
                "until approved (use --include-drafts to try it)",
                severity="info",
                line=_key_line(rs.source, "status"),
            )
    step("checking rules")
    check_rules(library, report, implications)
    evaluator = Evaluator(library)
    step("running embedded tests")
    check_tests(library, report, evaluator)
    cofired: dict[tuple[str, str], list[str]] = {}
    if cohort is not None and cohort.exists():
        cofired, ever = cohort_cofire(library, cohort, report, evaluator, progress)
        for rs, rid, _c in active_rules(library):
            if rid not in ever:
                report.add(
                    str(rs.source),
                    "no sample patient fires this rule",
                    severity="info",
                    rule=rid,
                    line=file_lines(rs.source).rules.get(rid),
                )
    check_overlaps(library, report, cofired, implications, progress)
    step("done", 1, 1)
    return report

"""Load, validate and compile a rules directory into a ``RuleLibrary``.

A rules directory holds ruleset files (``*.yaml``), ``evidence.yaml`` (the evidence registry),
``valuesets/`` and the drug catalogue ``catalogue/`` (agents, products, regimens). Loading checks
everything a pharmacist can get wrong and reports each problem
with file, line, rule and field: schema errors, unknown fact paths, operators or parameters,
type mismatches, unknown evidence keys, parameters declared twice, missing derivation
parameters. Parameters share one namespace across the directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cds.engine.conditions import Condition, parse_condition, paths_of, to_durable
from cds.engine.schema import EvidenceRegistry, Policy, Rule, RuleFile
from cds.errors import ConditionError, ConfigurationError, Diagnostic, RuleDefinitionError
from cds.facts.model import leaf_paths
from cds.facts.params import DERIVATION_PARAMETERS, Params
from cds.fhir.valuesets import ValueSets, load_valuesets
from cds.knowledge.catalogue import CLASSES, Catalogue, load_catalogue

DEFAULT_STATUSES = frozenset({"approved"})
MAX_RULES_PER_RULESET = 50  # durable_rules fails around 480 rules per ruleset (issue #312)
MAX_FACT_PATHS = 200  # durable_rules rejects facts with more than ~250 properties (error 302)
# libyaml's safe loader when installed: the same YAML 1.1 safe schema, ten times faster to load
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class CompiledRule:
    """A validated rule with its parsed condition and review conditions."""

    rule: Rule
    condition: Condition
    review: tuple[tuple[Condition, str], ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class CompiledRuleset:
    """One ruleset file, validated and compiled to a durable_rules definition."""

    spec: RuleFile
    source: Path
    rules: dict[str, CompiledRule]
    durable_name: str
    durable: dict[str, Any]
    paths: tuple[str, ...]

    @property
    def name(self) -> str:
        """The ruleset name."""
        return self.spec.ruleset

    @property
    def version(self) -> str:
        """The ruleset semver."""
        return self.spec.version


@dataclass
class RuleLibrary:
    """Everything an evaluation needs besides the patient: rules, parameters, evidence, value sets."""

    directory: Path
    rulesets: list[CompiledRuleset]
    parameters: dict[str, Any]
    evidence: EvidenceRegistry
    valuesets: ValueSets
    policies: list[Policy] = field(default_factory=list)
    excluded: list[tuple[str, str, str]] = field(default_factory=list)  # (name, version, status) not loaded

    @property
    def catalogue(self) -> Catalogue:
        """The drug and regimen catalogue loaded from this rules directory."""
        return self.valuesets.catalogue

    @property
    def params(self) -> Params:
        """Typed parameter access for the facts layer."""
        return Params(self.parameters)

    def rule(self, rule_id: str) -> tuple[CompiledRuleset, CompiledRule]:
        """Find a rule by id across the loaded rulesets."""
        for ruleset in self.rulesets:
            if rule_id in ruleset.rules:
                return ruleset, ruleset.rules[rule_id]
        raise KeyError(rule_id)


def line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """The 1-based YAML line of a pydantic error location, walking the composed node tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        else:
            child = None
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def bad_date_line(text: str) -> int | None:
    """The line of the first YYYY-MM-DD scalar that is not a real date (YAML reads it as a date)."""
    constructor = yaml.SafeLoader("")
    stack = [yaml.compose(text)]
    bad: list[int] = []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:timestamp":
            try:
                constructor.construct_yaml_timestamp(node)
            except ValueError:
                bad.append(node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(v for pair in node.value for v in pair)
    return min(bad, default=None)


def _rule_id_at(raw: Any, loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        try:
            rid = raw["rules"][loc[1]].get("id")
            return str(rid) if rid is not None else f"rules[{loc[1]}]"
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
    return None


def read_rule_file(path: Path) -> tuple[RuleFile | None, list[Diagnostic], Any, yaml.Node | None]:
    """Parse and schema-validate one file; diagnostics name file, line, rule and field."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Diagnostic(name, f"cannot read: {exc.strerror}")], None, None
    try:
        raw = yaml.load(text, Loader=YAML_LOADER)
        node = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return (
            None,
            [Diagnostic(name, f"not valid YAML: {exc}", line=mark.line + 1 if mark else None)],
            None,
            None,
        )
    except ValueError as exc:  # a date that does not exist (2026-13-45) fails while being built
        return None, [Diagnostic(name, f"not a valid date: {exc}", line=bad_date_line(text))], None, None
    if not isinstance(raw, dict):
        return None, [Diagnostic(name, "a rule file must be a YAML mapping")], raw, node
    try:
        return RuleFile.model_validate(raw), [], raw, node
    except ValidationError as exc:
        diags = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            diags.append(
                Diagnostic(
                    name,
                    str(err.get("msg", "invalid")),
                    rule=_rule_id_at(raw, loc),
                    field=".".join(str(p) for p in loc) or None,
                    line=line_of(node, loc),
                )
            )
        return None, diags, raw, node


def _compile(
    spec: RuleFile,
    path: Path,
    params: dict[str, Any],
    evidence: EvidenceRegistry,
    raw: Any,
    node: yaml.Node | None,
    diags: list[Diagnostic],
    catalogue: Catalogue,
) -> CompiledRuleset | None:
    fact_types = leaf_paths(agents=catalogue.agent_ids())
    rules: dict[str, CompiledRule] = {}
    name = str(path)
    for index, rule in enumerate(spec.rules):
        try:
            condition = parse_condition(rule.when, params, fact_types)
            review = tuple(
                (parse_condition(r.when, params, fact_types, f"then.review_if[{i}].when"), r.note)
                for i, r in enumerate(rule.then.review_if)
            )
        except ConditionError as exc:
            loc = ("rules", index, *exc.field.replace("[", ".").replace("]", "").split("."))
            line = line_of(node, [int(p) if isinstance(p, str) and p.isdigit() else p for p in loc])
            diags.append(Diagnostic(name, str(exc), rule=rule.id, field=exc.field, line=line))
            continue
        for key in rule.then.evidence:
            if key not in evidence.evidence:
                diags.append(
                    Diagnostic(
                        name,
                        f"unknown evidence key {key!r} (add it to evidence.yaml)",
                        rule=rule.id,
                        field="then.evidence",
                        line=line_of(node, ("rules", index, "then", "evidence")),
                    )
                )
        if rule.then.regimen is not None and rule.then.regimen not in catalogue.regimens:
            diags.append(
                Diagnostic(
                    name,
                    f"unknown regimen {rule.then.regimen!r} (add it to catalogue/regimens.yaml)",
                    rule=rule.id,
                    field="then.regimen",
                    line=line_of(node, ("rules", index, "then", "regimen")),
                )
            )
        applies = rule.then.applies_to
        if applies is not None and applies not in catalogue.agents and applies not in CLASSES:
            diags.append(
                Diagnostic(
                    name,
                    f"applies_to {applies!r} is neither a catalogue agent nor a drug class",
                    rule=rule.id,
                    field="then.applies_to",
                    line=line_of(node, ("rules", index, "then", "applies_to")),
                )
            )
        if not rule.then.evidence and rule.then.kind in ("recommendation", "alert"):
            diags.append(
                Diagnostic(
                    name,
                    "recommendations and alerts must cite evidence",
                    rule=rule.id,
                    field="then.evidence",
                    line=line_of(node, ("rules", index, "then")),
                )
            )
        rules[rule.id] = CompiledRule(rule, condition, review, tuple(paths_of(condition)))
    if len(spec.rules) > MAX_RULES_PER_RULESET:
        diags.append(
            Diagnostic(name, f"{len(spec.rules)} rules; split the ruleset (max {MAX_RULES_PER_RULESET})")
        )
    all_paths: list[str] = []
    for compiled in rules.values():
        for p in compiled.paths:
            if p not in all_paths:
                all_paths.append(p)
    if len(all_paths) > MAX_FACT_PATHS:
        diags.append(
            Diagnostic(
                name, f"reads {len(all_paths)} fact paths; durable_rules allows about {MAX_FACT_PATHS}"
            )
        )
    durable_name = f"{spec.ruleset}@{spec.version}"
    definition = {
        rid: {"all": [{"m": to_durable(c.condition)}], "run": rid, "pri": 100} for rid, c in rules.items()
    }
    return CompiledRuleset(spec, path, rules, durable_name, definition, tuple(all_paths))


def load_library(
    directory: Path,
    *,
    statuses: Iterable[str] = DEFAULT_STATUSES,
    parameter_overrides: dict[str, Any] | None = None,
) -> RuleLibrary:
    """Load every ruleset in ``directory`` whose status is in ``statuses`` (approved by default).

    Raises RuleDefinitionError listing every problem, or ConfigurationError for a missing
    directory, evidence registry or value set, or a knowledge file (catalogue, value sets) whose
    review status is not among ``statuses``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigurationError(f"rules directory {directory} does not exist")
    wanted = set(statuses)
    files = sorted(p for p in directory.glob("*.yaml") if p.name != "evidence.yaml")
    if not files:
        raise ConfigurationError(f"no rule files (*.yaml) in {directory}")
    diags: list[Diagnostic] = []
    evidence_path = directory / "evidence.yaml"
    try:
        evidence = EvidenceRegistry.model_validate(
            yaml.load(evidence_path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
        )
    except OSError as exc:
        raise ConfigurationError(f"cannot read evidence registry {evidence_path}: {exc.strerror}") from exc
    except (ValidationError, yaml.YAMLError) as exc:
        raise RuleDefinitionError(
            [Diagnostic(str(evidence_path), f"invalid evidence registry: {exc}")]
        ) from exc
    catalogue = load_catalogue(directory / "catalogue")
    valuesets = load_valuesets(directory / "valuesets", catalogue)
    unreviewed = sorted(f"{name} is {s}" for name, s in valuesets.statuses.items() if s not in wanted)
    if unreviewed:
        # knowledge cannot be left out like a draft ruleset: every rule reads it, so refuse to run
        raise ConfigurationError(
            f"knowledge not approved in {directory}: {'; '.join(unreviewed)}. Approve it (workbench Review "
            "page or cds rules promote FILE --to approved --by NAME), or load drafts (--include-drafts)"
        )

    parsed: list[tuple[RuleFile, Path, Any, yaml.Node | None]] = []
    for path in files:
        spec, file_diags, raw, node = read_rule_file(path)
        diags.extend(file_diags)
        if spec is not None:
            parsed.append((spec, path, raw, node))
    # one parameter namespace for the whole directory (retired files do not declare anything)
    params: dict[str, Any] = {}
    declared_in: dict[str, str] = {}
    for spec, path, _raw, _node in parsed:
        if spec.status == "retired":
            continue
        for pname, param in spec.parameters.items():
            if pname in declared_in:
                diags.append(
                    Diagnostic(
                        str(path),
                        f"parameter {pname!r} is already declared in {declared_in[pname]}",
                        field=f"parameters.{pname}",
                    )
                )
                continue
            declared_in[pname] = path.name
            params[pname] = param.value
    for pname, value in (parameter_overrides or {}).items():
        if pname not in params:
            diags.append(Diagnostic("<overrides>", f"unknown parameter {pname!r}"))
        params[pname] = value
    missing = [p for p in DERIVATION_PARAMETERS if p not in params]
    if missing:
        diags.append(
            Diagnostic(str(directory), f"fact derivations need parameters not declared: {', '.join(missing)}")
        )

    compiled: list[CompiledRuleset] = []
    excluded: list[tuple[str, str, str]] = []
    names: dict[str, str] = {}
    policies: list[Policy] = []
    for spec, path, raw, node in parsed:
        if spec.ruleset in names:
            diags.append(
                Diagnostic(str(path), f"ruleset {spec.ruleset!r} is also defined in {names[spec.ruleset]}")
            )
            continue
        names[spec.ruleset] = path.name
        result = _compile(spec, path, params, evidence, raw, node, diags, catalogue)
        if result is None:
            continue
        fact_types = leaf_paths()
        for policy in spec.policies:
            if policy.if_fact is not None and fact_types.get(policy.if_fact) is not bool:
                diags.append(
                    Diagnostic(
                        str(path), f"policy {policy.id}: if_fact {policy.if_fact!r} is not a yes/no fact"
                    )
                )
        if spec.status in wanted:
            compiled.append(result)
            policies.extend(spec.policies)
        else:
            excluded.append((spec.ruleset, spec.version, spec.status))
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise RuleDefinitionError(errors)
    compiled.sort(key=lambda r: r.name)
    return RuleLibrary(directory, compiled, params, evidence, valuesets, policies, excluded)

"""Fact implications as data (``rules/facts/implications.yaml``), for the static overlap analysis.

The fact model keeps every path independent, but the derivations do not: ``ild_since_start.tdxd``
is only ever set from an ILD condition that also sets ``ild_history``. Without that knowledge lint
reports "preferred T-DXd (no ILD history) overlaps discontinue T-DXd (ILD since start)", which no
patient can trigger. Each implication states one such guarantee with its reason and source; the
file is reviewed like a rule file, and a wrong entry can only hide an overlap that the sample
cohort would still show (lint warns on pairs that co-fire on a sample patient regardless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds.authoring.analysis import AGENT, Implication
from cds.engine.conditions import Compare, parse_condition
from cds.engine.library import line_of
from cds.engine.schema import RULE_ID, SEMVER
from cds.errors import ConditionError, Diagnostic
from cds.facts.model import leaf_paths

FILE = Path("facts") / "implications.yaml"


class ImplicationEntry(BaseModel):
    """One guarantee of the fact derivations: when ``if`` holds, ``then`` holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    if_: dict[str, Any] = Field(alias="if", description="one fact comparison, e.g. {conditions.nrh: true}")
    then: dict[str, Any] = Field(description="the comparison the derivations guarantee then")
    reason: str = Field(min_length=10, description="why the derivation guarantees it")
    source: str = Field(min_length=3, description="where the derivation is (code or document)")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError("ids are lower-case letters, digits, dots and dashes")
        return value


class ImplicationFile(BaseModel):
    """``rules/facts/implications.yaml``."""

    model_config = ConfigDict(extra="forbid")

    version: str
    description: str = ""
    implications: list[ImplicationEntry] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError("version must be semver MAJOR.MINOR.PATCH")
        return value


def _single(raw: dict[str, Any], types: dict[str, Any], where: str) -> Compare:
    cond = parse_condition(raw, {}, types, where)
    if not isinstance(cond, Compare):
        raise ConditionError("one fact comparison (no all/any)", where)
    return cond


def load_implications(rules_dir: Path) -> tuple[list[Implication], list[Diagnostic]]:
    """The implications of a rules directory (none when it has no file), with any problems."""
    path = Path(rules_dir) / FILE
    if not path.exists():
        return [], []
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
        node = yaml.compose(text)
    except (OSError, yaml.YAMLError, ValueError) as exc:
        return [], [Diagnostic(name, f"cannot read fact implications: {exc}")]
    try:
        spec = ImplicationFile.model_validate(raw)
    except ValidationError as exc:
        return [], [
            Diagnostic(
                name,
                str(err.get("msg", "invalid")),
                field=".".join(str(p) for p in err.get("loc", ())) or None,
                line=line_of(node, tuple(err.get("loc", ()))),
            )
            for err in exc.errors()
        ]
    types = leaf_paths(agents=(AGENT,))
    out: list[Implication] = []
    diags: list[Diagnostic] = []
    seen: set[str] = set()
    for index, entry in enumerate(spec.implications):
        line = line_of(node, ("implications", index))
        if entry.id in seen:
            diags.append(Diagnostic(name, f"implication {entry.id!r} is declared twice", line=line))
            continue
        seen.add(entry.id)
        try:
            premise = _single(entry.if_, types, "if")
            conclusion = _single(entry.then, types, "then")
        except ConditionError as exc:
            diags.append(Diagnostic(name, f"implication {entry.id}: {exc}", field=exc.field, line=line))
            continue
        out.append(Implication(entry.id, premise, conclusion))
    return out, diags

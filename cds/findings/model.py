"""The output contract (clinical-spec §3): findings, their basis, and the evaluation result.

Cards, cohort rows and the CLI table are all rendered from these models, so every surface shows
the same rule id/version, basis facts with resource ids, and evidence.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KIND_ORDER = {"recommendation": 0, "alert": 1, "data-gap": 2, "info": 3}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Evidence(_Out):
    """A citable source behind a finding."""

    label: str
    citation: str
    url: str


class RuleRef(_Out):
    """Which rule produced a finding, in which ruleset version."""

    id: str
    version: str
    ruleset: str
    evidence_status: Literal["verified", "unverified"]


class Basis(_Out):
    """One fact a finding rests on, its value, and the FHIR resources it came from."""

    fact: str
    value: Any
    resources: list[str]


class Finding(_Out):
    """A recommendation, safety alert, data gap or information, with reason and basis."""

    code: str
    kind: Literal["recommendation", "alert", "data-gap", "info"]
    severity: Literal["critical", "warning", "info"]
    strength: Literal["preferred", "alternative", "consider"] | None = None
    regimen: str | None = None
    action: str | None = None
    summary: str
    detail: str
    review_required: bool = False
    rule: RuleRef
    evidence: list[Evidence] = Field(default_factory=list)
    basis: list[Basis] = Field(default_factory=list)

    def sort_key(self) -> tuple[int, int, str, str]:
        """Severity, then kind, then code (clinical-spec §3), then rule id for ties."""
        return (SEVERITY_ORDER[self.severity], KIND_ORDER[self.kind], self.code, self.rule.id)


class RulesetRef(_Out):
    """A ruleset that took part in the evaluation."""

    name: str
    version: str


class SkippedResource(_Out):
    """A resource that was not used, and why."""

    resource: str
    reason: str


class Suppressed(_Out):
    """A finding a policy removed (kept in the trace, never shown as a finding)."""

    code: str
    rule: str
    by_policy: str
    because_of: str


class Evaluation(_Out):
    """The result of evaluating one patient: the JSON of ``cds evaluate --format json``."""

    patient: str
    as_of: str
    rulesets: list[RulesetRef]
    findings: list[Finding]
    skipped: list[SkippedResource] = Field(default_factory=list)

    def to_json(self) -> bytes:
        """Deterministic JSON (field order fixed by the model, 2-space indent)."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2)

    def codes(self) -> list[str]:
        """Finding codes in output order."""
        return [f.code for f in self.findings]

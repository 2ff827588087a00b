"""The pharmacist-facing rule file format, validated with pydantic (docs/rules.md explains it).

A rule file is one ruleset: metadata (name, semver, status, owner, approval), named parameters,
rules (``when`` conditions over fact paths, ``then`` producing one finding of clinical-spec §3),
policies (suppression written as data) and embedded test cases with expected finding codes.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
Status = Literal["draft", "in-review", "approved", "retired"]
Kind = Literal["recommendation", "alert", "data-gap", "info"]
Severity = Literal["critical", "warning", "info"]
Strength = Literal["preferred", "alternative", "consider"]
Action = Literal["continue", "repeat", "hold", "hold-reduce", "discontinue", "review"]
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "between", "exists", "missing")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Parameter(_Strict):
    """A named, documented, tunable value (clinical-spec §8)."""

    value: float | int | bool | str | list[float | int]
    unit: str | None = None
    description: str = ""
    source: str | None = None


class ReviewIf(_Strict):
    """Mark a finding ``review_required`` with a note when an extra condition holds."""

    when: dict[str, Any]
    note: str


class Then(_Strict):
    """The finding a rule produces."""

    code: str
    kind: Kind
    severity: Severity | None = None  # derived from action/kind when absent (clinical-spec §3)
    strength: Strength | None = None
    regimen: str | None = Field(None, description="a regimen id of catalogue/regimens.yaml")
    action: Action | None = None
    summary: str
    detail: str
    evidence: list[str] = Field(default_factory=list)
    review_if: list[ReviewIf] = Field(default_factory=list)
    applies_to: str | None = Field(
        None, description="catalogue agent or drug class this alert is about (prefixes order alerts)"
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> Then:
        if self.kind == "recommendation" and self.strength is None:
            raise ValueError("a recommendation needs a strength (preferred, alternative, consider)")
        if self.kind == "alert" and self.action is None:
            raise ValueError(
                "an alert needs an action (continue, repeat, hold, hold-reduce, discontinue, review)"
            )
        return self

    def resolved_severity(self) -> Severity:
        """Severity per clinical-spec §3 unless the rule states one."""
        if self.severity is not None:
            return self.severity
        if self.kind == "alert":
            if self.action in ("discontinue", "hold", "hold-reduce"):
                return "critical"
            if self.action in ("repeat", "review"):
                return "warning"
            return "info"
        if self.kind == "data-gap":
            return "warning"
        return "info"


class Rule(_Strict):
    """One rule: when all its conditions hold for the patient's facts, it produces its finding."""

    id: str
    title: str
    description: str
    when: dict[str, Any]
    then: Then
    evidence_status: Literal["verified", "unverified"] = "verified"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value) or "$" in value:
            raise ValueError("rule ids are lower-case letters, digits, dots and dashes (no '$')")
        return value


class Policy(_Strict):
    """Policies written as data: when a finding is present (or a fact holds), drop other findings or
    mark them ``review_required`` with a note (clinical-spec §4; v2 free text and other primaries)."""

    id: str
    description: str
    if_code: str | None = None
    if_code_prefix: str | None = None
    if_fact: str | None = Field(None, description="a yes/no fact path; the policy applies when it is true")
    suppress_codes: list[str] = Field(default_factory=list)
    suppress_kinds: list[Kind] = Field(default_factory=list)
    suppress_all_others: bool = False
    keep_codes: list[str] = Field(default_factory=list, description="never suppressed by this policy")
    review_kinds: list[Kind] = Field(default_factory=list)
    review_codes: list[str] = Field(default_factory=list, description='codes, or prefixes ending in "*"')
    review_note: str | None = None

    @model_validator(mode="after")
    def _trigger(self) -> Policy:
        if sum(x is not None for x in (self.if_code, self.if_code_prefix, self.if_fact)) != 1:
            raise ValueError("a policy needs exactly one of if_code, if_code_prefix or if_fact")
        marks = bool(self.review_kinds or self.review_codes)
        if not (self.suppress_codes or self.suppress_kinds or self.suppress_all_others or marks):
            raise ValueError("a policy must suppress something or mark something for review")
        if marks and not self.review_note:
            raise ValueError("a review policy needs a review_note saying why")
        return self

    def marks(self, code: str, kind: str) -> bool:
        """Whether this policy marks a finding of this code and kind for review."""
        return kind in self.review_kinds or any(
            code.startswith(c[:-1]) if c.endswith("*") else code == c for c in self.review_codes
        )


class Expect(_Strict):
    """Expected outcome of a test case: finding codes fired (as a set) and codes that must not fire."""

    fired: list[str] = Field(default_factory=list)
    not_fired: list[str] = Field(default_factory=list)
    exact: bool = Field(True, description="fired must equal the set of codes this ruleset produced")


class TestCase(_Strict):
    """An embedded test: a partial facts snapshot (defaults fill the rest) or a bundle path."""

    name: str
    facts: dict[str, Any] | None = None
    bundle: str | None = None
    order: str | None = None
    as_of: str | None = None
    expect: Expect

    @model_validator(mode="after")
    def _input(self) -> TestCase:
        if (self.facts is None) == (self.bundle is None):
            raise ValueError("a test case needs exactly one of facts or bundle")
        return self


class OverlapAck(_Strict):
    """A reviewer's record that an overlap ``cds rules lint`` reports is intended.

    It silences exactly the warning for ``rule`` (a rule of this file) and ``other`` while the
    ``fingerprint`` of both rules' conditions and outcomes still matches; once either rule
    changes, lint reports the acknowledgement as stale and the warning returns. ``cds rules ack``
    writes these entries (and the fingerprint), so nobody edits them by hand. Review metadata,
    not clinical content: adding one needs no version bump.
    """

    rule: str = Field(description="a rule of this file")
    other: str = Field(description="the rule it overlaps with (any rule file)")
    reviewer: str = Field(min_length=3)
    date: date
    reason: str = Field(min_length=20, description="why both findings may show for the same patient")
    fingerprint: str = Field(description="written by cds rules ack: both rules as reviewed")

    @field_validator("rule", "other")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError("a rule id: lower-case letters, digits, dots and dashes")
        return value

    @field_validator("reviewer", "reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        if not FINGERPRINT.match(value):
            raise ValueError("fingerprint is 16 hex digits written by `cds rules ack` (do not edit it)")
        return value


class RuleFile(_Strict):
    """One ruleset file."""

    ruleset: str
    version: str
    status: Status
    owner: str
    description: str = ""
    approved_by: str | None = None
    approved_on: date | None = None
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    tests: list[TestCase] = Field(default_factory=list)
    acknowledged_overlaps: list[OverlapAck] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError("version must be semver MAJOR.MINOR.PATCH")
        return value

    @field_validator("acknowledged_overlaps")
    @classmethod
    def _acks(cls, acks: list[OverlapAck], info: ValidationInfo) -> list[OverlapAck]:
        ids = {r.id for r in info.data.get("rules", [])}
        pairs: set[frozenset[str]] = set()
        for n, ack in enumerate(acks):
            where = f"entry {n + 1} ({ack.rule} / {ack.other})"
            if ack.rule not in ids:
                raise ValueError(
                    f"{where}: {ack.rule!r} is not a rule of this file "
                    "(an acknowledgement lives in the file of its first rule)"
                )
            if ack.other == ack.rule:
                raise ValueError(f"{where}: a rule cannot overlap itself")
            pair = frozenset((ack.rule, ack.other))
            if pair in pairs:
                raise ValueError(f"{where}: this pair is acknowledged twice")
            pairs.add(pair)
        return acks

    @field_validator("ruleset")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_ID.match(value) or value.endswith(("$state", "$flow")):
            raise ValueError("ruleset names are lower-case letters, digits, dots and dashes")
        return value

    @model_validator(mode="after")
    def _approval(self) -> RuleFile:
        if self.status == "approved" and not (self.approved_by and self.approved_on):
            raise ValueError("an approved ruleset records approved_by and approved_on")
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {', '.join(dupes)}")
        return self


class EvidenceItem(_Strict):
    """One citable source: a trial, a label or a guideline."""

    label: str
    citation: str
    url: str
    kind: Literal["trial", "label", "guideline", "approval", "other"] = "other"


class EvidenceRegistry(_Strict):
    """``rules/evidence.yaml``: every evidence key a rule may cite."""

    version: str
    evidence: dict[str, EvidenceItem]

"""Clinical wording of a finding: its action and the values it rests on, with their dates.

A worklist row, a card or a FHIR DetectedIssue should read "Hold T-DM1: platelets 42 ×10³/µL on
31 Oct", not ``labs.platelets.value=42``. The words come from data: the action from the rule's own
summary (written by the pharmacist, with the clinician display names of the drugs), analyte labels,
units and which fact holds each date from ``rules/wording/basis.yaml``. This module is the one
place that turns a basis into words, so every surface says the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from cds.findings.model import Basis, Finding

WORDING_FILE = Path("wording") / "basis.yaml"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Getter = Callable[[str], Any]


@dataclass(frozen=True)
class FactWording:
    """How one basis fact reads: its label, display unit, where its date is, and decimals."""

    label: str
    unit: str = ""
    date: tuple[str, ...] = ()
    digits: int = 1
    form: Literal["value", "dated"] = "value"
    missing: str | None = None


@dataclass(frozen=True)
class Wording:
    """The wording table of a rules directory."""

    facts: dict[str, FactWording] = field(default_factory=dict)
    generic_heads: tuple[str, ...] = ()
    max_facts: int = 3
    drugs: dict[str, str] = field(default_factory=dict)
    ruleset_drugs: dict[str, str] = field(default_factory=dict)

    def drug_name(self, applies_to: str | None, ruleset: str) -> str | None:
        """Display name of the drug a finding is about: the rule's target, else its ruleset's drug."""
        key = applies_to or self.ruleset_drugs.get(ruleset)
        return self.drugs.get(key, key) if key else None


@lru_cache(maxsize=8)
def load_wording(rules_dir: Path) -> Wording:
    """Read ``<rules_dir>/wording/basis.yaml``; a rules directory without one gives bare summaries."""
    path = rules_dir / WORDING_FILE
    if not path.exists():
        return Wording()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    facts = {
        name: FactWording(
            label=str(spec["label"]),
            unit=str(spec.get("unit", "")),
            date=tuple(spec.get("date", ())),
            digits=int(spec.get("digits", 1)),
            form=spec.get("form", "value"),
            missing=spec.get("missing"),
        )
        for name, spec in (raw.get("facts") or {}).items()
    }
    return Wording(
        facts,
        tuple(raw.get("generic_heads") or ()),
        int(raw.get("max_facts", 3)),
        {str(k): str(v) for k, v in (raw.get("drugs") or {}).items()},
        {str(k): str(v) for k, v in (raw.get("ruleset_drugs") or {}).items()},
    )


def format_day(value: str | None, as_of: date | None = None) -> str | None:
    """``2026-10-31T08:00:00Z`` -> ``31 Oct`` (``31 Oct 2025`` when not in the as-of year)."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return value
    text = f"{day.day} {MONTHS[day.month - 1]}"
    return text if as_of is not None and day.year == as_of.year else f"{text} {day.year}"


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _latest_date(paths: tuple[str, ...], get: Getter | None) -> str | None:
    if get is None:
        return None
    dates: list[str] = []
    for path in paths:
        try:
            value = get(path)
        except KeyError:
            continue
        if isinstance(value, str) and value:
            dates.append(value)
    return max(dates) if dates else None


def describe_basis(
    basis: Basis, wording: Wording, get: Getter | None = None, as_of: date | None = None
) -> str | None:
    """One basis fact in words ("platelets 42 ×10³/µL on 31 Oct"); None for facts without wording.

    ``get`` reads other facts of the same patient (the result dates); without it no date is shown.
    """
    spec = wording.facts.get(basis.fact)
    if spec is None:
        return None
    if basis.value is None:
        return spec.missing
    day = format_day(_latest_date(spec.date, get), as_of)
    if spec.form == "dated":
        return f"last {spec.label} on {day}" if day else None
    if isinstance(basis.value, bool) or not isinstance(basis.value, int | float):
        return None
    unit = spec.unit
    joiner = "" if unit in ("%",) else " "
    text = f"{spec.label} {_number(float(basis.value), spec.digits)}{joiner}{unit}".rstrip()
    return f"{text} on {day}" if day else text


def action_head(finding: Finding, wording: Wording) -> str:
    """The action of a finding in the rule's own words: its summary up to the first colon.

    A generic opening ("Insufficient data: obtain ANC ...") gives way to the clause after it."""
    head, sep, rest = finding.summary.partition(":")
    if not sep:
        return finding.summary.strip()
    if head.strip() in wording.generic_heads:
        return " ".join(rest.split())
    return head.strip()


def action_text(
    finding: Finding, wording: Wording, get: Getter | None = None, as_of: date | None = None
) -> str:
    """The worklist line: the action, then the values it rests on with their dates.

    A recommendation, or a finding with no value to show, reads as its summary's first clause
    (the summary is the rule author's sentence: "Discontinue T-DM1: interstitial lung disease ...")."""
    described = [d for d in (describe_basis(b, wording, get, as_of) for b in finding.basis) if d]
    # What is missing matters most ("no ANC"): it goes before the values that are on file.
    missing = {spec.missing for spec in wording.facts.values() if spec.missing}
    described.sort(key=lambda d: d not in missing)
    if finding.kind == "recommendation" or not described:
        head, sep, rest = finding.summary.partition(":")
        if sep and head.strip() in wording.generic_heads:
            return " ".join(rest.split())
        return " ".join(finding.summary.split(";", 1)[0].split())
    return f"{action_head(finding, wording)}: {'; '.join(described[: wording.max_facts])}"


def basis_date(finding: Finding, wording: Wording, get: Getter | None) -> str | None:
    """The latest result date among the basis facts (for sorting a worklist by date)."""
    dates = [
        d
        for b in finding.basis
        if (spec := wording.facts.get(b.fact)) is not None and (d := _latest_date(spec.date, get)) is not None
    ]
    return max(dates) if dates else None

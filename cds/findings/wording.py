"""Findings in clinical words: how a card names the facts a finding rests on.

"Platelets 42 ×10³/µL on 31 Oct 2026", not "`labs.platelets.value` = 42.0 (Observation/…)". The
labels, units and phrases are data (``rules/valuesets/wording.yaml``) and drug names come from
the drug knowledge (a value-set agent's ``label``, else its ``display``), so wording is reviewed
like rules and changes without code. Resource ids never appear in the words: cards carry them in
their extension.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from cds.errors import ConfigurationError
from cds.findings.model import Basis

WORDING_FILE = "valuesets/wording.yaml"
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class FactWording:
    """How one fact path reads on a card."""

    label: str = ""
    unit: str = ""
    date: str = ""
    when_true: str = ""
    when_false: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    agents: bool = False


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def clinical_date(text: str) -> str:
    """``2026-10-31T08:00:00Z`` -> ``31 Oct 2026`` (the input unchanged if it is not a date)."""
    try:
        day: date = datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return text
    return f"{day.day} {day.strftime('%b %Y')}"


_ISO_INSTANT = re.compile(r"\b(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?\b")
_RECORD_TYPES = (
    "Observation|Condition|Procedure|Medication(?:Request|Administration|Statement|Dispense)?|"
    "AllergyIntolerance|Patient|Encounter|DiagnosticReport|ServiceRequest|Immunization|FamilyMemberHistory"
)
_RESOURCE_REF = re.compile(rf"\b(?:{_RECORD_TYPES})/[A-Za-z0-9\-.]{{1,64}}(,\s*)?")


def clinical_text(text: str) -> str:
    """A rule's explanation as a clinician reads it: dates as "31 Oct 2026", and no resource ids
    (the card extension lists them; an id means nothing at the bedside)."""
    text = _ISO_INSTANT.sub(lambda m: clinical_date(m.group(0)), text)
    text = _RESOURCE_REF.sub("", text)
    return re.sub(r"\(\s*\)\s?", "", text).replace(" )", ")").replace("( ", "(")


def capitalised(text: str) -> str:
    """The text with its first letter in upper case (card details never start in lower case)."""
    stripped = text.lstrip()
    return stripped[:1].upper() + stripped[1:] if stripped else stripped


@dataclass(frozen=True)
class Wording:
    """Fact wording and drug display names of one rules directory."""

    facts: Mapping[str, FactWording] = field(default_factory=dict)
    drug_names: Mapping[str, str] = field(default_factory=dict)

    def drug(self, key: str) -> str:
        """The display name of a drug-knowledge agent key (``tdm1`` -> ``T-DM1``)."""
        return self.drug_names.get(key, key)

    def _spec(self, fact: str) -> FactWording | None:
        """The wording of a fact path; agent-keyed paths (``therapy.on.tdm1``) use the data's
        ``{agent}`` entry (``therapy.on.{agent}``) with the agent's display name filled in."""
        spec = self.facts.get(fact)
        if spec is not None:
            return spec
        parts = fact.split(".")
        for i, part in enumerate(parts):
            if part in self.drug_names:
                generic = self.facts.get(".".join([*parts[:i], "{agent}", *parts[i + 1 :]]))
                if generic is not None:
                    name = self.drug(part)
                    return replace(
                        generic,
                        label=generic.label.replace("{agent}", name),
                        when_true=generic.when_true.replace("{agent}", name),
                        when_false=generic.when_false.replace("{agent}", name),
                    )
        return None

    def _value(self, spec: FactWording, value: Any) -> str:
        if isinstance(value, float | int) and not isinstance(value, bool):
            shown = _number(float(value))
            unit = spec.unit
            return f"{shown}{unit}" if unit.startswith("%") else f"{shown} {unit}".rstrip()
        text = str(value)
        if spec.agents:
            return ", ".join(self.drug(part.strip()) for part in text.split(","))
        return spec.values.get(text, text)

    def basis_line(self, basis: Basis, get: Callable[[str], Any] | None = None) -> str | None:
        """One "Based on" line for a basis fact, or None when the fact adds nothing to read."""
        spec = self._spec(basis.fact)
        if spec is None:
            spec = FactWording(label=capitalised(basis.fact.replace(".", " ").replace("_", " ")))
        value = basis.value
        if isinstance(value, bool):
            phrase = spec.when_true if value else spec.when_false
            if not phrase and spec.label:
                phrase = f"{spec.label}: {'yes' if value else 'no'}"
            return phrase or None
        if value is None or value == "":
            return f"{spec.label}: {NOT_RECORDED}" if spec.label else None
        if not spec.label:
            return None
        line = f"{spec.label}: {self._value(spec, value)}"
        if isinstance(value, float | int) and spec.unit:
            line = f"{spec.label} {self._value(spec, value)}"
        if spec.date and get is not None:
            try:
                when = get(spec.date)
            except KeyError:
                when = None
            if isinstance(when, str) and when:
                line += f" on {clinical_date(when)}"
        return line


def load_wording(rules_dir: Path, drug_names: Mapping[str, str]) -> Wording:
    """Read ``rules/valuesets/wording.yaml``; without it, facts read as their paths in words."""
    path = rules_dir / WORDING_FILE
    if not path.is_file():
        return Wording({}, dict(drug_names))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    facts: dict[str, FactWording] = {}
    for fact, raw in (data.get("facts") or {}).items():
        raw = raw or {}
        unknown = set(raw) - set(FactWording.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"{path}: facts.{fact}: unknown keys {sorted(unknown)}")
        facts[str(fact)] = FactWording(
            label=str(raw.get("label", "")),
            unit=str(raw.get("unit", "")),
            date=str(raw.get("date", "")),
            when_true=str(raw.get("when_true", "")),
            when_false=str(raw.get("when_false", "")),
            values={str(k): str(v) for k, v in (raw.get("values") or {}).items()},
            agents=bool(raw.get("agents", False)),
        )
    return Wording(facts, dict(drug_names))

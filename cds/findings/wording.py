"""Findings in clinical words: how a card names the facts a finding rests on.

"Platelets 42 ×10³/µL on 31 Oct 2026", not "`labs.platelets.value` = 42.0 (Observation/…)". The
labels, units and phrases are data (``rules/valuesets/wording.yaml``) and drug names come from
the drug knowledge (a value-set agent's ``label``, else its ``display``), so wording is reviewed
like rules and changes without code. Resource ids never appear in the words: cards carry them in
their extension.

The same words make a worklist line (the cohort report, the FHIR DetectedIssue evidence): the
action in the rule author's words (the summary's opening, "Hold T-DM1") followed by the values it
rests on with their dates: "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct 2026".
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
from cds.findings.model import Basis, Finding
from cds.knowledge.catalogue import Catalogue

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
class Threshold:
    """A rule parameter a report chart draws, and the label it is drawn with ("{value}" filled in)."""

    parameter: str
    label: str

    def text(self, value: Any) -> str:
        """The label with the parameter's value (``hold below 40%``)."""
        shown = _number(float(value)) if isinstance(value, int | float) else str(value)
        return self.label.replace("{value}", shown)


@dataclass(frozen=True)
class WorklistWording:
    """How findings read as worklist lines, and what a cohort report draws (``worklist`` section)."""

    # summary openings that name no action ("Insufficient data: obtain ANC ..."): the rest is used
    generic_heads: tuple[str, ...] = ()
    # drug classes a rule may apply to, by the name a worklist groups them under
    classes: Mapping[str, str] = field(default_factory=dict)
    # Patient.identifier types (system, code) preferred as the patient's identifier (the MRN)
    identifier_types: tuple[tuple[str, str], ...] = ()
    lvef_lines: tuple[Threshold, ...] = ()  # drawn across the LVEF trajectory chart
    lvef_due: Threshold | None = None  # days since the last LVEF: when one is due
    labs_due: Threshold | None = None  # days since the last labs: when they are due


@dataclass(frozen=True)
class Wording:
    """Fact wording and drug display names of one rules directory."""

    facts: Mapping[str, FactWording] = field(default_factory=dict)
    drug_names: Mapping[str, str] = field(default_factory=dict)
    worklist: WorklistWording = field(default_factory=WorklistWording)

    def drug(self, key: str) -> str:
        """The display name of a drug-knowledge agent key (``tdm1`` -> ``T-DM1``)."""
        return self.drug_names.get(key, key)

    def drug_or_class(self, key: str) -> str:
        """The display name of what a rule applies to: an agent, else a drug class, else the key."""
        return self.drug_names.get(key) or self.worklist.classes.get(key, key)

    def value_line(self, basis: Basis, get: Callable[[str], Any] | None = None) -> str | None:
        """A measured value the finding rests on, in words with its date ("Platelets 42 ×10³/µL on
        31 Oct 2026"); None for facts that are not numbers with a unit (flags, categories)."""
        value = basis.value
        spec = self._spec(basis.fact)
        if spec is None or not spec.unit or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return self.basis_line(basis, get)

    def value_date(self, basis: Basis, get: Callable[[str], Any] | None) -> str | None:
        """The ISO date of a basis value (its wording's ``date`` fact), when it has one."""
        spec = self._spec(basis.fact)
        if spec is None or not spec.date or get is None or basis.value is None:
            return None
        try:
            when = get(spec.date)
        except KeyError:
            return None
        return when if isinstance(when, str) and when else None

    def action_line(self, finding: Finding, get: Callable[[str], Any] | None = None) -> str:
        """One worklist line: the action in the rule author's words (the summary's opening), then
        for an alert the values it rests on with their dates ("Hold T-DM1: platelets 42 ×10³/µL on
        31 Oct 2026"). A summary written "<drug>: <values>: <action>" reads "<drug>, <action>: ...";
        a generic opening ("Insufficient data:") gives way to what follows it; a finding with no
        value to show reads as its whole summary."""
        parts = [part.strip() for part in finding.summary.split(":")]
        values: list[str] = []
        if finding.kind == "alert":
            values = list(dict.fromkeys(v for b in finding.basis if (v := self.value_line(b, get))))
        if len(parts) > 1 and parts[0] in self.worklist.generic_heads:
            line = ": ".join(parts[1:])
        elif values and len(parts) >= 3:
            line = f"{parts[0]}, {_lower_first(parts[-1])}"
        elif values and len(parts) == 2:
            line = parts[0]
        else:
            line = finding.summary
        line = capitalised(clinical_text(line))
        if values:
            line = f"{line}: {'; '.join(_lower_first(v) for v in values)}"
        return " ".join(line.split())

    def shown_date(self, finding: Finding, get: Callable[[str], Any] | None) -> str | None:
        """The latest ISO date among the values a finding rests on (a worklist sorts by it)."""
        dates = [d for b in finding.basis if (d := self.value_date(b, get))]
        return max(dates) if dates else None

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


def _lower_first(text: str) -> str:
    """ "Platelets 42" -> "platelets 42" inside a line; "LVEF 35%" and "ALT 6 × ULN" stay."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _threshold(raw: Any, where: str) -> Threshold:
    if not isinstance(raw, dict) or not raw.get("parameter") or not raw.get("label"):
        raise ConfigurationError(f"{where}: expected {{parameter: <rule parameter>, label: <text>}}")
    return Threshold(str(raw["parameter"]), str(raw["label"]))


def _worklist(raw: Any, path: Path) -> WorklistWording:
    """The ``worklist`` section of the wording file."""
    if not raw:
        return WorklistWording()
    known = {"generic_heads", "classes", "identifier_types", "lvef_lines", "lvef_due", "labs_due"}
    if not isinstance(raw, dict) or set(raw) - known:
        raise ConfigurationError(f"{path}: worklist: unknown keys {sorted(set(raw) - known)}")
    types = []
    for item in raw.get("identifier_types") or []:
        if not isinstance(item, dict) or not item.get("system") or not item.get("code"):
            raise ConfigurationError(f"{path}: worklist.identifier_types: expected {{system, code}}")
        types.append((str(item["system"]), str(item["code"])))
    return WorklistWording(
        generic_heads=tuple(str(h) for h in raw.get("generic_heads") or ()),
        classes={str(k): str(v) for k, v in (raw.get("classes") or {}).items()},
        identifier_types=tuple(types),
        lvef_lines=tuple(_threshold(t, f"{path}: worklist.lvef_lines") for t in raw.get("lvef_lines") or ()),
        lvef_due=_threshold(raw["lvef_due"], f"{path}: worklist.lvef_due") if raw.get("lvef_due") else None,
        labs_due=_threshold(raw["labs_due"], f"{path}: worklist.labs_due") if raw.get("labs_due") else None,
    )


def drug_names_of(catalogue: Catalogue) -> dict[str, str]:
    """Agent key -> the name cards and worklists show (T-DM1), from the drug catalogue."""
    return {key: catalogue.display(key) for key in catalogue.agent_ids()}


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
    return Wording(facts, dict(drug_names), _worklist(data.get("worklist"), path))

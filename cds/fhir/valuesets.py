"""Value sets as data: which codes and names mean which clinical concept, agent or analyte.

The tables live in ``rules/valuesets/*.yaml`` so pharmacists can extend them without Python.
Medications are matched by the drug catalogue (``rules/catalogue/``), which this module holds
so every reader of value sets sees the same agents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cds.errors import ConfigurationError
from cds.knowledge.catalogue import Catalogue

SYSTEM_ALIASES = {
    "http://snomed.info/sct": "snomed",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10cm",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
    "http://loinc.org": "loinc",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
}


@dataclass(frozen=True)
class Concept:
    """A clinical concept: exact codes per system, code-family prefixes and text fallbacks."""

    name: str
    codes: Mapping[str, frozenset[str]]
    prefixes: Mapping[str, tuple[str, ...]]
    text: tuple[str, ...]
    exclude_text: tuple[str, ...] = ()


@dataclass(frozen=True)
class Analyte:
    """A quantitative analyte with its canonical unit and accepted unit spellings."""

    key: str
    loinc: frozenset[str]
    canonical: str
    units: Mapping[str, float]


@dataclass(frozen=True)
class Codings:
    """The codes and texts of one CodeableConcept, normalised once for all matching."""

    codes: tuple[tuple[str, str], ...]  # (system alias or raw system, code)
    texts: tuple[str, ...]  # lower-cased text and displays

    @staticmethod
    def of(cc: Any) -> Codings:
        """Read a CodeableConcept (or a bare string) defensively: any shape, never raises."""
        codes: list[tuple[str, str]] = []
        texts: list[str] = []
        if isinstance(cc, str):
            return Codings((), (cc.strip().lower(),))
        if not isinstance(cc, dict):
            return Codings((), ())
        codings = cc.get("coding")
        for coding in codings if isinstance(codings, list) else []:
            if not isinstance(coding, dict):
                continue
            system = coding.get("system")
            code = coding.get("code")
            if isinstance(code, str):
                alias = SYSTEM_ALIASES.get(system, system) if isinstance(system, str) else ""
                codes.append((alias or "", code.strip()))
            display = coding.get("display")
            if isinstance(display, str):
                texts.append(display.strip().lower())
        text = cc.get("text")
        if isinstance(text, str):
            texts.insert(0, text.strip().lower())
        return Codings(tuple(codes), tuple(texts))


@dataclass
class ValueSets:
    """All value sets of one rules directory; the single place codes are interpreted."""

    concepts: dict[str, Concept]
    catalogue: Catalogue
    analytes: dict[str, Analyte]
    coded: dict[str, frozenset[str]]
    answers: dict[str, Concept]
    versions: dict[str, str] = field(default_factory=dict)
    _loinc_kind: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key, analyte in self.analytes.items():
            for code in analyte.loinc:
                self._loinc_kind[code] = key
        for key, codes in self.coded.items():
            for code in codes:
                self._loinc_kind.setdefault(code, key)

    # -- observations -------------------------------------------------------------------------
    def observation_kind(self, codings: Codings) -> str | None:
        """The analyte or coded-observation kind of an Observation.code, by LOINC code only."""
        for system, code in codings.codes:
            if system in ("loinc", "") and code in self._loinc_kind:
                return self._loinc_kind[code]
        return None

    def answer_is(self, answer: str, codings: Codings) -> bool:
        """Whether a coded or text answer means ``answer`` (positive, negative, worsened...)."""
        concept = self.answers[answer]
        for _system, code in codings.codes:
            if any(code in codes for codes in concept.codes.values()):
                return True
        return any(_text_equals_or_word(t, concept.text) for t in codings.texts)

    # -- conditions and procedures --------------------------------------------------------------
    def matches(self, concept_name: str, codings: Codings) -> bool:
        """Whether a CodeableConcept belongs to a concept: codes first, then text."""
        concept = self.concepts[concept_name]
        for system, code in codings.codes:
            if code in concept.codes.get(system, ()):
                return True
            for prefix in concept.prefixes.get(system, ()):
                if code.upper().startswith(prefix.upper()):
                    return True
        if any(code for _, code in codings.codes if _known_code(concept, _)):
            # Coded in a system this concept lists, but not a member: the code wins over text.
            return False
        for text in codings.texts:
            if any(x in text for x in concept.exclude_text):
                continue
            if any(x in text for x in concept.text):
                return True
        return False

    def concepts_of(self, codings: Codings, names: Iterable[str]) -> list[str]:
        """The subset of ``names`` that a CodeableConcept matches, in the given order."""
        return [n for n in names if self.matches(n, codings)]

    # -- medications ----------------------------------------------------------------------------
    def items_by_code(self, codings: Codings) -> tuple[str, ...]:
        """Catalogue agents/products named by RxNorm codes (ingredient, brand or clinical drug)."""
        return self.catalogue.items_by_code(codings.codes)

    def items_by_name(self, codings: Codings) -> tuple[str, ...]:
        """Catalogue agents/products named in text/display (see the catalogue's matching order)."""
        return self.catalogue.items_by_name(codings.texts)


def _known_code(concept: Concept, system: str) -> bool:
    return system in concept.codes or system in concept.prefixes


def _text_equals_or_word(text: str, words: tuple[str, ...]) -> bool:
    """Answer text matching: exact, or a whole leading word ("Positive (3+)" is positive)."""
    cleaned = text.strip().strip(".").lower()
    if cleaned in words:
        return True
    return any(cleaned.startswith(w + " ") or cleaned.startswith(w + "(") for w in words if len(w) > 3)


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}: expected a list of strings")
    return tuple(value)


def _concept(name: str, raw: Mapping[str, Any], where: str) -> Concept:
    codes = {k: frozenset(_str_list(v, f"{where}.codes.{k}")) for k, v in (raw.get("codes") or {}).items()}
    prefixes = {k: _str_list(v, f"{where}.prefixes.{k}") for k, v in (raw.get("prefixes") or {}).items()}
    return Concept(
        name=name,
        codes=codes,
        prefixes=prefixes,
        text=tuple(t.lower() for t in _str_list(raw.get("text"), f"{where}.text")),
        exclude_text=tuple(t.lower() for t in _str_list(raw.get("exclude_text"), f"{where}.exclude_text")),
    )


def load_valuesets(directory: Path, catalogue: Catalogue) -> ValueSets:
    """Load ``concepts.yaml`` and ``observations.yaml``; medications come from the drug catalogue."""

    def read(name: str) -> dict[str, Any]:
        path = directory / name
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read value set {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"value set {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"value set {path} must be a mapping")
        return data

    concepts_raw, obs = read("concepts.yaml"), read("observations.yaml")
    concepts = {
        name: _concept(name, raw, f"concepts.yaml concepts.{name}")
        for name, raw in (concepts_raw.get("concepts") or {}).items()
    }
    analytes: dict[str, Analyte] = {}
    for key, raw in (obs.get("analytes") or {}).items():
        units = raw.get("units") or {}
        if not isinstance(units, dict) or not all(isinstance(v, int | float) for v in units.values()):
            raise ConfigurationError(f"observations.yaml analytes.{key}.units must map unit -> factor")
        analytes[key] = Analyte(
            key=key,
            loinc=frozenset(_str_list(raw.get("loinc"), f"observations.yaml analytes.{key}.loinc")),
            canonical=str(raw["canonical"]),
            units={str(k): float(v) for k, v in units.items()},
        )
    coded = {
        k: frozenset(_str_list(v, f"observations.yaml coded.{k}"))
        for k, v in (obs.get("coded") or {}).items()
    }
    answers = {
        name: Concept(
            name=name,
            codes={"any": frozenset(_str_list(raw.get("codes"), f"observations.yaml answers.{name}"))},
            prefixes={},
            text=tuple(t.lower() for t in _str_list(raw.get("text"), f"observations.yaml answers.{name}")),
        )
        for name, raw in (obs.get("answers") or {}).items()
    }
    versions = {
        **{f"catalogue-{k}": v for k, v in catalogue.versions.items()},
        "concepts": str(concepts_raw.get("version", "")),
        "observations": str(obs.get("version", "")),
    }
    return ValueSets(concepts, catalogue, analytes, coded, answers, versions)

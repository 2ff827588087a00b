"""Value sets as data: which codes and names mean which clinical concept, agent or analyte.

The tables live in ``rules/valuesets/*.yaml`` so pharmacists can extend them without Python.
Medications are matched by the drug catalogue (``rules/catalogue/``), which this module holds
so every reader of value sets sees the same agents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from cds.errors import ConfigurationError
from cds.fhir import text as textmod
from cds.fhir.text import Cues, Phrase, load_cues
from cds.knowledge.catalogue import Catalogue
from cds.knowledge.provenance import knowledge_status

ConceptMatch = Literal["code", "text", "uncertain"]

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
    exclude_regional_nodes: bool = False
    safety: bool = False  # a text-only or uncertain mention asks for review (ILD, metastasis)

    @cached_property
    def phrases(self) -> tuple[Phrase, ...]:
        """The text fallbacks as whole-word phrases."""
        return tuple(textmod.phrase(t) for t in self.text)


@dataclass(frozen=True)
class Analyte:
    """A quantitative analyte with its canonical unit and accepted unit spellings."""

    key: str
    loinc: frozenset[str]
    canonical: str
    units: Mapping[str, float]
    fraction: Mapping[str, Any] | None = None  # unitless fractions (LVEF 0.58 = 58 %)
    affine: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # unit -> (scale, offset)


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


_CODINGS: dict[bytes, Codings] = {}
_CODINGS_MAX = 10_000


def forget() -> None:
    """Forget remembered codings (benchmarks)."""
    _CODINGS.clear()


def codings_of(cc: Any) -> Codings:
    """``Codings.of``, remembered by the CodeableConcept's exact content (a patient's results
    repeat the same few codes)."""
    if type(cc) is not dict:
        return Codings.of(cc)
    try:
        key = orjson.dumps(cc)
    except (TypeError, orjson.JSONEncodeError):
        return Codings.of(cc)
    known = _CODINGS.get(key)
    if known is None:
        known = Codings.of(cc)
        if len(_CODINGS) >= _CODINGS_MAX:
            _CODINGS.clear()
        _CODINGS[key] = known
    return known


@dataclass
class ValueSets:
    """All value sets of one rules directory; the single place codes are interpreted."""

    concepts: dict[str, Concept]
    catalogue: Catalogue
    analytes: dict[str, Analyte]
    coded: dict[str, frozenset[str]]
    answers: dict[str, Concept]
    versions: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # knowledge file -> review status
    cues: Cues = field(default_factory=lambda: Cues((), 6, (), (), (), (), (), ()))
    _concept_codes: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _loinc_kind: dict[str, str] = field(default_factory=dict, repr=False)
    # answers derived from these tables alone (observation kinds, unit conversions, reference
    # ranges), remembered per input: readers call them for every result of a long history
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key, analyte in self.analytes.items():
            for code in analyte.loinc:
                self._loinc_kind[code] = key
        for key, codes in self.coded.items():
            for code in codes:
                self._loinc_kind.setdefault(code, key)
        known: dict[str, set[str]] = {}
        for concept in self.concepts.values():
            for system, codes in concept.codes.items():
                known.setdefault(system, set()).update(codes)
        self._concept_codes = {k: frozenset(v) for k, v in known.items()}

    # -- observations -------------------------------------------------------------------------
    def observation_kind(self, codings: Codings) -> str | None:
        """The analyte or coded-observation kind of an Observation.code, by LOINC code only."""
        key = ("kind", codings.codes)
        if key in self.memo:
            return self.memo[key]  # type: ignore[no-any-return]
        kind = next(
            (self._loinc_kind[c] for s, c in codings.codes if s in ("loinc", "") and c in self._loinc_kind),
            None,
        )
        self.remember(key, kind)
        return kind

    def remember(self, key: Any, value: Any) -> None:
        """Keep one derived answer (bounded: the memo starts again when full)."""
        if len(self.memo) >= 20_000:
            self.memo.clear()
        self.memo[key] = value

    def answer_is(self, answer: str, codings: Codings) -> bool:
        """Whether a coded or text answer means ``answer`` (positive, negative, worsened...).

        Text is read in context, wherever the answer stands ("ER: POSITIVE (95%)" is positive,
        "not detected" is not "detected")."""
        key = ("answer", answer, codings)
        known: bool | None = self.memo.get(key)
        if known is None:
            known = self._answer_is(self.answers[answer], codings)
            self.remember(key, known)
        return known

    def _answer_is(self, concept: Concept, codings: Codings) -> bool:
        for _system, code in codings.codes:
            if any(code in codes for codes in concept.codes.values()):
                return True
        phrases = concept.phrases
        return any(textmod.mention_status(t, phrases, self.cues) == "positive" for t in codings.texts)

    # -- conditions and procedures --------------------------------------------------------------
    def in_any_concept(self, system: str, code: str) -> bool:
        """Whether a code belongs to any concept's value set (exact codes or code families)."""
        if code in self._concept_codes.get(system, ()):
            return True
        return any(
            code.upper().startswith(p.upper())
            for c in self.concepts.values()
            for p in c.prefixes.get(system, ())
        )

    def match(self, concept_name: str, codings: Codings) -> ConceptMatch | None:
        """How a CodeableConcept belongs to a concept: by code, by text, or only uncertainly.

        A code of the concept wins; a code of *another* value set wins over text; a code outside
        every value set never blocks a text match. Text is read in context (negation, uncertainty;
        for metastasis, a regional breast-node site in the same clause makes it nodal)."""
        concept = self.concepts[concept_name]
        for system, code in codings.codes:
            if code in concept.codes.get(system, ()):
                return "code"
            for prefix in concept.prefixes.get(system, ()):
                if code.upper().startswith(prefix.upper()):
                    return "code"
        if any(self.in_any_concept(system, code) for system, code in codings.codes):
            return None
        best: ConceptMatch | None = None
        for text in codings.texts:
            status = self.text_status(concept, text)
            if status == "positive":
                return "text"
            if status == "uncertain":
                best = "uncertain"
        return best

    def text_status(self, concept: Concept, text: str) -> textmod.Status | None:
        """How a text states a concept (None: not mentioned, or only as an excluded phrase)."""
        key = ("text", id(concept), text)  # concepts live as long as this memo
        if key in self.memo:
            return self.memo[key]  # type: ignore[no-any-return]
        status = self._text_status(concept, text)
        self.remember(key, status)
        return status

    def _text_status(self, concept: Concept, text: str) -> textmod.Status | None:
        if concept.exclude_text and textmod.contains(text, (textmod.phrase(x) for x in concept.exclude_text)):
            return None
        unless: tuple[Phrase, ...] = ()
        also: tuple[Phrase, ...] = ()
        if concept.exclude_regional_nodes:
            unless = self.cues.words("regional_nodes.sites")
            also = self.cues.words("regional_nodes.distant")
        return textmod.mention_status(
            text, concept.phrases, self.cues, unless_clause_has=unless, unless_also=also
        )

    def matches(self, concept_name: str, codings: Codings) -> bool:
        """Whether a CodeableConcept positively belongs to a concept (by code or by text)."""
        return self.match(concept_name, codings) in ("code", "text")

    def concepts_of(self, codings: Codings, names: Iterable[str]) -> list[str]:
        """The subset of ``names`` that a CodeableConcept matches, in the given order."""
        return [n for n in names if self.matches(n, codings)]

    # -- unreadable records ---------------------------------------------------------------------
    def relevance(self, raw: Any, concept_names: Iterable[str]) -> list[str]:
        """What data the rules use a raw (unreadable) record names: lab/result codes, condition
        codes or text (ILD, metastasis...), HER2-directed drugs by code or name. Looked up through
        the value sets, so a record of interest is never dropped silently."""
        codes: list[str] = []
        texts: list[str] = []
        _leaves(raw, codes, texts)
        found: list[str] = []

        def note(label: str) -> None:
            if label not in found:
                found.append(label)

        names = [n for n in concept_names if n in self.concepts]
        for code in codes:
            if code in self._loinc_kind:
                note(f"{self._loinc_kind[code].replace('_', ' ')} result ({code})")
            for key in self._her2_directed(self.items_by_code(Codings((("", code),), ()))):
                note(f"HER2-directed drug {self.catalogue.display(key)} ({code})")
            for name in names:
                concept = self.concepts[name]
                if any(code in c for c in concept.codes.values()) or any(
                    code.upper().startswith(p.upper()) for ps in concept.prefixes.values() for p in ps
                ):
                    note(f"{name.replace('_', ' ')} condition ({code})")
        for text in texts:
            for name in names:
                if self.text_status(self.concepts[name], text) in ("positive", "uncertain"):
                    note(f"{name.replace('_', ' ')} condition ({text[:60]})")
            for key in self._her2_directed(self.items_by_name(Codings((), (text,)))):
                note(f"HER2-directed drug {self.catalogue.display(key)}")
        return found

    def _her2_directed(self, items: tuple[str, ...]) -> list[str]:
        """The HER2-directed agents among catalogue items (a product counts as its agents)."""
        her2 = set(self.catalogue.with_class("her2_directed"))
        return [a for a in self.catalogue.agents_of(items) if a in her2]

    # -- medications ----------------------------------------------------------------------------
    def items_by_code(self, codings: Codings) -> tuple[str, ...]:
        """Catalogue agents/products named by RxNorm codes (ingredient, brand or clinical drug)."""
        return self.catalogue.items_by_code(codings.codes)

    def items_by_name(self, codings: Codings) -> tuple[str, ...]:
        """Catalogue agents/products named in text/display (see the catalogue's matching order)."""
        return self.catalogue.items_by_name(codings.texts)


def _leaves(node: Any, codes: list[str], texts: list[str], depth: int = 0) -> None:
    """Collect ``code`` values and ``text``/``display`` strings of a raw JSON tree (bounded)."""
    if depth > 20 or len(codes) + len(texts) > 2000:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if key == "code":
                    codes.append(value.strip())
                elif key in ("text", "display", "valueString"):
                    texts.append(value)
            else:
                _leaves(value, codes, texts, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _leaves(item, codes, texts, depth + 1)
    elif isinstance(node, str):
        texts.append(node)


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
        exclude_regional_nodes=bool(raw.get("exclude_regional_nodes", False)),
        safety=bool(raw.get("safety", False)),
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
            fraction=raw.get("fraction") if isinstance(raw.get("fraction"), dict) else None,
            affine={
                str(k): (float(v[0]), float(v[1]))
                for k, v in (raw.get("affine") or {}).items()
                if isinstance(v, list) and len(v) == 2
            },
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
    cues = load_cues(directory / "cues.yaml")
    versions["cues"] = cues.version
    statuses = {
        **catalogue.statuses,
        "valuesets/concepts.yaml": knowledge_status(concepts_raw, "concepts.yaml"),
        "valuesets/observations.yaml": knowledge_status(obs, "observations.yaml"),
        "valuesets/cues.yaml": cues.status,
    }
    return ValueSets(concepts, catalogue, analytes, coded, answers, versions, statuses, cues)

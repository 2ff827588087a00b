"""Per-resource validation and extraction: raw FHIR R4 -> typed clinical records.

Cheap code checks run first, so only resources the facts can use are validated with the
fhir.resources R4B models (validation costs ~0.1-0.2 ms per resource; Synthea bundles are mostly
claims and encounters). One invalid resource is skipped and reported, never sinking the patient
(clinical-spec §1). Records with a status that does not count (entered-in-error, preliminary...)
are simply not used.

``validate="all"`` validates each resource of interest before reading it. ``validate="selected"``
reads them all first and leaves validation to the evaluation, which validates the records the
facts need and screens the others (cds/fhir/settle.py); both give the same records, ``skipped``
and gaps.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson

from cds.errors import InputRejected
from cds.fhir.limits import MAX_MAGNITUDE, first_number_problem, medication_number_problem
from cds.fhir.records import (
    AllergyRecord,
    ConditionRecord,
    MedicationEvent,
    ObservationRecord,
    PatientInfo,
    PatientRecord,
    ProcedureRecord,
    Skipped,
    When,
)
from cds.fhir.refs import identity_of, other_patient_reference
from cds.fhir.settle import Pending, Settlement
from cds.fhir.source import JSON, RawPatient
from cds.fhir.text import contains as text_contains
from cds.fhir.text import tokens as text_tokens
from cds.fhir.units import UnitUnrecognized, affine_of, conversion_factor, fraction_value
from cds.fhir.validate import clear_validation_cache, validation_error
from cds.fhir.valuesets import Analyte, Codings, ValueSets, codings_of

OBSERVATION_OK = {"final", "amended", "corrected"}
CONDITION_BAD_VERIFICATION = {"refuted", "entered-in-error"}
MED_BAD_STATUS = {"entered-in-error", "cancelled", "not-done", "not-taken", "draft", "intended"}
REQUEST_EXPOSURE_INTENTS = {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
CONDITION_CONCEPTS = (
    "breast_cancer",
    "other_primary_cancer",
    "metastasis",
    "brain_metastases",
    "leptomeningeal",
    "ild",
    "heart_failure",
    "febrile_neutropenia",
    "nrh",
    "postmenopausal",
)
# concepts whose codes or text in an unreadable record raise gap.unreadable-data
RELEVANT_CONCEPTS = ("breast_cancer", "metastasis", "brain_metastases", "ild", "heart_failure", "nrh")
PROCEDURE_CONCEPTS = ("breast_surgery", "hysterectomy", "bilateral_oophorectomy")
MED_TYPES = ("MedicationAdministration", "MedicationRequest", "MedicationStatement", "MedicationDispense")
READ_TYPES = frozenset({"Observation", "Condition", "Procedure", "AllergyIntolerance", *MED_TYPES})
DISPENSE_BAD_STATUS = {"preparation", "on-hold", "declined"}
MED_SOURCE = {
    "MedicationAdministration": "administration",
    "MedicationRequest": "request",
    "MedicationStatement": "statement",
    "MedicationDispense": "dispense",
}
UCUM = "http://unitsofmeasure.org"

_TYPE_ID_RE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")
_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_RANGE_TEXT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\s*$")
_LVEF_STRING_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:%?\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s*%?\s*$")


_WHEN: dict[str, When | None] = {}


def parse_when(value: Any) -> When | None:
    """Parse a FHIR date or dateTime; partial dates start at their first day; bad values -> None."""
    if type(value) is not str:
        return _parse_when(value)
    try:
        return _WHEN[value]
    except KeyError:
        pass
    when = _parse_when(value)
    if len(_WHEN) >= 20_000:
        _WHEN.clear()
    _WHEN[value] = when
    return when


def _parse_when(value: Any) -> When | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if _DATE_RE.match(text):
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return When(datetime(parts[0], parts[1], parts[2], tzinfo=UTC), date_only=True)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return When(parsed.astimezone(UTC))


DRAFT_ORIGIN = "draft order"  # the origin of an InputRejected about the draft order, not the patient
ValidateMode = Literal["all", "selected"]
VALIDATE_MODES: tuple[ValidateMode, ...] = ("all", "selected")


READ_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError)

# Readings remembered by (patient context, resource content), with ``remember`` (a service that
# sees the same patient's resources again): what reading added and whether the resource reached
# the validation point. Records and skipped lines are immutable, so calls can share them.
READINGS_MAX = 50_000
_READINGS: dict[bytes, tuple[bool, tuple[str, object] | None, list[Skipped], list[str], list[Any]]] = {}


def forget_everything(vs: ValueSets | None = None) -> None:
    """Forget every answer remembered across evaluations: validation parts and verdicts, screen
    verdicts, readings, dates, codes (and a library's value-set answers). Results never depend on
    these memories; benchmarks use this to measure a process that has seen nothing yet."""
    from cds.fhir import screen, settle, valuesets

    clear_validation_cache()
    screen.forget()
    _READINGS.clear()
    settle.forget()
    _WHEN.clear()
    valuesets.forget()
    if vs is not None:
        vs.memo.clear()


def _reading_key(context: bytes, resource: JSON) -> bytes | None:
    try:
        return hashlib.blake2b(context + b"\0" + orjson.dumps(resource), digest_size=16).digest()
    except (TypeError, orjson.JSONEncodeError):
        return None


def _judged(resource: JSON, remember: bool = False) -> str | None:
    """The validation verdict as the reader would record it: the first error, or, if the model
    itself fails on the shape, the "could not be read" reason reading gives (``_Parser._read``)."""
    try:
        return validation_error(resource, remember)
    except READ_ERRORS as exc:
        return _read_error(exc)


def _read_error(exc: BaseException) -> str:
    return f"could not be read ({type(exc).__name__}: {exc})"[:300]


def _str(value: Any) -> str | None:
    """A raw value if it is a string (raw FHIR may hold anything before validation)."""
    return value if isinstance(value, str) else None


def _ref(resource: JSON) -> str:
    rid = resource.get("id")
    return f"{resource['resourceType']}/{rid if isinstance(rid, str) and rid else '<no id>'}"


def _status_code(value: Any) -> str | None:
    codings = Codings.of(value)
    for _system, code in codings.codes:
        return code.lower()
    return codings.texts[0] if codings.texts else None


@dataclass(frozen=True)
class _Plan:
    """How a unit spelling converts to an analyte's canonical unit (value-independent part)."""

    fraction: bool  # the first candidate may be a unitless fraction (decided by the value)
    affine: tuple[float, float] | None  # (scale, offset) of the first candidate with an offset
    factor: float | None  # else the factor of the first known candidate
    unknown: tuple[str, str | None]  # else UnitUnrecognized(analyte, the last candidate)


def _plan(analyte: Analyte, candidates: list[str | None]) -> _Plan:
    """Which step of ``_Parser._convert`` applies to these unit candidates: the fraction reading
    (LVEF 0.58), an offset unit (Fahrenheit), else a factor; unknown units raise as before."""
    fraction = bool(analyte.fraction) and (candidates[0] or "").strip() in [
        str(u) for u in (analyte.fraction or {}).get("units", [])
    ]
    for unit in candidates:
        affine = affine_of(analyte, unit)
        if affine is not None:
            return _Plan(fraction, affine, None, (analyte.key, None))
    unknown: tuple[str, str | None] = (analyte.key, None)
    for unit in candidates:
        try:
            return _Plan(fraction, None, conversion_factor(analyte, unit), unknown)
        except UnitUnrecognized as exc:
            unknown = (exc.analyte, exc.unit)
    return _Plan(fraction, None, None, unknown)


class _Parser:
    """Stateful helper for one patient: value sets, patient info, skipped list."""

    def __init__(
        self, raw: RawPatient, vs: ValueSets, validate: ValidateMode = "all", remember: bool = False
    ) -> None:
        self.raw = raw
        self.vs = vs
        self.skipped: list[Skipped] = []
        self.foreign: list[str] = []
        self.unreadable: list[tuple[str, list[str]]] = []
        self.patient = self._patient(raw.patient)
        self.identity = identity_of(raw)
        self.judged: dict[str, bool] = {}  # patient reference -> names another patient
        self.deferred = validate == "selected"
        self.remember = remember  # keep whole verdicts by content (repeat calls for the same patient)
        self.reached_gate = False

    # -- helpers -------------------------------------------------------------------------------
    def _patient(self, resource: JSON) -> PatientInfo:
        gender = resource.get("gender") if isinstance(resource.get("gender"), str) else None
        birth = parse_when(resource.get("birthDate"))
        return PatientInfo(
            ref=_ref(resource),
            gender=gender,
            birth_date=birth.day if birth else None,
        )

    def _belongs_elsewhere(self, resource: JSON) -> bool:
        """Another patient's resource is excluded, listed, and raises gap.other-patient-data (refs.py)."""
        key = other_patient_reference(resource, self.identity, self.judged)
        if key is None:
            return False
        self.skipped.append(Skipped(_ref(resource), f"{key} refers to another patient: not used"))
        self.foreign.append(_ref(resource))
        return True

    def _resolve(self, reference: str) -> str:
        """A reference as ``Type/id``: fullUrls (urn:uuid, absolute) through the Bundle, absolute
        and versioned forms (``.../Condition/x/_history/2``) by their last Type/id."""
        if reference in self.raw.full_urls:
            return self.raw.full_urls[reference]
        match = _TYPE_ID_RE.search(reference)
        return f"{match.group(1)}/{match.group(2)}" if match else reference

    def _unreadable(self, label: str, reason: str, raw: Any) -> None:
        """Skip a record that cannot be read, and note what rule data it names (never silent)."""
        self.skipped.append(Skipped(label, reason))
        names = self.relevance(raw)
        if names:
            self.unreadable.append((label, names))

    def relevance(self, raw: Any) -> list[str]:
        """What data the rules use an unreadable record names (gap.unreadable-data)."""
        return self.vs.relevance(raw, RELEVANT_CONCEPTS)

    def _valid(self, resource: JSON, now: bool = False) -> bool:
        """The validation point: a resource of interest is validated here before it is read
        (``validate="all"``, and always the draft order), or read now and validated when the
        evaluation selects it (``validate="selected"``, cds/fhir/settle.py)."""
        if self.deferred and not now:
            self.reached_gate = True
            return not self._belongs_elsewhere(resource)
        error = validation_error(resource, self.remember)
        if error:
            self._unreadable(_ref(resource), error, resource)
            return False
        return not self._belongs_elsewhere(resource)

    # -- observations --------------------------------------------------------------------------
    def observation(self, resource: JSON) -> ObservationRecord | None:
        codings = codings_of(resource.get("code"))
        kind, code = self._kind_and_code(codings)
        if kind is None or _str(resource.get("status")) not in OBSERVATION_OK:
            return None
        if not self._valid(resource):
            return None
        when = parse_when(resource.get("effectiveDateTime")) or parse_when(
            (resource.get("effectivePeriod") or {}).get("start")
        )
        when = when or parse_when(resource.get("effectiveInstant")) or parse_when(resource.get("issued"))
        ref = _ref(resource)
        if when is None:
            self.skipped.append(Skipped(ref, "no effective date: cannot judge recency"))
            return None
        specimen = (resource.get("specimen") or {}).get("reference")
        if "extension" in resource or "evidence" in resource or "focus" in resource:
            links = tuple(self._resolve(r) for r in _related_references(resource))
        else:
            links = ()
        if kind not in self.vs.analytes:
            quantity = resource.get("valueQuantity")
            unit = None
            if isinstance(quantity, dict):
                raw_unit = (
                    quantity.get("unit") if isinstance(quantity.get("unit"), str) else quantity.get("code")
                )
                unit = raw_unit.strip() if isinstance(raw_unit, str) else None
            return ObservationRecord(
                ref,
                kind,
                code,
                when,
                answer=self._answer(resource),
                ratio=self._plain_number(resource),
                specimen=specimen if isinstance(specimen, str) else None,
                focus=links,
                quantity_unit=unit,
            )
        value, unit_problem = self._quantity(resource, kind)
        uln, lln = self._reference_range(resource, kind, when) if value is not None else (None, None)
        return ObservationRecord(
            ref,
            kind,
            code,
            when,
            value,
            unit_problem,
            uln,
            lln,
            specimen=specimen if isinstance(specimen, str) else None,
            focus=links,
        )

    def _kind_and_code(self, codings: Codings) -> tuple[str | None, str]:
        """The observation kind of a code and its LOINC (or system-less) code, remembered."""
        key = ("kind+code", codings.codes)
        known: tuple[str | None, str] | None = self.vs.memo.get(key)
        if known is None:
            code = next((c for s, c in codings.codes if s in ("loinc", "")), "")
            known = (self.vs.observation_kind(codings), code)
            self.vs.remember(key, known)
        return known

    def _answer(self, resource: JSON) -> Codings | None:
        if "valueCodeableConcept" in resource:
            return Codings.of(resource["valueCodeableConcept"])
        if isinstance(resource.get("valueString"), str):
            return Codings.of(resource["valueString"])
        if isinstance(resource.get("valueBoolean"), bool):
            return Codings.of("positive" if resource["valueBoolean"] else "negative")
        if isinstance(resource.get("valueInteger"), int):
            return Codings.of(str(resource["valueInteger"]))
        return None

    @staticmethod
    def _plain_number(resource: JSON) -> float | None:
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            return float(quantity["value"])
        ratio = resource.get("valueRatio")
        if isinstance(ratio, dict):
            num = (ratio.get("numerator") or {}).get("value")
            den = (ratio.get("denominator") or {}).get("value")
            if isinstance(num, int | float) and isinstance(den, int | float) and den:
                return float(num) / float(den)
        return None

    def _convert(self, kind: str, value: float, quantity: JSON) -> float:
        """Convert a Quantity using its UCUM code first, then its human unit."""
        code, system, unit = quantity.get("code"), quantity.get("system"), quantity.get("unit")
        try:
            key = ("convert", kind, code, system, unit)
            known: tuple[_Plan, str | None] | None = self.vs.memo.get(key)
        except TypeError:  # an unhashable unit field: no memo
            key, known = None, None
        if known is None:
            candidates: list[str | None] = []
            if isinstance(code, str) and system in (UCUM, None):
                candidates.append(code)
            if isinstance(unit, str):
                candidates.append(unit)
            if not candidates:
                candidates.append(None)
            known = (_plan(self.vs.analytes[kind], candidates), candidates[0])
            if key is not None:
                self.vs.remember(key, known)
        plan, first = known
        if plan.fraction:
            fraction = fraction_value(self.vs.analytes[kind], value, first)
            if fraction is not None:
                return fraction
        if plan.affine is not None:
            scale, offset = plan.affine
            return round(value * scale + offset, 6)
        if plan.factor is not None:
            return round(value * plan.factor, 6)
        raise UnitUnrecognized(*plan.unknown)

    def _quantity(self, resource: JSON, kind: str) -> tuple[float | None, str | None]:
        quantity = resource.get("valueQuantity")
        try:
            if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
                return self._convert(kind, float(quantity["value"]), quantity), None
            if kind == "lvef":
                return self._lvef_other(resource), None
            if isinstance(resource.get("valueInteger"), int) and kind == "lvef":
                return float(resource["valueInteger"]), None
        except UnitUnrecognized as exc:
            return None, str(exc)
        return None, f"{kind}: no numeric value"

    def _lvef_other(self, resource: JSON) -> float | None:
        """LVEF as valueString "55-60%" (lower bound), valueRange (low) or valueInteger."""
        if isinstance(resource.get("valueInteger"), int):
            value = float(resource["valueInteger"])
            fraction = fraction_value(self.vs.analytes["lvef"], value, None)
            return fraction if fraction is not None else value
        text = resource.get("valueString")
        if isinstance(text, str):
            match = _LVEF_STRING_RE.match(text)
            if match:
                low = float(match.group(1))
                if "%" not in text:
                    fraction = fraction_value(self.vs.analytes["lvef"], low, None)
                    return fraction if fraction is not None else low
                return low
        value_range = resource.get("valueRange")
        if isinstance(value_range, dict) and isinstance(value_range.get("low"), dict):
            low = value_range["low"]
            if isinstance(low.get("value"), int | float):
                return self._convert("lvef", float(low["value"]), low)
        raise UnitUnrecognized("lvef", None)

    def _reference_range(
        self, resource: JSON, kind: str, when: When | None = None
    ) -> tuple[float | None, float | None]:
        """ULN/LLN from referenceRange: the entry whose appliesTo/age matches this patient's sex and
        age, else the entry without appliesTo; ambiguous (several that disagree) -> none (a gap).
        Ranges that apply to everyone are remembered by content (a lab repeats the same range)."""
        raw = resource.get("referenceRange")
        quantity = resource.get("valueQuantity")
        if type(raw) is not list or type(quantity) is not dict:
            return self._ranges(resource, kind, when)
        try:  # one text for the ranges and the result's unit (only they decide the bounds)
            key = (
                "range",
                kind,
                orjson.dumps([raw, quantity.get("unit"), quantity.get("code"), quantity.get("system")]),
            )
        except (TypeError, orjson.JSONEncodeError):
            return self._ranges(resource, kind, when)
        known: tuple[float | None, float | None] | None = self.vs.memo.get(key)
        if known is not None:  # only ranges that apply to everyone are ever kept (below)
            return known
        known = self._ranges(resource, kind, when)
        if not any(isinstance(r, dict) and (r.get("appliesTo") or r.get("age")) for r in raw):
            self.vs.remember(key, known)
        return known

    def _ranges(self, resource: JSON, kind: str, when: When | None) -> tuple[float | None, float | None]:
        ranges = [r for r in resource.get("referenceRange") or [] if isinstance(r, dict)]
        specific = [r for r in ranges if r.get("appliesTo") or r.get("age")]
        general = [r for r in ranges if not (r.get("appliesTo") or r.get("age"))]
        matching = [r for r in specific if self._range_applies(r, when)]
        unit_source = resource.get("valueQuantity") or {}
        for candidates in (matching, general):
            if not candidates:
                continue
            bounds = {self._range_bounds(r, kind, unit_source) for r in candidates}
            if len(bounds) == 1:
                return next(iter(bounds))
            return None, None  # several entries apply and disagree: ULN unknown, never a guess
        return None, None

    def _range_bounds(self, chosen: JSON, kind: str, unit_source: JSON) -> tuple[float | None, float | None]:
        high = self._bound(chosen.get("high"), kind, unit_source)
        low = self._bound(chosen.get("low"), kind, unit_source)
        if high is None and isinstance(chosen.get("text"), str):
            match = _RANGE_TEXT_RE.match(chosen["text"])
            if match:
                factor_source = {k: unit_source.get(k) for k in ("unit", "code", "system")}
                try:
                    low = self._convert(kind, float(match.group(1)), factor_source)
                    high = self._convert(kind, float(match.group(2)), factor_source)
                except UnitUnrecognized:
                    return None, None
        return high, low

    def _bound(self, bound: Any, kind: str, unit_source: JSON) -> float | None:
        if not isinstance(bound, dict) or not isinstance(bound.get("value"), int | float):
            return None
        has_unit = isinstance(bound.get("unit"), str) or isinstance(bound.get("code"), str)
        source = bound if has_unit else {k: unit_source.get(k) for k in ("unit", "code", "system")}
        try:
            return self._convert(kind, float(bound["value"]), source)
        except UnitUnrecognized:
            return None

    def _range_applies(self, entry: JSON, when: When | None) -> bool:
        """Whether a referenceRange entry's appliesTo (sex: SNOMED or words) and age fit the patient."""
        cues = self.vs.cues
        sexes: set[str] = set()
        other = False
        for applies in entry.get("appliesTo") or []:
            codings = Codings.of(applies)
            found = {
                sex
                for sex in ("male", "female")
                for _s, c in codings.codes
                if (c,) in cues.words(f"sex.{sex}_codes")
            }
            for text in codings.texts:
                found |= {sex for sex in ("male", "female") if text_contains(text, cues.words(f"sex.{sex}"))}
            sexes |= found
            other |= not found
        if other:
            return False  # applies to a group this engine cannot judge (pregnancy, ethnicity...)
        gender = (self.patient.gender or "").lower()
        if sexes and gender not in sexes:
            return False
        age = entry.get("age")
        if isinstance(age, dict):
            birth = self.patient.birth_date
            if birth is None or when is None:
                return False
            day = when.day
            years = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))
            low = (age.get("low") or {}).get("value")
            high = (age.get("high") or {}).get("value")
            if isinstance(low, int | float) and years < low:
                return False
            if isinstance(high, int | float) and years > high:
                return False
        return True

    # -- conditions, procedures, allergies -----------------------------------------------------
    def condition(self, resource: JSON) -> ConditionRecord | None:
        codings = codings_of(resource.get("code"))
        key = ("conditions", codings)
        matched: dict[str, Any] | None = self.vs.memo.get(key)
        if matched is None:  # text matching is a pure function of the codings: remembered
            matched = {n: self.vs.match(n, codings) for n in CONDITION_CONCEPTS}
            self.vs.remember(key, matched)
        concepts = {n for n, m in matched.items() if m in ("code", "text")}
        uncertain = {n for n, m in matched.items() if m == "uncertain"}
        if not concepts and not uncertain:
            return None
        verification = _status_code(resource.get("verificationStatus"))
        if verification in CONDITION_BAD_VERIFICATION:
            return None
        if verification in ("provisional", "differential"):
            # a provisional safety diagnosis (ILD, metastasis) is stated with uncertainty: not
            # positive, reviewed; other concepts keep their plain reading
            doubtful = {n for n in concepts if self.vs.concepts[n].safety}
            uncertain |= doubtful
            concepts -= doubtful
        if not self._valid(resource):
            return None
        onset = parse_when(resource.get("onsetDateTime")) or parse_when(
            (resource.get("onsetPeriod") or {}).get("start")
        )
        return ConditionRecord(
            ref=_ref(resource),
            concepts=frozenset(concepts),
            onset=onset,
            recorded=parse_when(resource.get("recordedDate")),
            clinical_status=_status_code(resource.get("clinicalStatus")),
            text=codings.texts[0] if codings.texts else "",
            text_only=frozenset(n for n in concepts if matched[n] == "text"),
            uncertain=frozenset(uncertain),
            links=tuple(self._resolve(r) for r in _related_references(resource)),
            site="|".join(codings.codes[0])
            if codings.codes
            else " ".join(text_tokens(codings.texts[0]))
            if codings.texts
            else "",
        )

    def procedure(self, resource: JSON) -> ProcedureRecord | None:
        concepts = self.vs.concepts_of(Codings.of(resource.get("code")), PROCEDURE_CONCEPTS)
        status = resource.get("status")
        if not concepts or (status is not None and _str(status) != "completed"):
            return None
        if not self._valid(resource):
            return None
        when = parse_when(resource.get("performedDateTime")) or parse_when(
            (resource.get("performedPeriod") or {}).get("start")
        )
        return ProcedureRecord(_ref(resource), frozenset(concepts), when)

    def allergy(self, resource: JSON) -> AllergyRecord | None:
        codings = Codings.of(resource.get("code"))
        agents = self._agents(codings)[0]
        taxane_class = self.vs.matches("taxane_class_allergy", codings)
        if not agents and not taxane_class:
            return None
        if _status_code(resource.get("verificationStatus")) in CONDITION_BAD_VERIFICATION:
            return None
        if _status_code(resource.get("clinicalStatus")) in ("resolved", "inactive"):
            return None
        if not self._valid(resource):
            return None
        return AllergyRecord(_ref(resource), frozenset(agents), taxane_class)

    # -- medications ---------------------------------------------------------------------------
    def _agents(self, codings: Codings) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(agents counted, items by code, items by name): codes win over names (remembered)."""
        key = ("agents", codings)
        known: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = self.vs.memo.get(key)
        if known is None:
            by_code = self.vs.items_by_code(codings)
            by_name = self.vs.items_by_name(codings)
            known = (self.vs.catalogue.agents_of(by_code or by_name), by_code, by_name)
            self.vs.remember(key, known)
        return known

    def _medication_codings(self, resource: JSON) -> Codings:
        if "medicationCodeableConcept" in resource:
            return codings_of(resource["medicationCodeableConcept"])
        reference = (resource.get("medicationReference") or {}).get("reference")
        display = (resource.get("medicationReference") or {}).get("display")
        medication: JSON | None = None
        if isinstance(reference, str):
            if reference.startswith("#"):
                medication = next(
                    (
                        c
                        for c in resource.get("contained") or []
                        if isinstance(c, dict) and c.get("id") == reference[1:]
                    ),
                    None,
                )
            else:
                medication = self._referenced_medication(reference)
        if medication is None:
            return Codings.of(display) if isinstance(display, str) else Codings((), ())
        base = Codings.of(medication.get("code"))
        codes = list(base.codes)
        texts = list(base.texts)
        # ingredient codes of one Medication name one product: the catalogue reads the set of
        # agents they name as the multi-ingredient product holding exactly them (Phesgo)
        for ingredient in medication.get("ingredient") or []:
            if isinstance(ingredient, dict):
                item = Codings.of(ingredient.get("itemCodeableConcept"))
                codes.extend(item.codes)
                texts.extend(item.texts)
        if isinstance(display, str):
            texts.append(display.lower())
        return Codings(tuple(codes), tuple(texts))

    def _referenced_medication(self, reference: str) -> JSON | None:
        """The Medication a medicationReference names: by the reference as written (``Medication/x``
        or an entry's fullUrl), else by its Type/id as other references are resolved (a versioned
        ``Medication/x/_history/2``, an absolute URL)."""
        found = self.raw.medications.get(reference)
        return found if found is not None else self.raw.medications.get(self._resolve(reference))

    def _note_unresolved_medication(self, resource: JSON) -> None:
        """A medication record naming its drug only by a reference the record does not hold (no
        Medication sent, no display) may be HER2 therapy: dropping it would shift the line of therapy
        silently, so it is skipped as unreadable and raises gap.unreadable-data."""
        ref = resource.get("medicationReference")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if "medicationCodeableConcept" in resource or not isinstance(target, str):
            return
        if isinstance(ref, dict) and isinstance(ref.get("display"), str) and ref["display"].strip():
            return  # named in words: read as written (an unlisted drug is not ours)
        contained = {c.get("id") for c in resource.get("contained") or [] if isinstance(c, dict)}
        if target.startswith("#"):
            resolved = target[1:] in contained
        else:
            resolved = self._referenced_medication(target) is not None
        if resolved:
            return  # resolved: its codes simply name no catalogued drug
        if _str(resource.get("status")) in MED_BAD_STATUS:
            return
        if other_patient_reference(resource, identity_of(self.raw)) is not None:
            return
        label = _ref(resource)
        self.skipped.append(Skipped(label, f"its drug is {target}, which the record does not hold"))
        self.unreadable.append((label, [f"medication {target} (not in the record)"]))

    def medication(self, resource: JSON, *, draft: bool = False) -> MedicationEvent | None:
        rtype = resource["resourceType"]
        codings = self._medication_codings(resource)
        agents, by_code, by_name = self._agents(codings)
        if not agents and not draft:
            self._note_unresolved_medication(resource)
            return None
        status = _str(resource.get("status"))
        if not draft:
            if status in MED_BAD_STATUS and not (
                rtype == "MedicationAdministration" and status == "not-done"
            ):
                return None
            if rtype == "MedicationRequest" and _str(resource.get("intent")) not in REQUEST_EXPOSURE_INTENTS:
                return None
            if rtype == "MedicationDispense" and status in DISPENSE_BAD_STATUS:
                return None
        if not self._valid(resource, now=draft):
            if draft:
                raise InputRejected(self.skipped.pop().reason, origin=DRAFT_ORIGIN)
            return None
        start, end, dose, unit, period, low = self._timing_and_dose(resource)
        given = rtype == "MedicationAdministration" and status in ("completed", "in-progress", "stopped")
        return MedicationEvent(
            ref=_ref(resource),
            source="draft" if draft else MED_SOURCE[rtype],
            items=by_code or by_name,
            agents=agents,
            code_items=by_code,
            name_items=by_name,
            start=start,
            end=end,
            given=given,
            held=rtype == "MedicationAdministration" and status == "not-done",
            dose_value=dose,
            dose_unit=unit,
            dose_low=low,
            period_weeks=period,
            status=status,
            asserted=parse_when(resource.get("dateAsserted")) if rtype == "MedicationStatement" else None,
            text=codings.texts[0] if codings.texts else "",
        )

    def _timing_and_dose(
        self, resource: JSON
    ) -> tuple[When | None, When | None, float | None, str | None, float | None, float | None]:
        """(start, end, dose or range high, unit, period in weeks, range low) of any med resource."""
        rtype = resource["resourceType"]
        start = end = None
        quantity: Any = None
        low_quantity: Any = None
        period: float | None = None
        if rtype == "MedicationAdministration":
            start = parse_when(resource.get("effectiveDateTime"))
            eperiod = resource.get("effectivePeriod") or {}
            start = start or parse_when(eperiod.get("start"))
            end = parse_when(eperiod.get("end"))
            quantity = (resource.get("dosage") or {}).get("dose")
        else:
            if rtype == "MedicationRequest":
                start = parse_when(resource.get("authoredOn"))
                instructions = resource.get("dosageInstruction") or []
            elif rtype == "MedicationDispense":
                start = parse_when(resource.get("whenHandedOver")) or parse_when(resource.get("whenPrepared"))
                instructions = resource.get("dosageInstruction") or []
            else:
                start = parse_when(resource.get("effectiveDateTime"))
                eperiod = resource.get("effectivePeriod") or {}
                start = start or parse_when(eperiod.get("start")) or parse_when(resource.get("dateAsserted"))
                end = parse_when(eperiod.get("end"))
                instructions = resource.get("dosage") or []
            listed = instructions if isinstance(instructions, list) else []
            dosages = [d for d in listed if isinstance(d, dict)]
            quantity, low_quantity, holder = _dose_of(dosages)
            timed = holder if holder is not None else (dosages[0] if dosages else {})
            repeat = ((timed.get("timing") or {}).get("repeat")) or {}
            period = _period_weeks(repeat) if isinstance(repeat, dict) else None
            if start is None and rtype == "MedicationRequest":
                bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
                start = parse_when(bounds.get("start")) if isinstance(bounds, dict) else None
        dose, unit = _quantity_value(quantity)
        low, low_unit = _quantity_value(low_quantity)
        if low is not None and low_unit != unit:
            low = None  # a range whose bounds disagree on the unit is read at its high bound only
        return start, end, dose, unit, period, low

    # -- driver --------------------------------------------------------------------------------
    def run(self, order: JSON | None) -> PatientRecord:
        record = PatientRecord(
            patient=self.patient, skipped=self.skipped, other_patient=self.foreign, unreadable=self.unreadable
        )
        patient_error = validation_error(self.raw.patient, self.remember)
        if patient_error:
            self.skipped.append(Skipped(self.patient.ref, patient_error))
        for number, item in enumerate(self.raw.unreadable, start=1):
            rid = item.get("id") if isinstance(item, dict) else None
            label = (
                f"<no resourceType>/{rid}" if isinstance(rid, str) and rid else f"<unreadable item {number}>"
            )
            reason = (
                "cannot be read: no resourceType"
                if isinstance(item, dict)
                else "cannot be read: not a resource"
            )
            self._unreadable(label, reason, item)
        pendings: list[Pending] = []
        context = self._context() if self.deferred and self.remember else None
        for resource in self.raw.resources:
            if not self.deferred:
                self._read(resource, record)
                continue
            of_interest = resource["resourceType"] in READ_TYPES
            key = _reading_key(context, resource) if context is not None and of_interest else None
            known = _READINGS.get(key) if key is not None else None
            if known is not None:  # read before, in the same patient context: the same outcome
                gate, produced, added_skipped, added_foreign, added_unreadable = known
                if produced is not None:
                    getattr(record, produced[0]).append(produced[1])
                self.skipped.extend(added_skipped)
                self.foreign.extend(added_foreign)
                self.unreadable.extend(added_unreadable)
                if gate:
                    pending = Pending(
                        resource, _ref(resource), produced, added_skipped, added_foreign, added_unreadable
                    )
                    pending.key = key
                    pendings.append(pending)
                continue
            self.reached_gate = False
            skipped, foreign, unreadable = len(self.skipped), len(self.foreign), len(self.unreadable)
            produced = self._read(resource, record)
            if (
                len(self.skipped) == skipped
                and len(self.foreign) == foreign
                and len(self.unreadable) == unreadable
            ):
                added: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
            else:
                added = (self.skipped[skipped:], self.foreign[foreign:], self.unreadable[unreadable:])
            if key is not None:
                if len(_READINGS) >= READINGS_MAX:
                    _READINGS.clear()
                _READINGS[key] = (self.reached_gate, produced, *added)
            if self.reached_gate:  # what reading added, undone if the resource turns out invalid
                ref = produced[1].ref if produced is not None else _ref(resource)  # type: ignore[attr-defined]
                pending = Pending(resource, ref, produced, *added)
                pending.key = key
                pendings.append(pending)
        if self.deferred:
            judge = (lambda r: _judged(r, True)) if self.remember else _judged
            record.settlement = Settlement(pendings, judge, self.relevance)
        if order is not None:
            if not isinstance(order.get("resourceType"), str) or order["resourceType"] != "MedicationRequest":
                raise InputRejected("not a MedicationRequest", origin=DRAFT_ORIGIN)
            record.draft = self.medication(order, draft=True)
            if problem := medication_number_problem(record.draft):
                raise InputRejected(f"draft order: {problem}")
        return record

    def _context(self) -> bytes | None:
        """Everything besides a resource's own content that its reading depends on: who the
        patient is (references), sex and birth date (reference ranges), the Bundle's fullUrls
        (links) and its Medications (medicationReference)."""
        try:
            return orjson.dumps(
                [
                    self.identity.id,
                    sorted(self.identity.urls),
                    self.patient.gender,
                    self.patient.birth_date,
                    sorted(self.raw.full_urls.items()),
                    self.raw.medications,
                ]
            )
        except (TypeError, orjson.JSONEncodeError):
            return None

    def _read(self, resource: JSON, record: PatientRecord) -> tuple[str, object] | None:
        try:
            return self._one(resource, record)
        except READ_ERRORS as exc:
            # never sink the patient, never drop silently: the resource is listed with why
            self._unreadable(_ref(resource), _read_error(exc), resource)
            return None

    def _one(self, resource: JSON, record: PatientRecord) -> tuple[str, object] | None:
        """Extract one resource into the record (or nothing, if it is not of interest); returns
        the record list and record it added. A record holding a number outside the limits
        (cds/fhir/limits.py) is skipped with the reason instead."""
        rtype = resource["resourceType"]
        if rtype == "Observation":
            obs = self.observation(resource)
            if obs:
                problem = _number_problem(obs)
                if problem:
                    record.skipped.append(Skipped(obs.ref, f"{obs.kind} {problem}: not used"))
                    return None
                record.observations.append(obs)
                return "observations", obs
        elif rtype == "Condition":
            cond = self.condition(resource)
            if cond:
                record.conditions.append(cond)
                return "conditions", cond
        elif rtype == "Procedure":
            proc = self.procedure(resource)
            if proc:
                record.procedures.append(proc)
                return "procedures", proc
        elif rtype == "AllergyIntolerance":
            allergy = self.allergy(resource)
            if allergy:
                record.allergies.append(allergy)
                return "allergies", allergy
        elif rtype in MED_TYPES:
            med = self.medication(resource)
            if med:
                problem = medication_number_problem(med)
                if problem:
                    record.skipped.append(Skipped(med.ref, f"{problem}: not used"))
                    return None
                record.medications.append(med)
                return "medications", med
        return None


def _number_problem(obs: ObservationRecord) -> str | None:
    """``first_number_problem`` of a result's numbers, with a quick pass for ordinary values."""
    for value in (obs.value, obs.uln, obs.lln, obs.ratio):
        if value is not None and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # also NaN
            return first_number_problem((obs.value, obs.uln, obs.lln, obs.ratio))
    return None


def _dose_of(dosages: list[JSON]) -> tuple[Any, Any, JSON | None]:
    """(dose or range high, range low, the dosage holding it) from the first doseAndRate entry of
    any dosage that holds a dose (doseQuantity, or doseRange checked at its bounds)."""
    for dosage in dosages:
        entries = dosage.get("doseAndRate")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("doseQuantity"), dict):
                return entry["doseQuantity"], None, dosage
            dose_range = entry.get("doseRange")
            if isinstance(dose_range, dict) and isinstance(dose_range.get("high"), dict):
                low = dose_range.get("low")
                return dose_range["high"], low if isinstance(low, dict) else None, dosage
            if isinstance(dose_range, dict) and isinstance(dose_range.get("low"), dict):
                return dose_range["low"], dose_range["low"], dosage
    return None, None, None


def _quantity_value(quantity: Any) -> tuple[float | None, str | None]:
    if not isinstance(quantity, dict) or isinstance(quantity.get("value"), bool):
        return None, None
    if not isinstance(quantity.get("value"), int | float):
        return None, None
    raw_unit = quantity.get("code") if isinstance(quantity.get("code"), str) else quantity.get("unit")
    return float(quantity["value"]), raw_unit.strip() if isinstance(raw_unit, str) else None


# extension names (last URL segment, lower case, dashes removed) that link to a related condition
RELATED_EXTENSIONS = ("relatedprimarycancercondition", "conditionrelated", "conditiondueto")


def _related_references(resource: JSON) -> tuple[str, ...]:
    """Conditions a Condition/Observation is attributed to: the mCODE relatedPrimaryCancerCondition
    extension (or the core condition-related / dueTo extensions), evidence.detail and focus."""
    refs: list[str] = []
    for ext in resource.get("extension") or []:
        if not isinstance(ext, dict) or not isinstance(ext.get("url"), str):
            continue
        name = ext["url"].rstrip("/").rsplit("/", 1)[-1].lower().replace("-", "")
        if name.endswith(RELATED_EXTENSIONS):
            target = (ext.get("valueReference") or {}).get("reference")
            if isinstance(target, str):
                refs.append(target)
    for evidence in resource.get("evidence") or []:
        for detail in (evidence.get("detail") or []) if isinstance(evidence, dict) else []:
            if isinstance(detail, dict) and isinstance(detail.get("reference"), str):
                refs.append(detail["reference"])
    for focus in resource.get("focus") or []:
        if isinstance(focus, dict) and isinstance(focus.get("reference"), str):
            refs.append(focus["reference"])
    return tuple(dict.fromkeys(refs))


def _period_weeks(repeat: JSON) -> float | None:
    period = repeat.get("period")
    unit = repeat.get("periodUnit")
    frequency = repeat.get("frequency", 1)
    if not isinstance(period, int | float) or not isinstance(frequency, int | float) or frequency <= 0:
        return None
    days = {"d": 1.0, "wk": 7.0, "mo": 30.0, "h": 1 / 24}.get(unit if isinstance(unit, str) else "")
    if days is None:
        return None
    return round(float(period) * days / 7.0 / float(frequency), 3)


def parse_patient(
    raw: RawPatient,
    vs: ValueSets,
    order: JSON | None = None,
    validate: ValidateMode = "all",
    remember: bool = False,
) -> PatientRecord:
    """Extract one patient's records; invalid resources go to ``skipped``. With
    ``validate="selected"`` validation waits for the evaluation (the record's ``settlement``);
    ``remember`` keeps whole validation verdicts by content hash (cds/fhir/validate.py)."""
    return _Parser(raw, vs, validate, remember).run(order)


def to_day(value: date | datetime) -> date:
    """A calendar date from a date or datetime."""
    return value.date() if isinstance(value, datetime) else value

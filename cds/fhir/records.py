"""Small typed clinical records: what the facts layer reads instead of raw FHIR.

Each record keeps the ``ref`` (``Type/id``) of the resource it came from, so every derived fact
can name its provenance. Values are already in canonical units; dates are ``When`` values that
remember whether FHIR gave a date or an instant (clinical-spec §1: a date-only value is compared
as its calendar date).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from cds.fhir.valuesets import Codings
from cds.quick import quick_init

if TYPE_CHECKING:
    from cds.fhir.settle import Settlement


@quick_init
@dataclass(frozen=True, order=True)
class When:
    """A FHIR date/dateTime: the UTC instant it starts at and whether only a date was given."""

    instant: datetime
    date_only: bool = False

    @property
    def day(self) -> date:
        """The calendar date (UTC for instants)."""
        return self.instant.date()

    def not_after(self, as_of: datetime) -> bool:
        """Whether this value is on or before ``as_of`` (date-only values by calendar date)."""
        if self.date_only:
            return self.day <= as_of.date()
        return self.instant <= as_of

    def iso(self) -> str:
        """ISO form for output: a date for date-only values, else the UTC instant."""
        return self.day.isoformat() if self.date_only else self.instant.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PatientInfo:
    """Demographics the rules need."""

    ref: str
    gender: str | None
    birth_date: date | None


@quick_init
@dataclass(frozen=True)
class ObservationRecord:
    """One usable Observation (status final/amended/corrected) of a known kind."""

    ref: str
    kind: str
    code: str
    when: When
    value: float | None = None  # canonical unit, for analytes
    unit_problem: str | None = None  # why a quantitative value is unusable
    uln: float | None = None  # referenceRange.high in the canonical unit
    lln: float | None = None
    answer: Codings | None = None  # valueCodeableConcept / valueString / valueBoolean as text
    ratio: float | None = None  # a plain number for unitless results (ISH ratio, copies)
    specimen: str | None = None
    focus: tuple[str, ...] = ()  # references the result is about (focus, related condition)
    quantity_unit: str | None = None  # the unit of a plain number (ER/PR "%")


@quick_init
@dataclass(frozen=True)
class ConditionRecord:
    """A Condition that belongs to one or more known concepts."""

    ref: str
    concepts: frozenset[str]
    onset: When | None
    recorded: When | None
    clinical_status: str | None
    text: str
    text_only: frozenset[str] = frozenset()  # concepts matched by text only (safety: review)
    uncertain: frozenset[str] = frozenset()  # concepts mentioned only with uncertainty (not positive)
    links: tuple[str, ...] = ()  # conditions this one is related to (mCODE relatedPrimaryCancerCondition)
    site: str = ""  # what the record names (first code, else its text): a new site is a new key

    @property
    def when(self) -> When | None:
        """Onset if given, else the recorded date."""
        return self.onset or self.recorded


@quick_init
@dataclass(frozen=True)
class ProcedureRecord:
    """A completed Procedure of a known concept (breast surgery, hysterectomy...)."""

    ref: str
    concepts: frozenset[str]
    when: When | None


@dataclass(frozen=True)
class AllergyRecord:
    """An active, non-refuted allergy to a known agent or to the taxane class."""

    ref: str
    agents: frozenset[str]
    taxane_class: bool


@quick_init
@dataclass(frozen=True)
class MedicationEvent:
    """One exposure record (administration, dispense, order or statement) or the draft order.

    ``items`` are the catalogue agents/products the record names (codes first, else names);
    ``agents`` the catalogue agents they count as (Phesgo: trastuzumab and pertuzumab).
    """

    ref: str
    source: str  # administration | dispense | request | statement | draft
    items: tuple[str, ...]
    agents: tuple[str, ...]
    code_items: tuple[str, ...]
    name_items: tuple[str, ...]
    start: When | None
    end: When | None
    given: bool  # a dose that was actually given (administration completed/in-progress)
    held: bool  # MedicationAdministration not-done: a held dose, never a dose given
    dose_value: float | None = None  # the dose, or a doseRange's high bound
    dose_unit: str | None = None
    dose_low: float | None = None  # a doseRange's low bound
    period_weeks: float | None = None
    status: str | None = None
    asserted: When | None = None  # MedicationStatement.dateAsserted
    text: str = ""


@quick_init
@dataclass(frozen=True)
class Skipped:
    """A resource that was not used, and why (clinical-spec §3 ``skipped``)."""

    resource: str
    reason: str


@dataclass
class PatientRecord:
    """Everything the facts layer needs about one patient, parsed and validated."""

    patient: PatientInfo
    observations: list[ObservationRecord] = field(default_factory=list)
    conditions: list[ConditionRecord] = field(default_factory=list)
    procedures: list[ProcedureRecord] = field(default_factory=list)
    allergies: list[AllergyRecord] = field(default_factory=list)
    medications: list[MedicationEvent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    draft: MedicationEvent | None = None
    # resources excluded because they name another patient (also in skipped)
    other_patient: list[str] = field(default_factory=list)
    # skipped records that could not be read but name data the rules use: (resource, what it names)
    unreadable: list[tuple[str, list[str]]] = field(default_factory=list)
    # validate="selected": the resources read but not yet validated (cds/fhir/settle.py)
    settlement: Settlement | None = None

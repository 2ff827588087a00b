"""Build one ``PatientFacts`` from a parsed ``PatientRecord`` as of an instant.

Everything dated after as-of is dropped first (the draft order never is); the derivation
modules then run in dependency order: setting -> therapy -> early setting -> labs -> conditions.
A record parsed with ``validate="selected"`` is settled here: the records the facts read
(select.py) are validated, the others screened, and the facts derived again if one was invalid.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from cds.facts.clinical import (
    derive_allergy,
    derive_conditions,
    derive_demographics,
    derive_early,
    derive_hr_status,
    derive_setting,
    febrile_neutropenia,
    safety_text_review,
)
from cds.facts.her2 import derive_her2
from cds.facts.labs import (
    derive_labs,
    derive_lvef,
    derive_weight,
    pregnancy_test_negative,
    pregnancy_test_positive,
    temperature_near_anc,
    unit_problems,
)
from cds.facts.model import PatientFacts
from cds.facts.params import Params
from cds.facts.select import Reads, needed
from cds.facts.therapy import derive_therapy, doses
from cds.fhir.records import ConditionRecord, MedicationEvent, PatientRecord, When
from cds.fhir.valuesets import ValueSets

_EPOCH = When(datetime(1, 1, 1, tzinfo=UTC), True)


def _key(when: When | None, ref: str) -> tuple[datetime, str]:
    return ((when or _EPOCH).instant, ref)


def _in_time(record: PatientRecord, as_of: datetime) -> PatientRecord:
    """The record restricted to data on or before as-of (undated conditions/allergies are kept),
    in a canonical order (date, then resource id) so output never depends on Bundle entry order."""

    def cond_ok(c: ConditionRecord) -> bool:
        when = c.when
        return when is None or when.not_after(as_of)

    def med_ok(m: MedicationEvent) -> bool:
        return m.start is None or m.start.not_after(as_of)

    return PatientRecord(
        patient=record.patient,
        observations=sorted(
            (o for o in record.observations if o.when.not_after(as_of)), key=lambda o: _key(o.when, o.ref)
        ),
        conditions=sorted((c for c in record.conditions if cond_ok(c)), key=lambda c: _key(c.when, c.ref)),
        procedures=sorted(
            (p for p in record.procedures if p.when is None or p.when.not_after(as_of)),
            key=lambda p: _key(p.when, p.ref),
        ),
        allergies=sorted(record.allergies, key=lambda a: a.ref),
        medications=sorted((m for m in record.medications if med_ok(m)), key=lambda m: _key(m.start, m.ref)),
        skipped=record.skipped,
        draft=record.draft,
    )


def build_facts(
    record: PatientRecord, vs: ValueSets, params: Params, as_of: datetime, reads: Reads | None = None
) -> PatientFacts:
    """Derive every fact of clinical-spec §2 for one patient (settling its validation first;
    ``reads``: which agent-keyed facts the rules read, None for all)."""
    while True:
        facts, rec, last_dose = _derive(record, vs, params, as_of)
        settlement = record.settlement
        if settlement is None or not settlement.settle(record, needed(rec, last_dose, params, reads)):
            return facts


def _derive(
    record: PatientRecord, vs: ValueSets, params: Params, as_of: datetime
) -> tuple[PatientFacts, PatientRecord, dict[str, date]]:
    """The facts, the record restricted to as-of they came from, and the last dose per agent."""
    rec = _in_time(record, as_of)
    today = as_of.date()
    prov: dict[str, list[str]] = {}
    obs = rec.observations

    setting = derive_setting(rec, obs, vs)
    if setting.refs:
        prov["setting"] = setting.refs
    # metastasis records that may belong to another primary never drive breast-cancer facts
    own_conditions = [c for c in rec.conditions if c.ref not in setting.foreign]
    metastatic = setting.setting == "metastatic"
    worsened = sorted(
        o.when.day
        for o in obs
        if o.kind == "disease_status" and o.answer is not None and vs.answer_is("worsened", o.answer)
    )
    worsened_refs = [o.ref for o in obs if o.kind == "disease_status"]
    # a metastatic site first recorded after the current regimen began is progression too
    # (therapy.py compares these dates with the current regimen's start)
    worsened = sorted([*worsened, *(day for day, _ref in setting.new_sites)])
    worsened_refs += [ref for _day, ref in setting.new_sites]
    weights = [o for o in obs if o.kind == "weight"]
    weight = derive_weight(obs, today, params, prov)

    # Early-setting surgery first (exposures need the surgery date for "adjuvant").
    all_doses = doses(rec.medications, vs, today, params.days("active_therapy_days"))

    def neoadjuvant(surgery: date) -> tuple[bool, list[str]]:
        before = [d for d in all_doses if d.day <= surgery]
        taxane = [d for d in before if "taxane" in d.classes]
        her2 = [d for d in before if "her2_directed" in d.classes]
        return bool(taxane and her2), [d.event.ref for d in taxane + her2]

    early, surgery = derive_early(rec.procedures, obs, neoadjuvant, today, prov)

    therapy = derive_therapy(
        rec.medications,
        rec.draft,
        vs,
        params,
        as_of,
        setting.since,
        metastatic,
        setting.setting == "early",
        surgery,
        worsened,
        weights,
        weight.kg,
        prov,
    )
    if therapy.progression in ("yes", "no", "unknown"):
        prov["progression"] = worsened_refs + prov.get("lines", [])

    hr_status, hr_low_positive = derive_hr_status(obs, vs, prov)
    facts = PatientFacts(
        her2=derive_her2(obs, vs, params, prov),
        hr_status=hr_status,
        setting=setting.setting,
        metastatic_since=setting.since.isoformat() if setting.since else None,
        lines=therapy.lines,
        progression=therapy.progression,
        exposure=therapy.exposure,
        therapy=therapy.therapy,
        early=early,
        labs=derive_labs(obs, today, therapy.last_dose, prov),
        lvef=derive_lvef(obs, today, therapy.her2_course_start, params, prov),
        weight=weight,
        conditions=derive_conditions(own_conditions, therapy.first_dose, prov),
        allergy=derive_allergy(rec.allergies, vs, prov),
        order=therapy.order,
        data=unit_problems(obs, as_of),
    )
    facts.patient = derive_demographics(
        rec, today, params, pregnancy_test_negative(obs, vs, today, params, prov), prov
    )
    facts.patient.pregnancy_test_positive_recent = pregnancy_test_positive(obs, vs, today, params, prov)
    facts.labs.temperature_c_near_anc = temperature_near_anc(obs, params, prov)
    facts.conditions.febrile_neutropenia = febrile_neutropenia(own_conditions, today, params, prov)
    facts.review.hr_low_positive = hr_low_positive
    if setting.review:
        facts.review.metastasis, facts.review.metastasis_detail = True, setting.review
        prov["review.metastasis"] = setting.review_refs
    if record.unreadable:
        facts.review.unreadable_data = True
        facts.review.unreadable_detail = "; ".join(
            f"{label}: {', '.join(names)}" for label, names in sorted(record.unreadable)
        )
        prov["review.unreadable_data"] = sorted({label for label, _ in record.unreadable})
    if setting.primary_unknown:
        facts.review.metastasis_primary_unknown = True
        facts.review.other_primary = setting.other_primary
        prov["review.metastasis_primary_unknown"] = setting.other_refs
    ild_detail, ild_refs = safety_text_review(rec.conditions, "ild", "ILD/pneumonitis")
    if ild_detail:
        facts.review.ild, facts.review.ild_detail = True, ild_detail
        prov["review.ild"] = ild_refs
    if hr_low_positive:
        prov["review.hr_low_positive"] = prov.get("hr_status", [])
    if facts.data.unit_unrecognized:
        prov["data"] = sorted({o.ref for o in obs if o.unit_problem})
    if record.other_patient:  # whatever their dates: the record itself needs correcting
        foreign = sorted(set(record.other_patient))
        facts.data.other_patient_data = True
        facts.data.other_patient_resources = ", ".join(foreign)
        prov["data.other_patient_data"] = foreign
    if metastatic:
        prov.setdefault("metastatic_since", setting.refs)
    facts.provenance = prov
    return facts, rec, therapy.last_dose

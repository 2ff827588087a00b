"""Clinical facts: setting, metastatic date, HR status, conditions, allergies, early-setting surgery
and residual disease, demographics (clinical-spec §2)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from cds.facts.model import AllergyFacts, ConditionFacts, EarlyFacts, PatientDemographics
from cds.facts.params import Params
from cds.fhir.records import AllergyRecord, ConditionRecord, ObservationRecord, PatientRecord, ProcedureRecord
from cds.fhir.valuesets import Codings, ValueSets

_TNM_RE = re.compile(r"\b(y?)([cp]?)(y?)([cp]?)([TN])\s*(is|mi|x|\d[a-d]?|0)(\s*\(i\+\))?", re.IGNORECASE)
HF_ACTIVE = {None, "active", "recurrence", "relapse"}


@dataclass
class SettingResult:
    """Setting and when metastatic disease was first evidenced."""

    setting: str
    since: date | None
    refs: list[str]


def derive_setting(
    record: PatientRecord, observations: list[ObservationRecord], vs: ValueSets
) -> SettingResult:
    """metastatic / early / none, with metastatic_since = earliest metastatic evidence."""
    breast = [c for c in record.conditions if "breast_cancer" in c.concepts]
    if not breast:
        return SettingResult("none", None, [])
    evidence: list[tuple[date | None, str]] = []
    for c in record.conditions:
        if "metastasis" in c.concepts or "brain_metastases" in c.concepts:
            evidence.append((c.when.day if c.when else None, c.ref))
    for o in observations:
        if o.answer is None:
            continue
        if (o.kind == "stage_group" and _is_stage_iv(o, vs)) or (
            o.kind in ("clinical_m", "pathologic_m") and vs.answer_is("m1", o.answer)
        ):
            evidence.append((o.when.day, o.ref))
    # a breast-cancer Condition whose own text says metastatic counts too (fallback)
    for c in breast:
        if vs.matches("metastasis", _text_only(c.text)):
            evidence.append((c.when.day if c.when else None, c.ref))
    if not evidence:
        return SettingResult("early", None, [c.ref for c in breast])
    dated = [d for d, _ in evidence if d is not None]
    since = min(dated) if dated else None
    return SettingResult("metastatic", since, sorted({r for _, r in evidence}))


def _text_only(text: str) -> Codings:
    return Codings((), (text,))


def _is_stage_iv(o: ObservationRecord, vs: ValueSets) -> bool:
    if o.answer is None:
        return False
    for _system, code in o.answer.codes:
        if code in vs.answers["stage_iv"].codes.get("any", ()):
            return True
    for text in o.answer.texts:
        cleaned = text.lower().replace("stage", "").replace("group", "").strip()
        if cleaned in ("iv", "4", "iva", "ivb", "4a", "4b"):
            return True
    return False


def derive_hr_status(
    observations: list[ObservationRecord], vs: ValueSets, provenance: dict[str, list[str]]
) -> str:
    """positive if the latest ER or PR is positive; negative if both are negative; else unknown."""

    def last(kinds: tuple[str, ...]) -> ObservationRecord | None:
        mine = [o for o in observations if o.kind in kinds and o.answer is not None]
        return max(mine, key=lambda o: (o.when.instant, o.ref)) if mine else None

    er, pr = last(("er", "er_pr")), last(("pr", "er_pr"))
    refs = [o.ref for o in (er, pr) if o is not None]
    if refs:
        provenance["hr_status"] = sorted(set(refs))
    states = [
        "positive"
        if vs.answer_is("positive", o.answer)
        else "negative"
        if vs.answer_is("negative", o.answer)
        else "?"
        for o in (er, pr)
        if o is not None and o.answer is not None
    ]
    if "positive" in states:
        return "positive"
    if er is not None and pr is not None and states == ["negative", "negative"]:
        return "negative"
    return "unknown"


def derive_conditions(
    conditions: list[ConditionRecord],
    first_dose: dict[str, date | None],
    provenance: dict[str, list[str]],
) -> ConditionFacts:
    """ILD (history, before/after each ADC), brain metastases, heart failure, NRH."""
    facts = ConditionFacts()
    ild = [c for c in conditions if "ild" in c.concepts]
    if ild:
        facts.ild_history = True
        provenance["conditions.ild_history"] = [c.ref for c in ild]
        for agent, first in sorted(first_dose.items()):
            since = [c for c in ild if first and c.when and c.when.day >= first]
            before = [c for c in ild if c not in since]
            facts.ild_since_start[agent] = bool(since)
            facts.ild_before_start[agent] = bool(before)
            for name, group in (("ild_since_start", since), ("ild_before_start", before)):
                if group:
                    provenance[f"conditions.{name}.{agent}"] = [c.ref for c in group]
    for name, concept, statuses in (
        ("brain_metastases", "brain_metastases", None),
        ("leptomeningeal", "leptomeningeal", None),
        ("heart_failure", "heart_failure", HF_ACTIVE),
        ("nrh", "nrh", None),
    ):
        hits = [
            c
            for c in conditions
            if concept in c.concepts and (statuses is None or c.clinical_status in statuses)
        ]
        if hits:
            setattr(facts, name, True)
            provenance[f"conditions.{name}"] = [c.ref for c in hits]
    return facts


def derive_allergy(
    allergies: list[AllergyRecord], vs: ValueSets, provenance: dict[str, list[str]]
) -> AllergyFacts:
    """Taxane allergy: to every taxane molecule of the catalogue (paclitaxel and docetaxel), or
    to the class; an allergy to one names the other, which is still usable."""
    facts = AllergyFacts()
    catalogue = vs.catalogue
    molecules: dict[str, str] = {}  # taxane agent -> its allergy group (nab-paclitaxel is paclitaxel)
    for key in catalogue.with_class("taxane"):
        molecules[key] = catalogue.agents[key].allergy_group or key
    groups = sorted(set(molecules.values()))
    allergic = [a for a in allergies if any(k in molecules for k in a.agents)]
    allergic_groups = sorted({molecules[k] for a in allergic for k in a.agents if k in molecules})
    klass = [a for a in allergies if a.taxane_class]
    refs = [a.ref for a in allergic + klass]
    remaining = [g for g in groups if g not in allergic_groups]
    if klass or (allergic_groups and not remaining):
        facts.taxane = True
    elif allergic_groups:
        facts.single_taxane = ", ".join(catalogue.display(g) for g in allergic_groups)
        facts.other_taxane = ", ".join(catalogue.display(g) for g in remaining)
    if refs:
        provenance["allergy"] = sorted(set(refs))
    return facts


def _tnm(text: str) -> list[tuple[str, str, str, bool]]:
    """(prefix, axis, value, isolated-tumour-cells) tuples from text like "ypT1c ypN0(i+)"."""
    out = []
    for m in _TNM_RE.finditer(text):
        prefix = (m.group(1) + m.group(2) + m.group(3) + m.group(4)).lower()
        out.append((prefix, m.group(5).upper(), m.group(6).lower(), bool(m.group(7))))
    return out


def _texts(o: ObservationRecord) -> tuple[str, ...]:
    return o.answer.texts[:1] if o.answer is not None else ()


def _is_yp(o: ObservationRecord) -> bool:
    return any(t[0].startswith("y") for text in _texts(o) for t in _tnm(text))


def derive_early(
    procedures: list[ProcedureRecord],
    observations: list[ObservationRecord],
    neoadjuvant_check: Callable[[date], tuple[bool, list[str]]],
    today: date,
    provenance: dict[str, list[str]],
) -> tuple[EarlyFacts, date | None]:
    """Surgery date, residual disease after neoadjuvant therapy, and high-risk features.

    ``neoadjuvant_check(surgery_date) -> (bool, refs)`` tells whether taxane and HER2-directed
    therapy were given before surgery; it is passed in so this module stays free of medication
    logic. Without a surgery Procedure, a yp-prefixed pathologic T/N implies surgery on its date.
    """
    facts = EarlyFacts()
    surgeries = sorted(
        (p.when.day, p.ref) for p in procedures if "breast_surgery" in p.concepts and p.when is not None
    )
    path_obs = sorted(
        (o for o in observations if o.kind in ("pathologic_t", "pathologic_n") and o.answer is not None),
        key=lambda o: (o.when.instant, o.ref),
    )
    surgery: date | None = None
    refs: list[str] = []
    if surgeries:
        surgery, refs = surgeries[-1][0], [surgeries[-1][1]]
    else:
        yp = [o for o in path_obs if _is_yp(o)]
        if yp:
            surgery, refs = yp[0].when.day, [yp[0].ref]
    if surgery is None:
        return facts, None
    facts.surgery_days_ago = (today - surgery).days
    provenance["early.surgery_days_ago"] = refs
    neo, neo_refs = neoadjuvant_check(surgery)
    facts.neoadjuvant_taxane_her2 = neo
    if neo_refs:
        provenance["early.neoadjuvant_taxane_her2"] = neo_refs
    post = [o for o in path_obs if o.when.day >= surgery or _is_yp(o)]
    residual = review = high_risk = False
    stage_parts: list[str] = []
    for o in post:
        for text in _texts(o):
            for prefix, axis, value, itc in _tnm(text):
                stage_parts.append(f"{prefix}{axis}{value}{'(i+)' if itc else ''}")
                if axis == "T" and value not in ("0", "is", "x"):
                    residual = True
                if axis == "N":
                    if value == "0" and itc:
                        residual = review = True
                    elif value not in ("0", "x"):
                        residual = True
                        high_risk = True
    clinical = [o for o in observations if o.kind in ("clinical_t", "clinical_n") and o.when.day <= surgery]
    for o in clinical:
        for text in _texts(o):
            for _prefix, axis, value, _itc in _tnm(text):
                if (axis == "T" and value.startswith("4")) or (axis == "N" and value[:1] in ("2", "3")):
                    high_risk = True
                    provenance["early.high_risk"] = [o.ref]
    if post:
        provenance["early.residual_disease"] = [o.ref for o in post]
        facts.pathologic_stage = " ".join(dict.fromkeys(stage_parts)) or None
    facts.residual_disease = residual and facts.neoadjuvant_taxane_her2
    facts.residual_review = review and facts.residual_disease
    facts.high_risk = high_risk
    return facts, surgery


def derive_demographics(
    record: PatientRecord,
    today: date,
    params: Params,
    pregnancy_negative: bool,
    provenance: dict[str, list[str]],
) -> PatientDemographics:
    """Gender, age and reproductive potential (female or unknown gender, 12-55, no menopause/surgery)."""
    info = record.patient
    gender = info.gender or "unknown"
    age: int | None = None
    if info.birth_date is not None:
        b = info.birth_date
        age = today.year - b.year - ((today.month, today.day) < (b.month, b.day))
    low, high = params.nums("reproductive_age")
    excluded = [c.ref for c in record.conditions if "postmenopausal" in c.concepts] + [
        p.ref for p in record.procedures if p.concepts & {"hysterectomy", "bilateral_oophorectomy"}
    ]
    potential = gender != "male" and (age is None or low <= age <= high) and not excluded
    provenance["patient"] = [info.ref, *excluded]
    return PatientDemographics(
        gender=gender,
        age_years=age,
        reproductive_potential=potential,
        pregnancy_test_negative_recent=pregnancy_negative,
    )

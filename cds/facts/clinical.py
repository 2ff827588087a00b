"""Clinical facts: setting, metastatic date, HR status, conditions, allergies, early-setting surgery
and residual disease, demographics (clinical-spec §2)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from cds.facts.model import AllergyFacts, ConditionFacts, EarlyFacts, PatientDemographics
from cds.facts.params import Params
from cds.fhir import text as textmod
from cds.fhir.records import AllergyRecord, ConditionRecord, ObservationRecord, PatientRecord, ProcedureRecord
from cds.fhir.text import Cues
from cds.fhir.valuesets import Codings, ValueSets

_TNM_RE = re.compile(r"\b(y?)([cp]?)(y?)([cp]?)([TN])\s*(is|mi|x|\d[a-d]?|0)(\s*\(i\+\))?", re.IGNORECASE)
HF_ACTIVE = {None, "active", "recurrence", "relapse"}


@dataclass
class SettingResult:
    """Setting and when metastatic disease was first evidenced, attributed to the breast primary."""

    setting: str
    since: date | None
    refs: list[str]
    # metastatic evidence counted for the breast cancer: (date, ref)
    evidence: list[tuple[date | None, str]] = field(default_factory=list)
    # metastasis records left out because they may belong (or do belong) to another primary
    foreign: set[str] = field(default_factory=set)
    primary_unknown: bool = False
    other_primary: str | None = None
    other_refs: list[str] = field(default_factory=list)
    review: str | None = None  # why the metastatic evidence needs review (text only, uncertain)
    review_refs: list[str] = field(default_factory=list)
    # the first date each metastatic site was recorded (a site first seen after the current regimen
    # began is progression)
    new_sites: list[tuple[date, str]] = field(default_factory=list)


def _attribution(
    refs: tuple[str, ...], text: str, breast: set[str], others: set[str], vs: ValueSets
) -> str | None:
    """Which primary a metastasis record is linked to: "breast", "other" or None (not linked)."""
    if any(r in breast for r in refs):
        return "breast"
    if any(r in others for r in refs):
        return "other"
    if text and textmod.mention_status(text, vs.cues.words("attribution.breast"), vs.cues) == "positive":
        return "breast"  # "metastatic breast cancer to bone": attributed in its own words
    return None


def derive_setting(
    record: PatientRecord, observations: list[ObservationRecord], vs: ValueSets
) -> SettingResult:
    """metastatic / early / none, with metastatic_since = earliest metastatic evidence.

    Secondary-neoplasm evidence counts for the breast cancer only if it is linked to it, or if no
    other primary malignancy is on record; otherwise the setting is what breast evidence alone
    shows and the primary is flagged unknown (gap.metastasis-primary)."""
    breast = [c for c in record.conditions if "breast_cancer" in c.concepts]
    if not breast:
        return SettingResult("none", None, [])
    breast_refs = {c.ref for c in breast}
    others = [
        c for c in record.conditions if "other_primary_cancer" in c.concepts and c.ref not in breast_refs
    ]
    other_refs = {c.ref for c in others}
    # (date, ref, links, text, coded) of every metastasis record
    candidates: list[tuple[date | None, str, tuple[str, ...], str, bool]] = []
    sites: dict[str, str] = {}
    for c in record.conditions:
        if c.ref in breast_refs or c.ref in other_refs:
            continue
        hits = {"metastasis", "brain_metastases"} & c.concepts
        if hits:
            coded = not hits <= c.text_only
            candidates.append((c.when.day if c.when else None, c.ref, c.links, c.text, coded))
            sites[c.ref] = c.site
    for o in observations:
        if o.answer is None:
            continue
        if (o.kind == "stage_group" and _is_stage_iv(o, vs)) or (
            o.kind in ("clinical_m", "pathologic_m") and vs.answer_is("m1", o.answer)
        ):
            candidates.append((o.when.day, o.ref, o.focus, "", True))
    evidence: list[tuple[date | None, str, bool]] = []
    foreign: set[str] = set()
    unknown: list[str] = []
    for day, ref, links, text, coded in candidates:
        owner = _attribution(links, text, breast_refs, other_refs, vs)
        if owner == "breast" or (owner is None and not others):
            evidence.append((day, ref, coded))
        else:
            foreign.add(ref)
            if owner is None:
                unknown.append(ref)
    # a breast-cancer Condition whose own text says metastatic counts too (text only: review)
    uncertain: list[str] = []
    metastasis = vs.concepts["metastasis"]
    for c in breast:
        status = vs.text_status(metastasis, c.text) if c.text else None
        if status == "positive":
            evidence.append((c.when.day if c.when else None, c.ref, False))
        elif status == "uncertain":
            uncertain.append(c.ref)
    uncertain += [
        c.ref
        for c in record.conditions
        if {"metastasis", "brain_metastases"} & c.uncertain and c.ref not in other_refs
    ]
    result = SettingResult("early", None, sorted(breast_refs), foreign=foreign)
    if unknown:
        result.primary_unknown = True
        result.other_primary = ", ".join(dict.fromkeys(c.text or c.ref for c in others))
        result.other_refs = sorted(other_refs) + sorted(unknown)
    if evidence:
        dated = [d for d, _, _ in evidence if d is not None]
        result.setting = "metastatic"
        result.since = min(dated) if dated else None
        result.refs = sorted({r for _, r, _ in evidence})
        result.evidence = [(d, r) for d, r, _ in evidence]
        first_seen: dict[str, tuple[date, str]] = {}
        for d, r, _ in sorted(evidence, key=lambda e: (e[0] or date.min, e[1])):
            site = sites.get(r)
            if d is not None and site and site not in first_seen:
                first_seen[site] = (d, r)
        result.new_sites = sorted(first_seen.values())
        if not any(coded for _, _, coded in evidence):
            refs = sorted({r for _, r, _ in evidence})
            result.review = f"metastatic disease is recorded only as free text ({', '.join(refs)}): confirm"
            result.review_refs = refs
    elif uncertain:
        refs = sorted(set(uncertain))
        result.review = f"metastasis is mentioned with uncertainty ({', '.join(refs)}): confirm or exclude it"
        result.review_refs = refs
    return result


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


_ORDER = ("negative", "low", "positive")


def _category(value: float, cues: Cues) -> str:
    """ASCO/CAP 2020 for % of stained nuclei: <1 negative, 1-10 low positive, >10 positive."""
    if value < cues.numbers.get("receptors.positive_percent_min", 1.0):
        return "negative"
    return "low" if value <= cues.numbers.get("receptors.low_percent_max", 10.0) else "positive"


def _number(tok: str) -> float | None:
    try:
        return float(tok.replace(",", "."))
    except ValueError:
        return None


def _percents(toks: tuple[str, ...], cues: Cues) -> list[tuple[str, bool]]:
    """For every "N %", "<N %" or "N-M %": the lowest category it allows, and whether it allows two."""
    out: list[tuple[str, bool]] = []
    for i, tok in enumerate(toks):
        if tok != "%" or i == 0 or _number(toks[i - 1]) is None:
            continue
        high = _number(toks[i - 1]) or 0.0
        low, j = high, i - 2
        if j >= 1 and (toks[j],) in cues.words("receptors.range_words") and _number(toks[j - 1]) is not None:
            low, j = _number(toks[j - 1]) or 0.0, j - 2
        if j >= 0 and toks[j] in ("<", "\u2264"):
            low, high = 0.0, high - 1e-9
        cats = sorted({_category(low, cues), _category(high, cues)}, key=_ORDER.index)
        out.append((cats[0], len(cats) > 1))
    return out


def read_receptor(text: str, receptor: str, cues: Cues) -> tuple[str | None, bool]:
    """An ER or PR result written as text: (positive | negative | None, review).

    Read wherever the answer stands ("ER: POSITIVE (95%, strong)"), with ASCO/CAP percentages
    (1-10 % is ER-low positive: positive with review), "ER+"/"PR-" shorthand, and negation cues.
    Contradictions (a "positive" word with <1 %) give None: not known."""
    toks = textmod.tokens(text)
    names = {r: cues.words(f"receptors.{r}") for r in ("er", "pr")}
    spots = sorted(
        (i, i + len(p), r) for r, plist in names.items() for p in plist for i in textmod.find(toks, p)
    )
    segments: list[tuple[int, int]] = []
    if spots:
        # each receptor's part of the string runs from its name to the next other receptor's name
        mine = [sp for sp in spots if sp[2] == receptor]
        for start, _end, _r in mine:
            nxt = next((sp[0] for sp in spots if sp[0] > start and sp[2] != receptor), len(toks))
            segments.append((start, nxt))
        if not mine:
            return None, False
    else:
        segments = [(0, len(toks))]
    words: set[str] = set()
    percents: list[str] = []
    review = False
    for start, end in segments:
        part = " ".join(toks[start:end])
        for label, key in (("low", "low_positive"), ("positive", "positive"), ("negative", "negative")):
            phrases = tuple(p for p in cues.words(f"receptors.{key}") if p not in (("+",), ("-",)))
            if textmod.mention_status(part, phrases, cues) == "positive" and not (
                label == "positive" and "low" in words
            ):
                words.add(label)
        # shorthand right after the receptor's name: ER+, PR-, ER (+)
        for sp in spots:
            if sp[2] == receptor and start <= sp[0] < end:
                after = [t for t in toks[sp[1] : sp[1] + 3] if t not in ("(", ":", "/")]
                if after[:1] == ["+"]:
                    words.add("positive")
                elif after[:1] == ["-"] and not (len(after) > 1 and after[1].replace(".", "").isdigit()):
                    words.add("negative")
        for category, straddles in _percents(toks[start:end], cues):
            review |= straddles
            percents.append(category)
    if "low" in words:
        words.discard("positive")
    if len(words) > 1 or len(set(percents)) > 1:
        return None, True
    word = next(iter(words), None)
    pct = percents[0] if percents else None
    if word and pct:
        if word == "negative" and pct != "negative":
            return None, True
        if word in ("positive", "low") and pct == "negative":
            return None, True
        word = "low" if "low" in (word, pct) else word
    result = word or pct
    if result == "low":
        # ASCO/CAP 2020: "ER low positive" (1-10 %) is reviewed; PgR has no low category
        return "positive", receptor == "er"
    return result, review and result is not None


def _receptor_state(o: ObservationRecord, receptor: str, vs: ValueSets) -> tuple[str | None, bool]:
    """positive / negative / None of one ER/PR result, and whether it needs review (ER-low)."""
    if o.answer is not None:
        for _system, code in o.answer.codes:
            if any(code in c for c in vs.answers["positive"].codes.values()):
                return "positive", False
            if any(code in c for c in vs.answers["negative"].codes.values()):
                return "negative", False
        for text in o.answer.texts:
            state, review = read_receptor(text, receptor, vs.cues)
            if state is not None or review:
                return state, review
    if o.ratio is not None and (o.quantity_unit or "").strip() in ("%", "percent"):
        return read_receptor(f"{o.ratio:g} %", receptor, vs.cues)
    return None, False


def derive_hr_status(
    observations: list[ObservationRecord], vs: ValueSets, provenance: dict[str, list[str]]
) -> tuple[str, bool]:
    """positive if the latest ER or PR is positive; negative if both are negative; else unknown.
    The flag says the positive rests only on a low-positive (1-10 %) result: review."""

    def last(kinds: tuple[str, ...]) -> ObservationRecord | None:
        mine = [o for o in observations if o.kind in kinds and (o.answer is not None or o.ratio is not None)]
        return max(mine, key=lambda o: (o.when.instant, o.ref)) if mine else None

    er, pr = last(("er", "er_pr")), last(("pr", "er_pr"))
    refs = [o.ref for o in (er, pr) if o is not None]
    if refs:
        provenance["hr_status"] = sorted(set(refs))
    states = [_receptor_state(o, name, vs) for o, name in ((er, "er"), (pr, "pr")) if o is not None]
    positives = [review for state, review in states if state == "positive"]
    if positives:
        return "positive", all(positives)
    if er is not None and pr is not None and [s for s, _ in states] == ["negative", "negative"]:
        return "negative", False
    return "unknown", False


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


def safety_text_review(
    conditions: list[ConditionRecord], concept: str, label: str
) -> tuple[str | None, list[str]]:
    """Why the evidence for a safety concept (ILD, metastasis) needs review, if it does: it is found
    only in free text (no coded record), or only mentioned with uncertainty."""
    coded = [c for c in conditions if concept in c.concepts and concept not in c.text_only]
    if coded:
        return None, []
    text_only = [c for c in conditions if concept in c.text_only]
    uncertain = [c for c in conditions if concept in c.uncertain]
    if text_only:
        refs = [c.ref for c in text_only]
        return f"{label} is recorded only as free text ({', '.join(refs)}): confirm the diagnosis", refs
    if uncertain:
        refs = [c.ref for c in uncertain]
        return f"{label} is mentioned with uncertainty ({', '.join(refs)}): confirm or exclude it", refs
    return None, []


def febrile_neutropenia(
    conditions: list[ConditionRecord], today: date, params: Params, provenance: dict[str, list[str]]
) -> bool:
    """An active febrile-neutropenia diagnosis dated within febrile_neutropenia_days."""
    window = params.days("febrile_neutropenia_days")
    hits = [
        c
        for c in conditions
        if "febrile_neutropenia" in c.concepts
        and c.clinical_status in HF_ACTIVE
        and c.when is not None
        and 0 <= (today - c.when.day).days <= window
    ]
    if hits:
        provenance["conditions.febrile_neutropenia"] = [c.ref for c in hits]
    return bool(hits)


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

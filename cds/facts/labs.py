"""Lab, LVEF, weight and pregnancy-test facts (clinical-spec §2 labs, lvef, weight_kg).

Liver tests are multiples of the result's *own* ULN (referenceRange.high), never a constant.
The latest result wins even when its unit is unusable: then the value is unknown and the
unit problem is reported, rather than silently falling back to an older result.
"""

from __future__ import annotations

from datetime import date, datetime

from cds.facts.model import DataFacts, LabFacts, LabValue, LvefFacts, WeightFacts
from cds.facts.params import Params
from cds.fhir.records import ObservationRecord
from cds.fhir.valuesets import ValueSets

LAB_KINDS = ("platelets", "anc", "ast", "alt", "bilirubin")
ULN_KINDS = ("ast", "alt", "bilirubin")


def latest(observations: list[ObservationRecord], kind: str) -> ObservationRecord | None:
    """The latest result of a kind (ties broken by resource ref, for determinism)."""
    mine = [o for o in observations if o.kind == kind]
    return max(mine, key=lambda o: (o.when.instant, o.ref)) if mine else None


def _lab(obs: ObservationRecord | None, kind: str, today: date) -> LabValue:
    if obs is None:
        return LabValue()
    lab = LabValue(age_days=(today - obs.when.day).days, date=obs.when.iso())
    if obs.value is None:
        lab.unit_unrecognized = obs.unit_problem is not None
        return lab
    lab.value = obs.value
    if kind in ULN_KINDS:
        if obs.uln:
            lab.x_uln = round(obs.value / obs.uln, 4)
        else:
            lab.uln_missing = True
    return lab


def derive_labs(
    observations: list[ObservationRecord],
    today: date,
    last_dose: dict[str, date],
    provenance: dict[str, list[str]],
) -> LabFacts:
    """Latest platelets, ANC, AST, ALT, bilirubin, plus platelet recovery and Hy's-law pairing."""
    facts = LabFacts()
    latest_by_kind: dict[str, ObservationRecord] = {}
    for kind in LAB_KINDS:
        obs = latest(observations, kind)
        setattr(facts, kind, _lab(obs, kind, today))
        if obs is not None:
            latest_by_kind[kind] = obs
            provenance[f"labs.{kind}"] = [obs.ref]
    for agent, last in sorted(last_dose.items()):
        since = [
            o for o in observations if o.kind == "platelets" and o.value is not None and o.when.day > last
        ]
        if since:
            low = min(since, key=lambda o: (o.value or 0.0, o.ref))
            facts.platelets_min_since_last_dose[agent] = low.value
            provenance[f"labs.platelets_min_since_last_dose.{agent}"] = [o.ref for o in since]
    transaminases = [latest_by_kind[k] for k in ("ast", "alt") if k in latest_by_kind]
    x_values = [v for v in (facts.ast.x_uln, facts.alt.x_uln) if v is not None]
    if x_values:
        facts.ast_alt_max_x_uln = max(x_values)
        provenance["labs.ast_alt_max_x_uln"] = [o.ref for o in transaminases]
    bili = latest_by_kind.get("bilirubin")
    if transaminases and bili is not None:
        facts.liver_draw_gap_days = min(abs((t.when.day - bili.when.day).days) for t in transaminases)
        provenance["labs.liver_draw_gap_days"] = [*(o.ref for o in transaminases), bili.ref]
    return facts


def derive_lvef(
    observations: list[ObservationRecord],
    today: date,
    regimen_start: date | None,
    params: Params,
    provenance: dict[str, list[str]],
) -> LvefFacts:
    """Latest LVEF, the baseline before the current HER2 regimen, and the drop in points."""
    readings = sorted((o for o in observations if o.kind == "lvef"), key=lambda o: (o.when.instant, o.ref))
    if not readings:
        return LvefFacts()
    last = readings[-1]
    facts = LvefFacts(age_days=(today - last.when.day).days, date=last.when.iso())
    refs = [last.ref]
    if last.value is None:
        facts.unit_unrecognized = last.unit_problem is not None
    else:
        facts.value = last.value
        lln = last.lln if last.lln is not None else params.num("lvef_lower_limit_normal")
        facts.below_lln = last.value < lln
    if regimen_start is not None:  # the baseline exists even when the latest value is unusable
        window = params.days("lvef_interval_days")
        before = [
            o
            for o in readings
            if o.value is not None
            and o.when.day <= regimen_start
            and (regimen_start - o.when.day).days <= window
        ]
        if before:
            base = before[-1]
            facts.baseline = base.value
            facts.baseline_known = True
            if last.value is not None:
                facts.drop = round((base.value or 0.0) - last.value, 3)
            if base.ref != last.ref:
                refs.insert(0, base.ref)
    provenance["lvef"] = refs
    return facts


def derive_weight(
    observations: list[ObservationRecord], today: date, params: Params, provenance: dict[str, list[str]]
) -> WeightFacts:
    """Latest body weight; ``kg`` only when within weight_recency_days."""
    last = latest(observations, "weight")
    if last is None:
        return WeightFacts()
    facts = WeightFacts(age_days=(today - last.when.day).days)
    provenance["weight"] = [last.ref]
    if last.value is None:
        facts.unit_unrecognized = last.unit_problem is not None
    elif facts.age_days is not None and facts.age_days <= params.days("weight_recency_days"):
        facts.kg = last.value
    return facts


def pregnancy_test_negative(
    observations: list[ObservationRecord],
    vs: ValueSets,
    today: date,
    params: Params,
    provenance: dict[str, list[str]],
) -> bool:
    """Whether the latest pregnancy test within pregnancy_test_days is negative."""
    window = params.days("pregnancy_test_days")
    tests = [
        o
        for o in observations
        if o.kind in ("pregnancy_qualitative", "hcg_quantitative") and (today - o.when.day).days <= window
    ]
    if not tests:
        return False
    last = max(tests, key=lambda o: (o.when.instant, o.ref))
    provenance["patient.pregnancy_test_negative_recent"] = [last.ref]
    if last.kind == "hcg_quantitative":
        return last.value is not None and last.value < params.num("hcg_negative_below")
    return last.answer is not None and vs.answer_is("negative", last.answer)


def unit_problems(observations: list[ObservationRecord], as_of: datetime) -> DataFacts:
    """Which *latest* results of each analyte have unusable units (older ones do not matter)."""
    problems: list[str] = []
    kinds = sorted({o.kind for o in observations if o.unit_problem})
    for kind in kinds:
        last = latest(observations, kind)
        if last is not None and last.unit_problem:
            problems.append(f"{last.unit_problem} ({last.ref}, {last.when.iso()})")
    return DataFacts(unit_unrecognized=bool(problems), unit_problems="; ".join(problems) or None)


def pregnancy_test_positive(
    observations: list[ObservationRecord],
    vs: ValueSets,
    today: date,
    params: Params,
    provenance: dict[str, list[str]],
) -> bool:
    """A positive pregnancy test (qualitative positive, or hCG >= hcg_positive_at_least) within
    pregnancy_positive_days, with no negative test after it."""
    window = params.days("pregnancy_positive_days")
    tests = sorted(
        (
            o
            for o in observations
            if o.kind in ("pregnancy_qualitative", "hcg_quantitative") and (today - o.when.day).days <= window
        ),
        key=lambda o: (o.when.instant, o.ref),
    )

    def verdict(o: ObservationRecord) -> str | None:
        if o.kind == "hcg_quantitative":
            if o.value is None:
                return None
            if o.value >= params.num("hcg_positive_at_least"):
                return "positive"
            return "negative" if o.value < params.num("hcg_negative_below") else None
        if o.answer is not None and vs.answer_is("positive", o.answer):
            return "positive"
        if o.answer is not None and vs.answer_is("negative", o.answer):
            return "negative"
        return None

    verdicts = [(o, verdict(o)) for o in tests]
    positives = [i for i, (_o, v) in enumerate(verdicts) if v == "positive"]
    if not positives:
        return False
    last = positives[-1]
    if any(v == "negative" for _o, v in verdicts[last + 1 :]):
        return False
    provenance["patient.pregnancy_test_positive_recent"] = [verdicts[last][0].ref]
    return True


def temperature_near_anc(
    observations: list[ObservationRecord], params: Params, provenance: dict[str, list[str]]
) -> float | None:
    """The highest body temperature (°C) within febrile_pairing_days of the latest ANC."""
    anc = latest(observations, "anc")
    if anc is None:
        return None
    days = params.days("febrile_pairing_days")
    near = [
        o
        for o in observations
        if o.kind == "temperature" and o.value is not None and abs((o.when.day - anc.when.day).days) <= days
    ]
    if not near:
        return None
    hottest = max(near, key=lambda o: (o.value or 0.0, o.ref))
    provenance["labs.temperature_c_near_anc"] = [anc.ref, hottest.ref]
    return hottest.value

"""Medication facts: exposures, metastatic lines, on-drug status, dose levels, the draft order.

All windows and dose levels are parameters (clinical-spec §8). Line counting follows clinical-spec
§2: agents starting within ``regimen_window_days`` of a regimen's start belong to it; a new agent
after that starts a new line, except one taxane for another, another form of the same antibody,
dropping agents, continuing an agent already running, or adding endocrine therapy to ongoing
HER2 therapy without progression.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime

from cds.facts.model import AgentExposure, Exposures, LinesFacts, OrderFacts, TherapyFacts
from cds.facts.params import Params
from cds.fhir.records import MedicationEvent, ObservationRecord
from cds.fhir.valuesets import ValueSets

EXPOSURE_KEYS = (
    "trastuzumab",
    "pertuzumab",
    "tdm1",
    "tdxd",
    "taxane",
    "capecitabine",
    "tucatinib",
    "lapatinib",
    "neratinib",
    "margetuximab",
)
EPSILON = 1e-9  # float noise: 2.4 mg/kg - 5% must be exactly 2.28
HER2_ORDER_AGENTS = ("tdm1", "tdxd", "trastuzumab", "trastuzumab_sc", "pertuzumab", "phesgo")


def add_months(day: date, months: int) -> date:
    """Calendar-month arithmetic, clamped to the month's last day (31 Aug + 6 mo = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Dose:
    """One exposure event reduced to what line counting needs."""

    day: date
    last_day: date
    families: frozenset[str]
    classes: frozenset[str]
    event: MedicationEvent


def doses(events: list[MedicationEvent], vs: ValueSets) -> list[Dose]:
    """Exposure events (not held, not draft, dated) as Doses, sorted by date then resource."""
    out: list[Dose] = []
    for event in events:
        if event.held or event.source == "draft" or event.start is None:
            continue
        families: set[str] = set()
        classes: set[str] = set()
        for key in event.agents:
            agent = vs.agents[key]
            families.update(agent.counts_as)
            classes.update(agent.classes)
        last = event.end.day if event.end else event.start.day
        out.append(
            Dose(event.start.day, max(last, event.start.day), frozenset(families), frozenset(classes), event)
        )
    return sorted(out, key=lambda d: (d.day, d.event.ref))


@dataclass
class Line:
    """One metastatic line of therapy."""

    start: date
    families: set[str]
    classes: set[str]
    last_day: date
    refs: list[str] = field(default_factory=list)


def count_lines(
    met_doses: list[Dose],
    worsened: list[date],
    params: Params,
) -> list[Line]:
    """Group metastatic doses into lines (clinical-spec §2 prior_metastatic_lines)."""
    window = params.days("regimen_window_days")
    active = params.days("active_therapy_days")
    lines: list[Line] = []
    last_seen: dict[str, date] = {}
    for dose in met_doses:
        if not lines:
            lines.append(
                Line(dose.day, set(dose.families), set(dose.classes), dose.last_day, [dose.event.ref])
            )
        else:
            current = lines[-1]
            new = {
                f
                for f in dose.families
                if f not in current.families
                and (f not in last_seen or (dose.day - last_seen[f]).days > active)
            }
            if (
                not new
                or (dose.day - current.start).days <= window
                or (
                    dose.classes <= {"endocrine", "cdk46"}
                    and "her2_directed" in current.classes
                    and not any(current.start < w <= dose.day for w in worsened)
                )
            ):
                current.families |= dose.families
                current.classes |= dose.classes
            else:
                # agents still running (not new) are carried into the new line
                lines.append(Line(dose.day, set(dose.families), set(dose.classes), dose.last_day))
            lines[-1].last_day = max(lines[-1].last_day, dose.last_day)
            lines[-1].refs.append(dose.event.ref)
        for f in dose.families:
            last_seen[f] = max(last_seen.get(f, dose.last_day), dose.last_day)
    return lines


@dataclass
class TherapyResult:
    """Everything therapy-related derived in one pass."""

    exposure: Exposures
    lines: LinesFacts
    therapy: TherapyFacts
    progression: str
    her2_course_start: date | None
    last_tdm1_dose: date | None
    order: OrderFacts


def _exposures(
    all_doses: list[Dose],
    since: date | None,
    surgery: date | None,
    early: bool,
    provenance: dict[str, list[str]],
) -> Exposures:
    exposures = Exposures()
    for key in EXPOSURE_KEYS:
        mine = [d for d in all_doses if key in d.families]
        if not mine:
            continue
        exposure = AgentExposure(
            ever=True,
            metastatic=since is not None and any(d.last_day >= since for d in mine),
            adjuvant=early and surgery is not None and any(d.day > surgery for d in mine),
            doses_given=len(mine),
            first=mine[0].day.isoformat(),
            last=max(d.last_day for d in mine).isoformat(),
        )
        setattr(exposures, key, exposure)
        provenance[f"exposure.{key}"] = [d.event.ref for d in mine]
    if since is not None:
        chemo = [d for d in all_doses if "chemotherapy" in d.classes and d.last_day >= since]
        endo = [d for d in all_doses if "endocrine" in d.classes and d.last_day >= since]
        exposures.chemotherapy_metastatic = bool(chemo)
        exposures.endocrine_metastatic = bool(endo)
        if chemo:
            provenance["exposure.chemotherapy_metastatic"] = [d.event.ref for d in chemo]
        if endo:
            provenance["exposure.endocrine_metastatic"] = [d.event.ref for d in endo]
    return exposures


def _weight_at(day: date, weights: list[ObservationRecord]) -> float | None:
    usable = [w for w in weights if w.value is not None]
    if not usable:
        return None
    closest = min(usable, key=lambda w: (abs((w.when.day - day).days), w.ref))
    return closest.value


def _mg_per_kg(event: MedicationEvent, weights: list[ObservationRecord]) -> float | None:
    if event.dose_value is None or event.dose_unit is None or event.start is None:
        return None
    unit = event.dose_unit.lower().replace(" ", "")
    if unit in ("mg/kg", "mg/kg{dose}"):
        return event.dose_value
    if unit == "mg":
        kg = _weight_at(event.start.day, weights)
        return round(event.dose_value / kg, 4) if kg else None
    return None


def fit_level(dose: float, levels: list[float], tolerance_pct: float) -> tuple[str, int | None]:
    """Where a dose sits against a drug's levels: at-level (1-based), above-max, between, below-min."""
    for index, level in enumerate(levels, start=1):
        if abs(dose - level) <= level * tolerance_pct / 100.0 + EPSILON:  # boundaries are inclusive
            return "at-level", index
    if dose > max(levels) * (1 + tolerance_pct / 100.0) + EPSILON:
        return "above-max", None
    if dose < min(levels) * (1 - tolerance_pct / 100.0) - EPSILON:
        return "below-min", None
    return "between-levels", None


def _order_levels(agent: str, period_weeks: float | None, params: Params) -> tuple[str, list[float]]:
    """(basis, levels): basis is "mg/kg" or "mg"; trastuzumab levels depend on the schedule."""
    if agent == "tdm1":
        return "mg/kg", params.nums("tdm1_dose_levels_mg_per_kg")
    if agent == "tdxd":
        return "mg/kg", params.nums("tdxd_dose_levels_mg_per_kg")
    if agent == "trastuzumab":
        q3w, weekly = (
            params.nums("trastuzumab_q3w_doses_mg_per_kg"),
            params.nums("trastuzumab_weekly_doses_mg_per_kg"),
        )
        if period_weeks is not None and abs(period_weeks - 3) < 0.2:
            return "mg/kg", q3w
        if period_weeks is not None and abs(period_weeks - 1) < 0.2:
            return "mg/kg", weekly
        return "mg/kg", sorted(set(q3w + weekly), reverse=True)
    if agent == "pertuzumab":
        return "mg", params.nums("pertuzumab_doses_mg")
    if agent == "trastuzumab_sc":
        return "mg", params.nums("trastuzumab_sc_doses_mg")
    return "mg", params.nums("phesgo_doses_mg")


def _order_facts(
    draft: MedicationEvent,
    vs: ValueSets,
    params: Params,
    recent_weight: float | None,
    last_levels: dict[str, int | None],
    course_doses: dict[str, int],
) -> OrderFacts:
    order = OrderFacts(present=True)
    her2_by_code = [a for a in draft.code_agents if a in HER2_ORDER_AGENTS]
    her2_by_name = [a for a in draft.name_agents if a in HER2_ORDER_AGENTS]
    if her2_by_code and her2_by_name and set(her2_by_code) != set(her2_by_name):
        order.name_conflict = True
        order.agent = "ambiguous"
        order.her2_directed = True
        return order
    agents = her2_by_code or her2_by_name
    if len(set(agents)) > 1:
        order.name_conflict = True
        order.agent = "ambiguous"
        order.her2_directed = True
        return order
    if not agents:
        order.agent = "other" if not draft.agents else draft.agents[0]
        order.her2_directed = any("her2_directed" in vs.agents[a].classes for a in draft.agents)
        return order
    agent = agents[0]
    order.agent = agent
    order.her2_directed = True
    order.cycle_number = course_doses.get(agent, 0) + 1
    basis, levels = _order_levels(agent, draft.period_weeks, params)
    tolerance = params.num("dose_tolerance_pct")
    unit = (draft.dose_unit or "").lower().replace(" ", "")
    dose: float | None = None
    if draft.dose_value is None:
        order.dose_fit = "unknown"
        return order
    if basis == "mg/kg":
        if unit in ("mg/kg", "mg/kg{dose}"):
            dose = draft.dose_value
        elif unit == "mg":
            order.dose_mg = draft.dose_value
            if recent_weight:
                dose = round(draft.dose_value / recent_weight, 4)
            else:
                order.needs_weight = True
        else:
            order.unit_unrecognized = True
        order.dose_mg_per_kg = dose
    else:
        if unit == "mg":
            dose = draft.dose_value
            order.dose_mg = dose
        else:
            order.unit_unrecognized = True
    if dose is None:
        order.dose_fit = "unknown"
        return order
    fit, level = fit_level(dose, levels, tolerance)
    order.dose_fit = fit  # type: ignore[assignment]
    order.dose_level = level
    if fit != "at-level":
        for other in HER2_ORDER_AGENTS:
            if other == agent or (
                other in ("trastuzumab_sc", "phesgo") and agent in ("trastuzumab", "pertuzumab")
            ):
                continue
            other_basis, other_levels = _order_levels(other, None, params)
            if other_basis == basis and fit_level(dose, other_levels, tolerance)[0] == "at-level":
                order.matches_other_agent = other
                break
    last = last_levels.get(agent)
    if agent in ("tdm1", "tdxd") and last is not None and last > 1:
        ordered_level = level if level is not None else (0 if fit == "above-max" else None)
        if (ordered_level is not None and ordered_level < last) or (
            ordered_level is None and dose > levels[last - 1] * (1 + tolerance / 100.0)
        ):
            order.reescalation = True
    return order


def derive_therapy(
    events: list[MedicationEvent],
    draft: MedicationEvent | None,
    vs: ValueSets,
    params: Params,
    as_of: datetime,
    since: date | None,
    metastatic: bool,
    early: bool,
    surgery: date | None,
    worsened: list[date],
    weights: list[ObservationRecord],
    recent_weight: float | None,
    provenance: dict[str, list[str]],
) -> TherapyResult:
    """All medication-derived facts for one patient as of ``as_of`` (events already as-of filtered)."""
    today = as_of.date()
    active_days = params.days("active_therapy_days")
    all_doses = doses(events, vs)
    exposure = _exposures(all_doses, since, surgery, early, provenance)
    # An exposure without any date cannot be placed in a line: it still counts as given (so "no
    # prior T-DXd" cannot pass), and the lines are unknown (fail safe: no line-based recommendation).
    undated = [e for e in events if e.start is None and not e.held and e.source != "draft" and e.agents]
    undated_keys = sorted({k for e in undated for a in e.agents for k in vs.agents[a].counts_as})
    for key in undated_keys:
        if key in EXPOSURE_KEYS:
            getattr(exposure, key).ever = True
            provenance.setdefault(f"exposure.{key}", []).extend(e.ref for e in undated if key in e.agents)

    # -- lines and early relapse ----------------------------------------------------------------
    lines_facts = LinesFacts()
    if undated:
        lines_facts.undated_therapy = True
        lines_facts.undated_agents = ", ".join(undated_keys)
        provenance["lines.undated_therapy"] = [e.ref for e in undated]
    progression = "not-applicable"
    if metastatic and (since is None or undated):
        lines_facts.known = False
    elif metastatic and since is not None:
        met = [d for d in all_doses if d.day >= since]
        lines = count_lines(met, worsened, params)
        pre = [d for d in all_doses if d.day < since]
        adj_tras = [d for d in pre if "trastuzumab" in d.families]
        if adj_tras:
            months = params.days(
                "early_relapse_months_pertuzumab"
                if any("pertuzumab" in d.families for d in pre)
                else "early_relapse_months"
            )
            last_adj = max(d.last_day for d in adj_tras)
            lines_facts.early_relapse = since <= add_months(last_adj, months)
            if lines_facts.early_relapse:
                provenance["lines.early_relapse"] = [d.event.ref for d in adj_tras]
        adj_chemo = [d for d in pre if "chemotherapy" in d.classes]
        if adj_chemo:
            last_chemo = max(d.last_day for d in adj_chemo)
            exposure.adjuvant_chemo_relapse = since <= add_months(
                last_chemo, params.days("adjuvant_chemo_relapse_months")
            )
            provenance["exposure.adjuvant_chemo_relapse"] = [d.event.ref for d in adj_chemo]
        lines_facts.prior_metastatic = len(lines)
        lines_facts.effective = len(lines) + (1 if lines_facts.early_relapse else 0)
        if lines:
            current = lines[-1]
            lines_facts.last_her2_directed = "her2_directed" in current.classes
            lines_facts.current_regimen = ", ".join(sorted(current.families))
            lines_facts.current_start = current.start.isoformat()
            lines_facts.current_active = (today - current.last_day).days <= active_days
            provenance["lines"] = [ref for line in lines for ref in line.refs]
            if any(current.start < w for w in worsened):
                progression = "yes"
            elif lines_facts.current_active:
                progression = "no"
            else:
                progression = "unknown"
        elif lines_facts.early_relapse:
            lines_facts.last_her2_directed = True
            progression = "yes"

    # -- on-drug status ---------------------------------------------------------------------------
    therapy = TherapyFacts()
    recent = [d for d in all_doses if (today - d.last_day).days <= active_days]
    draft_families: set[str] = set()
    if draft is not None:
        for key in draft.agents:
            draft_families.update(vs.agents[key].counts_as)
    for key in ("tdm1", "tdxd", "trastuzumab", "pertuzumab"):
        on = any(key in d.families for d in recent) or key in draft_families
        setattr(therapy, f"on_{key}", on)
        if on:
            provenance[f"therapy.on_{key}"] = [d.event.ref for d in recent if key in d.families] + (
                [draft.ref] if draft is not None and key in draft_families else []
            )
    her2_families = {
        "tdm1",
        "tdxd",
        "trastuzumab",
        "pertuzumab",
        "tucatinib",
        "lapatinib",
        "neratinib",
        "margetuximab",
    }
    therapy.on_her2_directed = bool(
        any(d.families & her2_families for d in recent) or draft_families & her2_families
    )

    # -- dose levels of the last given dose ------------------------------------------------------------
    last_levels: dict[str, int | None] = {}
    tolerance = params.num("dose_tolerance_pct")
    last_tdm1_dose: date | None = None
    for key, levels_name in (("tdm1", "tdm1_dose_levels_mg_per_kg"), ("tdxd", "tdxd_dose_levels_mg_per_kg")):
        given = [d for d in all_doses if key in d.families and d.event.given]
        if key == "tdm1":
            therapy.tdm1_started = bool(given)
            last_tdm1_dose = given[-1].day if given else None
        if not given:
            continue
        mgkg = _mg_per_kg(given[-1].event, weights)
        if mgkg is None:
            continue
        levels = params.nums(levels_name)
        _fit, level = fit_level(mgkg, levels, tolerance)
        last_levels[key] = level
        setattr(therapy, f"{key}_dose_level", level)
        setattr(therapy, f"{key}_at_lowest_level", level == len(levels))
        provenance[f"therapy.{key}_dose_level"] = [given[-1].event.ref]

    # -- current course (for LVEF baseline and cycle counts) -----------------------------------------
    her2_doses = [d for d in all_doses if d.families & her2_families]
    course_start: date | None = None
    course_doses: dict[str, int] = {}
    if her2_doses and (today - her2_doses[-1].last_day).days <= active_days:
        course = [her2_doses[-1]]
        for dose in reversed(her2_doses[:-1]):
            if (course[0].day - dose.last_day).days > active_days:
                break
            course.insert(0, dose)
        course_start = course[0].day
        if metastatic and lines_facts.current_start and lines_facts.last_her2_directed:
            course_start = max(course_start, date.fromisoformat(lines_facts.current_start))
        for key in HER2_ORDER_AGENTS:
            course_doses[key] = sum(1 for d in course if key in d.families or key in d.event.agents)
        therapy.tdm1_doses_in_course = sum(1 for d in course if "tdm1" in d.families)
        therapy.hp_doses_in_course = sum(1 for d in course if d.families & {"trastuzumab", "pertuzumab"})
    elif draft is not None and draft_families & her2_families:
        course_start = today

    if draft is not None:
        order = _order_facts(draft, vs, params, recent_weight, last_levels, course_doses)
        provenance["order"] = [draft.ref]
    else:
        order = OrderFacts()
    return TherapyResult(exposure, lines_facts, therapy, progression, course_start, last_tdm1_dose, order)

"""Medication facts per catalogue agent: exposures, metastatic lines, on-drug status, dose levels,
the draft order.

Every medication resource gives exposure (administrations, dispenses, statements, orders). All
windows are parameters (clinical-spec §8); agents, their classes, line groups and dose levels
come from the drug catalogue, so nothing here names a drug. Line counting follows clinical-spec
§2: agents starting within ``regimen_window_days`` of a regimen's start belong to it; a new agent
after that starts a new line, except one agent of the same line group for another (one taxane for
another), another form of the same antibody (products count as their agents), dropping agents,
continuing an agent already running, or adding endocrine therapy to ongoing HER2 therapy without
progression.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime

from cds.facts.model import AgentExposure, Exposures, LinesFacts, OrderFacts, TherapyFacts
from cds.facts.params import Params
from cds.fhir.records import MedicationEvent, ObservationRecord
from cds.fhir.valuesets import ValueSets
from cds.knowledge.catalogue import Catalogue, DoseSpec
from cds.quick import quick_init

EPSILON = 1e-9  # float noise: 2.4 mg/kg - 5% must be exactly 2.28
HER2 = "her2_directed"
ACTIVE_STATEMENT = {"active", "intended", "on-hold"}
PER_KG_UNITS = ("mg/kg", "mg/kg{dose}")
# which records count a dose, in order of preference (an administration is the dose itself)
DOSE_SOURCES = ("administration", "request", "dispense")


def add_months(day: date, months: int) -> date:
    """Calendar-month arithmetic, clamped to the month's last day (31 Aug + 6 mo = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@quick_init
@dataclass(frozen=True)
class Dose:
    """One exposure record reduced to what line counting needs."""

    day: date
    last_day: date
    agents: frozenset[str]
    families: frozenset[str]  # line groups of the agents
    classes: frozenset[str]
    event: MedicationEvent


def _ongoing_statement(event: MedicationEvent, today: date, active_days: int) -> bool:
    """An active statement with no end (or an end after as-of), asserted or effective within
    ``active_therapy_days``: the patient is taking the drug now."""
    if event.source != "statement" or event.status not in ACTIVE_STATEMENT or event.start is None:
        return False
    if event.end is not None and event.end.day <= today:
        return False
    anchor = max(event.start.day, event.asserted.day if event.asserted else event.start.day)
    return (today - anchor).days <= active_days


def doses(
    events: list[MedicationEvent], vs: ValueSets, today: date | None = None, active_days: int = 0
) -> list[Dose]:
    """Exposure events (not held, not draft, dated) as Doses, sorted by date then resource. An
    ongoing statement lasts until as-of."""
    catalogue = vs.catalogue
    out: list[Dose] = []
    for event in events:
        if event.held or event.source == "draft" or event.start is None:
            continue
        known = vs.memo.get(("dose-agents", event.agents))
        if known is None:  # the catalogue's reading of an agent list, remembered
            agents = frozenset(a for a in event.agents if a in catalogue.agents)
            found: set[str] = set()
            for key in agents:
                found.update(catalogue.agents[key].classes)
            known = (agents, frozenset(catalogue.line_group(a) for a in agents), frozenset(found))
            vs.remember(("dose-agents", event.agents), known)
        agents, families, classes = known
        if not agents:
            continue
        last = event.end.day if event.end else event.start.day
        if today is not None:
            last = min(last, today)
            if _ongoing_statement(event, today, active_days):
                last = today
        out.append(Dose(event.start.day, max(last, event.start.day), agents, families, classes, event))
    return sorted(out, key=lambda d: (d.day, d.event.ref))


def doses_by_agent(all_doses: list[Dose]) -> dict[str, list[Dose]]:
    """Each agent's doses in the order of ``all_doses``: one pass instead of one per catalogue agent."""
    index: dict[str, list[Dose]] = {}
    for dose in all_doses:
        for agent in dose.agents:
            index.setdefault(agent, []).append(dose)
    return index


def counted_doses(all_doses: list[Dose], agent: str) -> list[Dose]:
    """The doses of an agent that count as doses given, one per day: administrations when there
    are any, else the orders (per-cycle orders), else dispenses. Statements never count doses."""
    mine = [d for d in all_doses if agent in d.agents]
    for source in DOSE_SOURCES:
        chosen = [
            d for d in mine if d.event.source == source and (source != "administration" or d.event.given)
        ]
        if chosen:
            by_day: dict[date, Dose] = {}
            for dose in chosen:
                by_day.setdefault(dose.day, dose)
            return [by_day[day] for day in sorted(by_day)]
    return []


@dataclass
class Line:
    """One metastatic line of therapy."""

    start: date
    families: set[str]
    classes: set[str]
    last_day: date
    refs: list[str] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)


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
            lines[-1].agents |= dose.agents
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
                    and HER2 in current.classes
                    and not any(current.start < w <= dose.day for w in worsened)
                )
            ):
                current.families |= dose.families
                current.classes |= dose.classes
                current.agents |= dose.agents
            else:
                # agents still running (not new) are carried into the new line
                lines.append(Line(dose.day, set(dose.families), set(dose.classes), dose.last_day))
                lines[-1].agents |= dose.agents
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
    first_dose: dict[str, date | None]  # per catalogue agent: the first exposure record
    last_dose: dict[str, date]  # per agent: the last dose given
    order: OrderFacts


def _exposures(
    all_doses: list[Dose],
    per_agent: dict[str, list[Dose]],
    catalogue: Catalogue,
    since: date | None,
    surgery: date | None,
    early: bool,
    provenance: dict[str, list[str]],
) -> Exposures:
    exposures = Exposures()
    for key in catalogue.agent_ids():
        mine = per_agent.get(key)
        if not mine:
            continue
        exposure = AgentExposure(
            ever=True,
            metastatic=since is not None and any(d.last_day >= since for d in mine),
            adjuvant=early and surgery is not None and any(d.day > surgery for d in mine),
            doses_given=len(counted_doses(mine, key)),
            first=mine[0].day.isoformat(),
            last=max(d.last_day for d in mine).isoformat(),
        )
        exposures.set_agent(key, exposure)
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


def _in_basis(
    value: float | None, unit: str | None, basis: str, weight: float | None
) -> tuple[float | None, str | None]:
    """A dose in the levels' basis: (value, problem). mg/kg from mg needs a weight; a fixed-dose
    product is checked in mg only, never per kg."""
    if value is None:
        return None, "unknown"
    clean = (unit or "").lower().replace(" ", "")
    if basis == "mg/kg":
        if clean in PER_KG_UNITS:
            return value, None
        if clean == "mg":
            return (round(value / weight, 4), None) if weight else (None, "needs-weight")
        return None, "unit"
    if clean == "mg":
        return value, None
    return None, "unit"


def _dose_words(
    value: float | None, unit: str | None, basis: str, in_basis: float | None, weight: float | None
) -> str:
    """The ordered dose as written, with its conversion when one was made ("420 mg = 6 mg/kg at
    70 kg"), so a card never shows a blank where the order held a dose."""
    if value is None:
        return "no dose"
    written = f"{value:g} {unit or '(no unit)'}"
    clean = (unit or "").lower().replace(" ", "")
    if in_basis is not None and basis != clean and weight:
        return f"{written} = {round(in_basis, 2):g} {basis} at {weight:g} kg"
    return written


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


def _order_item(draft: MedicationEvent, catalogue: Catalogue) -> tuple[str | None, str | None]:
    """(item to dose-check, conflict): the ordered product, or why the engine will not choose one.

    Code and text naming different HER2 agents is a conflict; so is one order naming two HER2
    agents that no single catalogue product holds. A product with its own fixed doses (Phesgo)
    is preferred over its ingredients' generic entries."""
    code_her2 = {a for a in catalogue.agents_of(draft.code_items) if HER2 in catalogue.agents[a].classes}
    name_her2 = {a for a in catalogue.agents_of(draft.name_items) if HER2 in catalogue.agents[a].classes}
    if code_her2 and name_her2 and code_her2 != name_her2:
        return None, "ambiguous"
    items = [i for i in draft.items if set(catalogue.items[i].agents) & (code_her2 or name_her2)]
    if not items:
        return None, None
    with_dose = [i for i in items if catalogue.items[i].dose is not None and catalogue.items[i].is_product]
    if with_dose:
        return with_dose[0], None
    agents = set(catalogue.agents_of(items))
    if len(agents) > 1:
        return None, "ambiguous"
    return next(iter(agents)), None


def _order_facts(
    draft: MedicationEvent,
    catalogue: Catalogue,
    params: Params,
    recent_weight: float | None,
    last_levels: dict[str, int | None],
    course_doses: dict[str, int],
) -> OrderFacts:
    order = OrderFacts(present=True)
    order.agents = {a: True for a in draft.agents}
    order.her2_directed = any(HER2 in catalogue.agents[a].classes for a in draft.agents)
    item, conflict = _order_item(draft, catalogue)
    if conflict:
        order.name_conflict = True
        order.agent = conflict
        order.her2_directed = True
        return order
    if item is None:
        order.agent = "other" if not draft.agents else draft.agents[0]
        order.product = draft.items[0] if draft.items else None
        spec = catalogue.dose_of(order.agent) if draft.agents else None
        if spec is None:
            return order
        item = order.agent
    entry = catalogue.items[item]
    order.agent = item if len(entry.agents) > 1 else entry.agents[0]
    order.product = next((i for i in draft.items if i == item or item in catalogue.items[i].agents), item)
    order.cycle_number = max((course_doses.get(a, 0) for a in entry.agents), default=0) + 1
    spec = catalogue.dose_of(item)
    if spec is None:
        return order
    levels = spec.levels_for(draft.period_weeks)
    order.levels = "/".join(f"{v:g}" for v in levels) + f" {spec.basis}"
    tolerance = params.num("dose_tolerance_pct")
    dose, problem = _in_basis(draft.dose_value, draft.dose_unit, spec.basis, recent_weight)
    unit = (draft.dose_unit or "").lower().replace(" ", "")
    if unit == "mg":
        order.dose_mg = draft.dose_value
    if spec.basis == "mg/kg":
        order.dose_mg_per_kg = dose
    order.dose_ordered = _dose_words(draft.dose_value, draft.dose_unit, spec.basis, dose, recent_weight)
    order.needs_weight = problem == "needs-weight"
    order.unit_unrecognized = problem == "unit"
    if dose is None:
        order.dose_fit = "unknown"
        return order
    fit, level = fit_level(dose, levels, tolerance)
    order.dose_fit = fit  # type: ignore[assignment]
    order.dose_level = level
    low, _ = _in_basis(draft.dose_low, draft.dose_unit, spec.basis, recent_weight)
    if low is not None:
        order.dose_low_fit = fit_level(low, levels, tolerance)[0]  # type: ignore[assignment]
    if fit != "at-level":
        order.matches_other_agent = _other_agent_fit(dose, spec.basis, item, catalogue, tolerance)
    if spec.reductions:
        last = last_levels.get(entry.agents[0])
        order.reescalation = _reescalation(dose, fit, level, last, spec, tolerance)
    return order


def _other_agent_fit(
    dose: float, basis: str, item: str, catalogue: Catalogue, tolerance: float
) -> str | None:
    """Another HER2-directed agent or product whose level the dose fits (name confusion). Forms of
    the ordered agents (Phesgo for pertuzumab) are not "another drug"."""
    mine = set(catalogue.items[item].agents)
    # agents given together as one fixed-dose product (Phesgo) are partners, not look-alikes
    for product in catalogue.products.values():
        if len(product.agents) > 1 and mine & set(product.agents):
            mine |= set(product.agents)
    for other in sorted(catalogue.items):
        entry = catalogue.items[other]
        if (
            other == item
            or set(entry.agents) & mine
            or not any(HER2 in catalogue.agents[a].classes for a in entry.agents)
        ):
            continue
        spec = catalogue.dose_of(other)
        if spec is None or spec.basis != basis or (entry.is_product and entry.dose is None):
            continue
        if fit_level(dose, spec.all_levels(), tolerance)[0] == "at-level":
            return other
    return None


def _reescalation(
    dose: float, fit: str, level: int | None, last: int | None, spec: DoseSpec, tolerance: float
) -> bool:
    """An order above the last reduced level of the agent (never re-escalate after a reduction)."""
    if last is None or last <= 1:
        return False
    ordered = level if level is not None else (0 if fit == "above-max" else None)
    if ordered is not None:
        return ordered < last
    return dose > spec.levels[last - 1] * (1 + tolerance / 100.0)


def _dose_levels(
    per_agent: dict[str, list[Dose]],
    catalogue: Catalogue,
    weights: list[ObservationRecord],
    tolerance: float,
    therapy: TherapyFacts,
    provenance: dict[str, list[str]],
) -> dict[str, int | None]:
    """Level of the last dose per agent with reduction levels: administrations when present,
    else the orders' dose (clinical-spec §10.4)."""
    last_levels: dict[str, int | None] = {}
    for key in catalogue.agent_ids():
        spec = catalogue.agents[key].dose
        if spec is None or not spec.reductions:
            continue
        mine = [d for d in per_agent.get(key, ()) if d.event.dose_value is not None]
        given = [d for d in mine if d.event.source == "administration" and d.event.given]
        chosen = given or [d for d in mine if d.event.source == "request"]
        if not chosen:
            continue
        event = chosen[-1].event
        assert event.start is not None
        weight = _weight_at(event.start.day, weights)
        value, _ = _in_basis(event.dose_value, event.dose_unit, spec.basis, weight)
        if value is None:
            continue
        _fit, level = fit_level(value, spec.levels, tolerance)
        last_levels[key] = level
        therapy.dose_level[key] = level
        therapy.at_lowest_level[key] = level == len(spec.levels)
        provenance[f"therapy.dose_level.{key}"] = [event.ref]
    return last_levels


def _before(event: MedicationEvent, as_of: datetime) -> bool:
    """Dated strictly before as-of (a date-only value by its calendar date)."""
    if event.start is None:
        return False
    if event.start.date_only:
        return event.start.day < as_of.date()
    return event.start.instant < as_of


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
    catalogue = vs.catalogue
    today = as_of.date()
    active_days = params.days("active_therapy_days")
    all_doses = doses(events, vs, today, active_days)
    per_agent = doses_by_agent(all_doses)
    exposure = _exposures(all_doses, per_agent, catalogue, since, surgery, early, provenance)
    # An exposure without any date cannot be placed in a line: it still counts as given (so "no
    # prior T-DXd" cannot pass), and the lines are unknown (fail safe: no line-based recommendation).
    undated = [e for e in events if e.start is None and not e.held and e.source != "draft" and e.agents]
    undated_keys = sorted({a for e in undated for a in e.agents if a in catalogue.agents})
    for key in undated_keys:
        found = exposure.agent(key)
        exposure.set_agent(key, found.model_copy(update={"ever": True}))
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
        anchors = {k for k, a in catalogue.agents.items() if a.early_relapse == "anchor"}
        extenders = {k for k, a in catalogue.agents.items() if a.early_relapse == "extends"}
        adj_tras = [d for d in pre if d.agents & anchors]
        if adj_tras:
            months = params.days(
                "early_relapse_months_pertuzumab"
                if any(d.agents & extenders for d in pre)
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
        her2_lines = [line for line in lines if HER2 in line.classes]
        other_lines = [line for line in lines if HER2 not in line.classes]
        lines_facts.prior_metastatic = len(lines)
        lines_facts.her2_directed = len(her2_lines)
        lines_facts.non_her2 = len(other_lines)
        if other_lines:
            other_agents = {a for line in other_lines for a in line.agents}
            lines_facts.non_her2_regimens = ", ".join(sorted(other_agents))
            provenance["lines.non_her2"] = [ref for line in other_lines for ref in line.refs]
        # a line without any HER2-directed agent is not a HER2 line (clinical-spec §10.7)
        lines_facts.effective = len(her2_lines) + (1 if lines_facts.early_relapse else 0)
        if lines:
            current = lines[-1]
            lines_facts.last_her2_directed = HER2 in current.classes
            lines_facts.current_regimen = ", ".join(sorted(current.agents))
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

    # -- on-drug status, started ------------------------------------------------------------------
    therapy = TherapyFacts()
    recent = [d for d in all_doses if (today - d.last_day).days <= active_days]
    draft_agents = set(draft.agents) if draft is not None else set()
    first_dose: dict[str, date | None] = {}
    last_dose: dict[str, date] = {}
    for key in catalogue.agent_ids():
        on = any(key in d.agents for d in recent) or key in draft_agents
        therapy.on[key] = on
        if on:
            provenance[f"therapy.on.{key}"] = [d.event.ref for d in recent if key in d.agents] + (
                [draft.ref] if draft is not None and key in draft_agents else []
            )
        records = per_agent.get(key, [])
        before = [d for d in records if _before(d.event, as_of)]
        therapy.started[key] = bool(before)
        if before:
            provenance[f"therapy.started.{key}"] = [d.event.ref for d in before]
        first_dose[key] = records[0].day if records else None
        counted = counted_doses(records, key)
        if counted:
            last_dose[key] = counted[-1].day
    her2_agents = set(catalogue.with_class(HER2))
    therapy.on_her2_directed = any(therapy.on[a] for a in her2_agents)

    # -- dose levels of the last dose ---------------------------------------------------------------
    last_levels = _dose_levels(
        per_agent, catalogue, weights, params.num("dose_tolerance_pct"), therapy, provenance
    )

    # -- current course (for LVEF baseline and cycle counts) -----------------------------------------
    her2_doses = [d for d in all_doses if d.agents & her2_agents]
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
        for key in sorted({a for d in course for a in d.agents}):
            counted = counted_doses(per_agent.get(key, []), key)
            course_doses[key] = len([d for d in counted if d.day >= course_start])
            therapy.doses_in_course[key] = course_doses[key]
    elif draft is not None and draft_agents & her2_agents:
        course_start = today

    if draft is not None:
        order = _order_facts(draft, catalogue, params, recent_weight, last_levels, course_doses)
        provenance["order"] = [draft.ref]
    else:
        order = OrderFacts()
    return TherapyResult(
        exposure, lines_facts, therapy, progression, course_start, first_dose, last_dose, order
    )

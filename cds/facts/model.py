"""The fact vocabulary: one typed ``PatientFacts`` per patient (clinical-spec §2).

Rules may only name dotted paths that exist in this model (checked when rule files load).
Units are fixed by the field (platelets in 10³/µL, ANC in 10⁹/L, liver tests as multiples of the
result's own ULN, LVEF in %, weight in kg). ``None`` means *not known*: such a field is left out of
the engine fact, so no comparison can match it and only an explicit ``missing`` condition does.
Every fact records the FHIR resources it came from in ``provenance`` (path -> resource refs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

DoseFit = Literal["at-level", "above-max", "between-levels", "below-min", "unknown", "not-checked"]
Her2Category = Literal["positive", "equivocal", "low", "ultralow", "zero", "negative", "unknown"]


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class PatientDemographics(_Facts):
    """Who the patient is, as far as the rules care."""

    gender: str = Field("unknown", description="administrative gender: female, male, other, unknown")
    age_years: int | None = Field(None, description="age in whole years at as-of")
    reproductive_potential: bool = Field(
        False,
        description="female/unknown gender, age in reproductive_age, no hysterectomy/oophorectomy/menopause",
    )
    pregnancy_test_negative_recent: bool = Field(
        False, description="negative pregnancy test within pregnancy_test_days"
    )
    pregnancy_test_positive_recent: bool = Field(
        False,
        description="positive pregnancy test (hCG >= hcg_positive_at_least) within pregnancy_positive_days"
        " and no later negative test",
    )


class Her2Facts(_Facts):
    """HER2 status from the latest test episode (ASCO/CAP 2018/2023)."""

    category: Her2Category = Field(
        "unknown", description="positive, equivocal, low, ultralow, zero, negative, unknown"
    )
    ihc_score: str | None = Field(None, description='IHC score of the latest episode: "0", "1+", "2+", "3+"')
    ish_group: int | None = Field(None, description="dual-probe ISH group 1-5 of the latest episode")
    ish_result: Literal["positive", "negative", "indeterminate", "none"] = Field(
        "none", description="ISH result of the latest episode"
    )
    ish_required: bool = Field(False, description="IHC 2+ without ISH in the latest episode")
    ish_review: bool = Field(False, description="ISH group 2-4 (or indeterminate ISH) with IHC 2+ or no IHC")
    discordant: bool = Field(False, description="an earlier episode was positive and the latest is not")
    contradictory: bool = Field(False, description="the latest episode holds contradictory results")
    tested: bool = Field(False, description="any usable HER2 result exists")
    episode_date: str | None = Field(None, description="date of the latest episode")


class LinesFacts(_Facts):
    """Metastatic lines of therapy (clinical-spec §2 prior_metastatic_lines, early_relapse)."""

    known: bool = Field(
        True, description="false when metastatic disease or an anticancer therapy has no date"
    )
    undated_therapy: bool = Field(False, description="an anticancer therapy is recorded without any date")
    undated_agents: str | None = Field(None, description="the undated agents, comma-separated")
    prior_metastatic: int = Field(0, description="regimens started on or after metastatic_since")
    her2_directed: int = Field(0, description="metastatic lines holding a HER2-directed agent")
    non_her2: int = Field(0, description="metastatic lines without any HER2-directed agent")
    non_her2_regimens: str | None = Field(
        None, description="catalogue agents of those lines, comma-separated (review notes)"
    )
    effective: int = Field(
        0, description="HER2-directed metastatic lines + 1 if early_relapse (other lines do not count)"
    )
    early_relapse: bool = Field(
        False,
        description="metastatic within early_relapse_months of the last (neo)adjuvant anchor agent",
    )
    last_her2_directed: bool = Field(
        False, description="the latest line was HER2-directed (or early relapse)"
    )
    current_active: bool = Field(False, description="a dose of the current line within active_therapy_days")
    current_regimen: str | None = Field(
        None, description="catalogue agents of the current line, comma-separated"
    )
    current_start: str | None = Field(None, description="start date of the current line")


# a map from catalogue agent id to a value: one fact path per agent (therapy.on.<agent>)
AGENT_KEYED: dict[str, Any] = {"keyed_by": "agent"}


def by_agent(description: str) -> Any:
    """A field holding one value per catalogue agent: rules read ``<path>.<agent id>``."""
    return Field(default_factory=dict, description=description, json_schema_extra=AGENT_KEYED)


class AgentExposure(_Facts):
    """Exposure to one agent (any form: biosimilar, SC, combination product), from every
    medication resource (administrations, statements, dispenses, orders)."""

    ever: bool = False
    metastatic: bool = Field(False, description="given on or after metastatic_since")
    adjuvant: bool = Field(False, description="given after breast surgery in the early setting")
    doses_given: int = 0
    first: str | None = None
    last: str | None = None


class Exposures(_Facts):
    """Per-agent exposures (``exposure.<agent>.ever`` ... for every catalogue agent) and class
    summaries. Agent entries are the model's typed extra fields."""

    model_config = ConfigDict(extra="allow", frozen=False)
    __pydantic_extra__: dict[str, AgentExposure] = Field(init=False)

    chemotherapy_metastatic: bool = Field(False, description="any cytotoxic on or after metastatic_since")
    endocrine_metastatic: bool = Field(
        False, description="any endocrine therapy on or after metastatic_since"
    )
    adjuvant_chemo_relapse: bool = Field(
        False, description="metastatic during or within adjuvant_chemo_relapse_months of (neo)adjuvant chemo"
    )

    def agent(self, key: str) -> AgentExposure:
        """The exposure of one agent (an empty one if never given)."""
        extra = self.__pydantic_extra__ or {}
        return extra.get(key) or AgentExposure()

    def set_agent(self, key: str, exposure: AgentExposure) -> None:
        """Record the exposure of one agent."""
        if self.__pydantic_extra__ is None:
            self.__pydantic_extra__ = {}
        self.__pydantic_extra__[key] = exposure


class TherapyFacts(_Facts):
    """Current therapy per catalogue agent: on the drug (a dose within active_therapy_days, an
    active statement, or a draft order), started, dose level of the last dose given."""

    on: dict[str, bool] = by_agent("a dose or active statement within active_therapy_days, or a draft order")
    started: dict[str, bool] = by_agent("any exposure record dated before as-of (first dose given)")
    dose_level: dict[str, int | None] = by_agent("1-based level of the last dose given (start = 1)")
    at_lowest_level: dict[str, bool] = by_agent("the last dose given was at the agent's lowest level")
    doses_in_course: dict[str, int] = by_agent("doses given in the current course")
    on_her2_directed: bool = Field(False, description="on any agent of class her2_directed")


class EarlyFacts(_Facts):
    """Early (curative) setting: surgery and residual disease after neoadjuvant therapy."""

    surgery_days_ago: int | None = Field(None, description="days from breast surgery to as-of")
    neoadjuvant_taxane_her2: bool = Field(
        False, description="taxane and HER2-directed therapy before surgery"
    )
    residual_disease: bool = Field(
        False, description="neoadjuvant therapy and residual invasive disease at surgery"
    )
    residual_review: bool = Field(False, description="ypN0(i+): residual with review")
    high_risk: bool = Field(False, description="ypN1-3, or cT4 / cN2-3 at presentation")
    pathologic_stage: str | None = Field(None, description='e.g. "ypT1c ypN1a"')


class LabValue(_Facts):
    """The latest result of one analyte within as-of."""

    value: float | None = Field(None, description="value in the analyte's canonical unit")
    x_uln: float | None = Field(None, description="value as a multiple of the result's own ULN")
    uln_missing: bool = Field(False, description="a value without a usable referenceRange.high")
    unit_unrecognized: bool = Field(False, description="the latest result's unit is missing or unknown")
    age_days: int | None = Field(None, description="days from the result to as-of")
    date: str | None = None


class LabFacts(_Facts):
    """Latest labs (platelets 10³/µL, ANC 10⁹/L, AST/ALT/bilirubin ×ULN)."""

    platelets: LabValue = Field(default_factory=LabValue)
    anc: LabValue = Field(default_factory=LabValue)
    ast: LabValue = Field(default_factory=LabValue)
    alt: LabValue = Field(default_factory=LabValue)
    bilirubin: LabValue = Field(default_factory=LabValue)
    platelets_min_since_last_dose: dict[str, float | None] = by_agent(
        "lowest platelets since the agent's last dose given"
    )
    liver_draw_gap_days: int | None = Field(
        None, description="days between the latest transaminase and the latest bilirubin"
    )
    ast_alt_max_x_uln: float | None = Field(None, description="max of AST and ALT ×ULN")
    temperature_c_near_anc: float | None = Field(
        None, description="highest body temperature (°C) within febrile_pairing_days of the latest ANC"
    )


class LvefFacts(_Facts):
    """Left ventricular ejection fraction (%)."""

    value: float | None = None
    age_days: int | None = None
    baseline: float | None = Field(
        None, description="latest LVEF within lvef_interval_days before the regimen began"
    )
    baseline_known: bool = False
    drop: float | None = Field(None, description="baseline - latest, in points")
    below_lln: bool = Field(False, description="below the result's lower limit (or lvef_lower_limit_normal)")
    unit_unrecognized: bool = False
    date: str | None = None


class WeightFacts(_Facts):
    """Body weight within weight_recency_days."""

    kg: float | None = None
    age_days: int | None = None
    unit_unrecognized: bool = False


class ConditionFacts(_Facts):
    """Conditions the rules need."""

    ild_history: bool = Field(False, description="any ILD/pneumonitis (any clinicalStatus)")
    ild_since_start: dict[str, bool] = by_agent("ILD with onset on/after the agent's first dose")
    ild_before_start: dict[str, bool] = by_agent(
        "ILD before the agent's first dose (or the agent never given)"
    )
    brain_metastases: bool = False
    leptomeningeal: bool = False
    heart_failure: bool = Field(False, description="active symptomatic heart failure")
    nrh: bool = Field(False, description="nodular regenerative hyperplasia")
    febrile_neutropenia: bool = Field(
        False, description="active febrile neutropenia diagnosed within febrile_neutropenia_days"
    )


class AllergyFacts(_Facts):
    """Taxane allergy (clinical-spec §2)."""

    taxane: bool = Field(
        False, description="allergy to every taxane molecule of the catalogue, or to the class"
    )
    single_taxane: str | None = Field(None, description="the one taxane allergy, when only one")
    other_taxane: str | None = Field(None, description="the taxane still usable, when only one is allergenic")


class OrderFacts(_Facts):
    """The draft order under review (order-select / order-sign, or --order)."""

    present: bool = False
    agent: str | None = Field(
        None,
        description="the catalogue agent (or multi-agent product) the dose is checked against; "
        "other (not in the catalogue) or ambiguous (code and text disagree)",
    )
    product: str | None = Field(None, description="the catalogue product or agent the order names")
    agents: dict[str, bool] = by_agent("the agents the ordered product counts as")
    levels: str | None = Field(None, description='the dose levels checked against, e.g. "3.6/3/2.4 mg/kg"')
    dose_low_fit: DoseFit = Field(
        "not-checked", description="a doseRange's low bound against the levels (under-dosing)"
    )
    her2_directed: bool = False
    dose_mg_per_kg: float | None = None
    dose_mg: float | None = None
    dose_ordered: str | None = Field(
        None, description='the ordered dose as written, with its conversion ("420 mg = 6 mg/kg at 70 kg")'
    )
    dose_fit: Literal["at-level", "above-max", "between-levels", "below-min", "unknown", "not-checked"] = (
        "not-checked"
    )
    dose_level: int | None = Field(None, description="1-based level the ordered dose matches")
    matches_other_agent: str | None = Field(None, description="another HER2 drug whose level the dose fits")
    name_conflict: bool = Field(False, description="the order's code and text name different HER2 agents")
    reescalation: bool = Field(False, description="dose above the last reduced level of that drug")
    needs_weight: bool = Field(False, description="a per-kg check needs a weight that is missing")
    unit_unrecognized: bool = False
    cycle_number: int = Field(0, description="the cycle this order would be (doses in course + 1)")


class DataFacts(_Facts):
    """Data quality facts."""

    unit_unrecognized: bool = False
    unit_problems: str | None = Field(None, description="which results had unusable units")
    other_patient_data: bool = Field(
        False, description="the record holds resources of another patient (excluded, never used)"
    )
    other_patient_resources: str | None = Field(None, description="which resources name another patient")


class ReviewFacts(_Facts):
    """Facts read from free text or from ambiguous records that a person must confirm (clinical-spec
    v2): each marks ``review_required`` on the findings it would have changed (policies in the rule
    files say which)."""

    hr_low_positive: bool = Field(
        False, description="hormone receptors positive only at a low level (ER/PR 1-10 % of nuclei)"
    )
    ild: bool = Field(False, description="ILD/pneumonitis found only in text, or mentioned with uncertainty")
    ild_detail: str | None = Field(None, description="why the ILD evidence needs review")
    metastasis: bool = Field(
        False, description="metastasis found only in text, or mentioned with uncertainty"
    )
    metastasis_detail: str | None = Field(None, description="why the metastasis evidence needs review")
    metastasis_primary_unknown: bool = Field(
        False,
        description="metastasis evidence not linked to the breast cancer while another primary exists",
    )
    other_primary: str | None = Field(None, description="the other primary malignancy on record")
    unreadable_data: bool = Field(
        False, description="a record that could not be read names data the rules use (skipped)"
    )
    unreadable_detail: str | None = Field(None, description="which unreadable records, naming what")


class PatientFacts(_Facts):
    """Everything the rules may read about one patient at one as-of instant."""

    patient: PatientDemographics = Field(default_factory=PatientDemographics)
    her2: Her2Facts = Field(default_factory=Her2Facts)
    hr_status: Literal["positive", "negative", "unknown"] = "unknown"
    setting: Literal["metastatic", "early", "none"] = "none"
    metastatic_since: str | None = None
    lines: LinesFacts = Field(default_factory=LinesFacts)
    progression: Literal["yes", "no", "unknown", "not-applicable"] = "not-applicable"
    exposure: Exposures = Field(default_factory=Exposures)
    therapy: TherapyFacts = Field(default_factory=TherapyFacts)
    early: EarlyFacts = Field(default_factory=EarlyFacts)
    labs: LabFacts = Field(default_factory=LabFacts)
    lvef: LvefFacts = Field(default_factory=LvefFacts)
    weight: WeightFacts = Field(default_factory=WeightFacts)
    conditions: ConditionFacts = Field(default_factory=ConditionFacts)
    allergy: AllergyFacts = Field(default_factory=AllergyFacts)
    order: OrderFacts = Field(default_factory=OrderFacts)
    data: DataFacts = Field(default_factory=DataFacts)
    review: ReviewFacts = Field(default_factory=ReviewFacts)
    provenance: dict[str, list[str]] = Field(default_factory=dict, exclude=True)

    def get(self, path: str) -> Any:
        """The value at a dotted path (``labs.platelets.value``, ``therapy.on.tdm1``); KeyError if
        the path is unknown. An agent-keyed map gives its default for an agent not recorded."""
        steps = _STEPS.get(path)
        if steps is None:
            steps = _STEPS[path] = _compile(path)
        node: Any = self
        for kind, name, default in steps:
            if kind == _ATTR:
                node = getattr(node, name)
            elif kind == _AGENT:
                node = node.agent(name)
            else:
                node = node.get(name, default)
        return node

    def resources_for(self, path: str) -> list[str]:
        """Resource refs behind a fact: the path itself, else its nearest parent."""
        parts = path.split(".")
        while parts:
            refs = self.provenance.get(".".join(parts))
            if refs is not None:
                return refs
            parts.pop()
        return []


_FIELDS: dict[type[BaseModel], dict[str, Any]] = {}
_ATTR, _AGENT, _KEY = range(3)
_STEPS: dict[str, tuple[tuple[int, str, Any], ...]] = {}


def _compile(path: str) -> tuple[tuple[int, str, Any], ...]:
    """The steps that read a dotted path from the fact model's declared types (every fact is a
    field of a sub-model, an agent of ``Exposures`` or a key of an agent-keyed map); KeyError for
    a path the model does not have."""
    steps: list[tuple[int, str, Any]] = []
    model: Any = PatientFacts
    annotation: Any = None
    for part in path.split("."):
        if model is Exposures and part not in _fields(model):
            steps.append((_AGENT, part, None))
            model, annotation = AgentExposure, None
        elif isinstance(model, type) and issubclass(model, BaseModel):
            fields = _fields(model)
            if part not in fields:
                raise KeyError(path)
            annotation = fields[part].annotation
            steps.append((_ATTR, part, None))
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            if model is None and get_origin(annotation) is dict:
                model = dict
        elif model is dict:
            steps.append((_KEY, part, _default_of(annotation)))
            model = None
        else:
            raise KeyError(path)
    return tuple(steps)


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """``model.model_fields`` (a class property that costs more than a dict lookup)."""
    fields = _FIELDS.get(model)
    if fields is None:
        fields = _FIELDS[model] = dict(model.model_fields)
    return fields


def _default_of(annotation: Any) -> Any:
    """The value an agent-keyed map gives for an agent it does not hold."""
    args = get_args(annotation)
    value_type = args[1] if len(args) == 2 else None
    if value_type is bool:
        return False
    if value_type is int:
        return 0
    return None


def _keyed(field: Any) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("keyed_by") == "agent"


def _leaves(model: type[BaseModel], prefix: str, agents: tuple[str, ...]) -> Iterator[tuple[str, Any, str]]:
    """(dotted path, annotation, description) of every leaf of the fact model; agent-keyed facts
    expand to one path per catalogue agent. The one walk behind the paths rules may name and the
    paths authors are shown, so the two cannot disagree."""
    if model is Exposures:
        for agent in agents:
            yield from _leaves(AgentExposure, f"{prefix}{agent}.", agents)
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        path = f"{prefix}{name}"
        words = field.description or ""
        if _keyed(field):
            value_type = get_args(annotation)[1]
            for agent in agents:
                yield f"{path}.{agent}", value_type, words
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaves(annotation, path + ".", agents)
        else:
            yield path, annotation, words


def leaf_paths(
    model: type[BaseModel] = PatientFacts, prefix: str = "", agents: Iterable[str] = ()
) -> dict[str, Any]:
    """Every dotted leaf path of the fact model with its annotation (for rule-path checks).
    Agent-keyed facts expand to one path per catalogue agent (``therapy.on.<agent>``)."""
    return {path: annotation for path, annotation, _words in _leaves(model, prefix, tuple(agents))}


def fact_descriptions(
    model: type[BaseModel] = PatientFacts, prefix: str = "", agents: Iterable[str] = ()
) -> dict[str, tuple[str, str]]:
    """Every fact path a rule may name -> (value type, description), for authors: the same paths
    as :func:`leaf_paths`, with the model's own words (``cds rules facts``)."""
    leaves = _leaves(model, prefix, tuple(agents))
    return {path: (_type_name(annotation), words) for path, annotation, words in leaves}


def _type_name(annotation: Any) -> str:
    """``bool``, ``float | None``, ``Literal['a', 'b']`` ... as an author reads it."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")

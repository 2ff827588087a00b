"""The drug and regimen catalogue: agents, products, names, codes, dose levels, regimens as data.

Pharmacists own ``rules/catalogue/*.yaml``; nothing in Python names a drug. The catalogue decides
which agents a medication record counts as (codes first, then whole-word name patterns, products
that cover other names before plain ingredients), which dose levels an order is checked against,
and how agents and regimens are shown to clinicians. It sits in a low layer so that every layer
(FHIR parsing, facts, engine checks, findings, cards, cohort) reads the same knowledge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds.errors import ConfigurationError
from cds.knowledge.provenance import knowledge_status

DrugClass = Literal["her2_directed", "taxane", "chemotherapy", "endocrine", "cdk46"]
CLASSES = ("her2_directed", "taxane", "chemotherapy", "endocrine", "cdk46")
Route = Literal["iv", "sc", "oral"]
CATALOGUE_FILES = ("agents.yaml", "products.yaml", "regimens.yaml")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"})
_SUFFIX = r"(?:-[a-z]{4})?"  # FDA biologic suffix (-nxki, -dkst...)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Strict):
    """Dose levels for one dosing interval (trastuzumab weekly vs every 3 weeks)."""

    every_weeks: float
    levels: list[float]


class DoseSpec(_Strict):
    """Labelled dose levels: per kg or fixed mg; start first, then each reduction."""

    basis: Literal["mg/kg", "mg"]
    reductions: bool = False
    levels: list[float] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)

    def all_levels(self) -> list[float]:
        """Every level (all schedules), highest first."""
        found = set(self.levels)
        for schedule in self.schedules:
            found.update(schedule.levels)
        return sorted(found, reverse=True)

    def levels_for(self, every_weeks: float | None) -> list[float]:
        """Levels for a dosing interval; an unknown or unlisted interval gets every level."""
        for schedule in self.schedules:
            if every_weeks is not None and abs(schedule.every_weeks - every_weeks) < 0.2:
                return list(schedule.levels)
        return list(self.levels) if self.levels else self.all_levels()

    def text(self) -> str:
        """Levels as a clinician reads them: "3.6/3/2.4 mg/kg"."""
        return "/".join(f"{v:g}" for v in self.all_levels()) + f" {self.basis}"


class AgentSpec(_Strict):
    """One agent (active ingredient as the rules see it)."""

    display: str
    name: str
    classes: list[DrugClass]
    line_group: str | None = None
    rxnorm: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    covers: list[str] = Field(default_factory=list)
    route: Route
    dose: DoseSpec | None = None
    safety_rulesets: list[str] = Field(default_factory=list)
    early_relapse: Literal["anchor", "extends"] | None = None
    allergy_group: str | None = None
    source: str


class ProductSpec(_Strict):
    """One product: brand, biosimilar, SC or multi-ingredient form of one or more agents."""

    display: str
    agents: list[str]
    rxnorm: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    all_of: list[list[str]] = Field(default_factory=list)
    covers: list[str] = Field(default_factory=list)
    route: Route
    dose: DoseSpec | None = None
    source: str

    @field_validator("agents")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a product counts as at least one agent")
        return value


class RegimenSpec(_Strict):
    """A regimen a recommendation may name."""

    display: str
    agents: list[str]
    source: str


def normalise(text: str) -> str:
    """Lower case, accents removed, unicode dashes as '-', whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_DASHES))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def _pattern(name: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in normalise(name).split()]
    return re.compile(r"(?<![a-z0-9])" + r"[\s,/+]+".join(words) + _SUFFIX + r"(?![a-z0-9])")


@dataclass(frozen=True)
class Item:
    """Something a medication record can name: an agent (generic) or a product."""

    id: str
    display: str
    agents: tuple[str, ...]
    rxnorm: tuple[str, ...]
    names: tuple[str, ...]
    all_of: tuple[tuple[str, ...], ...]
    covers: tuple[str, ...]
    route: str
    dose: DoseSpec | None
    is_product: bool


@dataclass(frozen=True)
class _Matcher:
    item: str
    patterns: tuple[re.Pattern[str], ...]  # all must match (one for a name, several for all_of)
    covers: tuple[re.Pattern[str], ...]
    rank: tuple[int, int, int]


@dataclass
class Catalogue:
    """Agents, products and regimens of one rules directory, with the matching they imply."""

    agents: dict[str, AgentSpec]
    products: dict[str, ProductSpec]
    regimens: dict[str, RegimenSpec]
    versions: dict[str, str]
    statuses: dict[str, str] = field(default_factory=dict)  # "catalogue/products.yaml" -> review status
    items: dict[str, Item] = field(default_factory=dict)
    _by_code: dict[str, str] = field(default_factory=dict, repr=False)
    _matchers: list[_Matcher] = field(default_factory=list, repr=False)
    _cache: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for key, agent in self.agents.items():
            self.items[key] = Item(
                key,
                agent.display,
                (key,),
                tuple(agent.rxnorm),
                tuple(agent.names),
                (),
                tuple(agent.covers),
                agent.route,
                agent.dose,
                False,
            )
        for key, product in self.products.items():
            self.items[key] = Item(
                key,
                product.display,
                tuple(product.agents),
                tuple(product.rxnorm),
                tuple(product.names),
                tuple(tuple(s) for s in product.all_of),
                tuple(product.covers),
                product.route,
                product.dose,
                True,
            )
        for item in self.items.values():
            for code in item.rxnorm:
                self._by_code[code] = item.id
            covers = tuple(_pattern(w) for w in item.covers)
            first = 0 if item.covers else 1
            for name in item.names:
                self._matchers.append(
                    _Matcher(item.id, (_pattern(name),), covers, (first, -1, -len(normalise(name))))
                )
            for names in item.all_of:
                self._matchers.append(
                    _Matcher(item.id, tuple(_pattern(n) for n in names), covers, (first, -len(names), 0))
                )
        self._matchers.sort(key=lambda m: (m.rank, m.item))

    # -- knowledge ------------------------------------------------------------------------------
    def agent_ids(self) -> list[str]:
        """Every agent id, sorted (the keys of agent-keyed facts)."""
        return sorted(self.agents)

    def with_class(self, klass: str) -> list[str]:
        """Agents of a class (her2_directed, taxane, ...), sorted."""
        return sorted(k for k, a in self.agents.items() if klass in a.classes)

    def line_group(self, agent: str) -> str:
        """The line-counting group of an agent (one taxane for another is not a new line)."""
        spec = self.agents.get(agent)
        return (spec.line_group or agent) if spec else agent

    def agents_of(self, items: Iterable[str]) -> tuple[str, ...]:
        """The agents a list of matched items counts as, in first-seen order."""
        out: list[str] = []
        for item in items:
            for agent in self.items[item].agents if item in self.items else ():
                if agent not in out:
                    out.append(agent)
        return tuple(out)

    def dose_of(self, item: str) -> DoseSpec | None:
        """The dose levels an order of an item is checked against (product's own, else agent's)."""
        entry = self.items.get(item)
        if entry is None:
            return None
        if entry.dose is not None:
            return entry.dose
        if len(entry.agents) == 1:
            return self.items[entry.agents[0]].dose
        return None

    def display(self, key: str) -> str:
        """What a clinician reads for an agent, product or regimen id (the id itself if unknown)."""
        if key in self.items:
            return self.items[key].display
        if key in self.regimens:
            return self.regimens[key].display
        return key

    def rxnorm_codes(self) -> list[str]:
        """Every RxNorm code the catalogue holds, sorted."""
        return sorted(self._by_code)

    def all_names(self) -> list[str]:
        """Every name and name pattern the catalogue holds (for the no-drug-literal test)."""
        names: set[str] = set()
        for item in self.items.values():
            names.update(item.names)
            names.update(n for group in item.all_of for n in group)
            names.update(item.covers)
        for agent in self.agents.values():
            names.add(agent.name)
            names.add(agent.display)
        for product in self.products.values():
            names.add(product.display)
        for regimen in self.regimens.values():
            names.add(regimen.display)
        return sorted({normalise(n) for n in names})

    # -- matching -------------------------------------------------------------------------------
    def items_by_code(self, codes: Iterable[tuple[str, str]]) -> tuple[str, ...]:
        """Items named by RxNorm codes ((system alias, code) pairs; '' = no system), in code order."""
        found: list[str] = []
        for system, code in codes:
            if system in ("rxnorm", "") and code in self._by_code and self._by_code[code] not in found:
                found.append(self._by_code[code])
        return self.combined(tuple(found))

    def combined(self, items: tuple[str, ...]) -> tuple[str, ...]:
        """Codes of one medication naming exactly the agents of a multi-ingredient product
        (trastuzumab + pertuzumab ingredient codes) are that one product, never two agents."""
        agents = set(self.agents_of(items))
        if len(agents) < 2:
            return items
        for key in sorted(self.products):
            product = self.products[key]
            if len(product.agents) > 1 and set(product.agents) == agents:
                return (key,)
        return items

    def items_by_name(self, texts: tuple[str, ...]) -> tuple[str, ...]:
        """Items named in free text/display: products and ADCs (entries with ``covers``) first;
        what they match, and the words they cover, is removed before plain ingredients are tried,
        so "trastuzumab emtansine" is T-DM1 and never also trastuzumab."""
        cached = self._cache.get(texts)
        if cached is not None:
            return cached
        found: list[str] = []
        for text in texts:
            residue = normalise(text)
            for matcher in self._matchers:
                hits = [p.search(residue) for p in matcher.patterns]
                if not all(hits):
                    continue
                if matcher.item not in found:
                    found.append(matcher.item)
                for pattern in (*matcher.patterns, *matcher.covers):
                    residue = pattern.sub(" ", residue)
        result = tuple(found)
        if len(self._cache) < 50_000:  # medication texts repeat across patients
            self._cache[texts] = result
        return result


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read drug catalogue {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"drug catalogue {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"drug catalogue {path} must be a mapping")
    return data


def _entries(data: dict[str, Any], key: str, model: type[BaseModel], where: str) -> dict[str, Any]:
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: `{key}` must be a mapping of id -> entry")
    out: dict[str, Any] = {}
    for entry_id, entry in raw.items():
        try:
            out[str(entry_id)] = model.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            raise ConfigurationError(f"{where} {key}.{entry_id}.{loc}: {first.get('msg')}") from exc
    return out


def load_catalogue(directory: Path) -> Catalogue:
    """Load ``agents.yaml``, ``products.yaml`` and ``regimens.yaml`` and check their references."""
    files = {name: _read(directory / name) for name in CATALOGUE_FILES}
    agents: dict[str, AgentSpec] = _entries(files["agents.yaml"], "agents", AgentSpec, "agents.yaml")
    products: dict[str, ProductSpec] = _entries(
        files["products.yaml"], "products", ProductSpec, "products.yaml"
    )
    regimens: dict[str, RegimenSpec] = _entries(
        files["regimens.yaml"], "regimens", RegimenSpec, "regimens.yaml"
    )
    problems: list[str] = []
    for key in [*agents, *products]:
        if not _ID.match(key):
            problems.append(f"id {key!r}: lower-case letters, digits and underscores only")
    for key in sorted(set(agents) & set(products)):
        problems.append(f"id {key!r} is both an agent and a product")
    for key, product in products.items():
        for agent in product.agents:
            if agent not in agents:
                problems.append(f"products.yaml {key}: unknown agent {agent!r}")
    for key, regimen in regimens.items():
        for agent in regimen.agents:
            if agent not in agents:
                problems.append(f"regimens.yaml {key}: unknown agent {agent!r}")
    seen: dict[str, str] = {}
    codes = [(k, a.rxnorm) for k, a in agents.items()] + [(k, p.rxnorm) for k, p in products.items()]
    for key, rxnorm in codes:
        for code in rxnorm:
            if code in seen:
                problems.append(f"RxNorm {code} is listed for both {seen[code]} and {key}")
            seen[code] = key
    if problems:
        raise ConfigurationError("drug catalogue: " + "; ".join(problems))
    versions = {name.removesuffix(".yaml"): str(data.get("version", "")) for name, data in files.items()}
    statuses = {f"catalogue/{name}": knowledge_status(data, name) for name, data in files.items()}
    return Catalogue(agents, products, regimens, versions, statuses)

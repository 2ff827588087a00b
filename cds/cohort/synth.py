"""A seeded generator of realistic synthetic HER2 clinic cohorts, written as Bulk NDJSON.

Each patient is drawn from one scenario of the clinical spec with a clinic-like prevalence
(adjuvant trastuzumab is common, third-line progression is rare) and then roughened the way real
feeds are: unit variants (``10*9/L``, ``K/uL``, ``/uL``, bilirubin in µmol/L), missing reference
ranges, stale labs, missing weights and LVEF scans, drug names as text only or as brand names,
orders instead of administrations, entered-in-error results and unrelated resources (encounters,
other vitals and labs) that the engine must ignore.

The same ``seed`` always gives byte-identical files: every patient draws from its own
``Random(f"{seed}:{index}")``, so patient *n* does not depend on how many came before it.
``synth-truth.csv`` lists each patient's scenario, for tests and demos (never read as input).
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from cds.evaluate import default_rules_dir
from cds.knowledge.catalogue import Catalogue, load_catalogue

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# Patient.identifier type of a medical record number (HL7 v2 table 0203): the worklist shows it
V2_MR = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}

JSON = dict[str, Any]

# scenario -> (prevalence weight, HER2 category the engine should derive, setting, signature finding)
SCENARIOS: dict[str, tuple[float, str, str, str | None]] = {
    "ebc-adjuvant-hp": (0.22, "positive", "early", None),
    "ebc-residual": (0.05, "positive", "early", "rec.ebc.tdm1"),
    "ebc-surveillance": (0.10, "positive", "early", None),
    "mbc-untreated": (0.04, "positive", "metastatic", "rec.mbc1.thp"),
    "mbc-first-line-stable": (0.14, "positive", "metastatic", "info.on-therapy"),
    "mbc-progressed-first-line": (0.05, "positive", "metastatic", "rec.mbc2.tdm1"),
    "mbc-second-line-adc-a": (0.06, "positive", "metastatic", None),
    "mbc-second-line-adc-b": (0.08, "positive", "metastatic", None),
    "mbc-later-line": (0.03, "positive", "metastatic", "rec.mbc3.tucatinib"),
    "her2-low-mbc": (0.08, "low", "metastatic", "rec.her2low.tdxd"),
    "her2-zero": (0.05, "zero", "metastatic", "info.her2-negative"),
    "her2-equivocal": (0.02, "equivocal", "early", "gap.her2-ish-required"),
    "her2-untested": (0.03, "unknown", "early", "gap.her2-unknown"),
    "no-breast-cancer": (0.05, "unknown", "none", "info.not-applicable"),
}

# Platelet unit spellings seen in real feeds, with the factor from 10^3/uL (clinical-spec §9).
PLATELET_UNITS = [
    ("10*3/uL", 1.0, 0.55),
    ("10*9/L", 1.0, 0.15),
    ("K/uL", 1.0, 0.1),
    ("/uL", 1000.0, 0.1),
    ("x10E3/uL", 1.0, 0.05),
    ("thou/uL", 1.0, 0.05),
]
# The scenarios give regimens of the drug catalogue, found by their shape (drugs, codes, names and
# doses are read from rules/catalogue/, never written here): the first-line regimen is the one
# with a taxane and HER2 antibodies; ADC A and B are the single-agent regimens whose agent has
# reduction levels, in id order.
FIRST_LINE, ADC_A, ADC_B = 0, 1, 2


@dataclass(frozen=True)
class SynthDrug:
    """How the generator writes one catalogue agent: code, name, text variants, dose."""

    code: str | None
    display: str
    names: tuple[str, ...]
    dose: float | None
    per_kg: bool


def regimen_roles(catalogue: Catalogue) -> tuple[str, str, str]:
    """(first line, ADC A, ADC B) regimen ids of the catalogue (see FIRST_LINE)."""
    agents = catalogue.agents
    first = next(
        k
        for k, r in sorted(catalogue.regimens.items())
        if any("taxane" in agents[a].classes for a in r.agents)
        and sum("her2_directed" in agents[a].classes for a in r.agents) >= 2
    )
    adcs = [
        k
        for k, r in sorted(catalogue.regimens.items())
        if len(r.agents) == 1 and (dose := agents[r.agents[0]].dose) is not None and dose.reductions
    ]
    return first, adcs[0], adcs[1]


def synth_drugs(catalogue: Catalogue) -> dict[str, SynthDrug]:
    """Every catalogue agent as the generator writes it: its ingredient code (else a product
    code), its generic name, brand and biosimilar names as text-only variants, and its usual
    dose (the every-3-weeks maintenance level; fixed-dose agents in mg; none when the catalogue
    holds no dose, e.g. body-surface chemotherapy)."""
    out: dict[str, SynthDrug] = {}
    for key, agent in catalogue.agents.items():
        products = [p for p in catalogue.products.values() if p.agents == [key]]
        codes = [*agent.rxnorm, *(c for p in products for c in p.rxnorm)]
        names = [n for p in products for n in p.names] + [agent.display]
        dose: float | None = None
        if agent.dose is not None:
            levels = agent.dose.levels_for(3)
            dose = levels[-1] if not agent.dose.reductions else levels[0]
        out[key] = SynthDrug(
            codes[0] if codes else None,
            agent.name,
            tuple(dict.fromkeys(names)),
            dose,
            agent.dose is not None and agent.dose.basis == "mg/kg",
        )
    return out


def concept(system: str, code: str, display: str | None = None, text: str | None = None) -> JSON:
    coding: JSON = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: JSON = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


POSITIVE = concept(SNOMED, "10828004", "Positive (qualifier value)")
NEGATIVE = concept(SNOMED, "260385009", "Negative (qualifier value)")


class Chart:
    """The resources of one synthetic patient, with dates counted back from the as-of day."""

    def __init__(self, pid: str, rng: random.Random, as_of: date, catalogue: Catalogue) -> None:
        self.pid, self.rng, self.as_of = pid, rng, as_of
        self.catalogue = catalogue
        self.drugs = synth_drugs(catalogue)
        self.ref = {"reference": f"Patient/{pid}"}
        self.resources: list[JSON] = []
        self.counter = 0
        self.weight = round(rng.uniform(48, 105), 1)
        self.unit = self._pick_platelet_unit()
        self.bili_umol = rng.random() < 0.2

    def _pick_platelet_unit(self) -> tuple[str, float]:
        roll, acc = self.rng.random(), 0.0
        for unit, factor, share in PLATELET_UNITS:
            acc += share
            if roll < acc:
                return unit, factor
        return PLATELET_UNITS[0][0], PLATELET_UNITS[0][1]

    def day(self, days_ago: int) -> str:
        return (self.as_of - timedelta(days=days_ago)).isoformat()

    def add(self, rtype: str, body: JSON) -> JSON:
        self.counter += 1
        resource = {"resourceType": rtype, "id": f"{self.pid}-{self.counter}", **body}
        self.resources.append(resource)
        return {"reference": f"{rtype}/{resource['id']}"}

    # -- building blocks ---------------------------------------------------------------------
    def patient(self, gender: str, age: int) -> None:
        birth = self.as_of - timedelta(days=int(age * 365.25) + self.rng.randint(0, 300))
        self.resources.insert(
            0,
            {
                "resourceType": "Patient",
                "id": self.pid,
                "identifier": [
                    {"system": "https://example.org/fhir/insurance", "value": f"INS-{self.pid}"},
                    {
                        "type": {"coding": [V2_MR]},
                        "system": "https://example.org/fhir/mrn",
                        "value": f"MRN-{self.pid}",
                    },
                ],
                "name": [{"family": "Synthetic", "given": [self.pid]}],
                "gender": gender,
                "birthDate": birth.isoformat(),
            },
        )

    def condition(self, system: str, code: str, display: str, days_ago: int, status: str = "active") -> JSON:
        return self.add(
            "Condition",
            {
                "clinicalStatus": concept(COND_CLIN, status),
                "verificationStatus": concept(COND_VER, "confirmed"),
                "code": concept(system, code, display),
                "subject": self.ref,
                "onsetDateTime": self.day(days_ago),
                "recordedDate": self.day(days_ago),
            },
        )

    def breast_cancer(self, days_ago: int) -> JSON:
        if self.rng.random() < 0.3:
            return self.condition(SNOMED, "254837009", "Malignant neoplasm of breast (disorder)", days_ago)
        code = self.rng.choice(["C50.911", "C50.912", "C50.411", "C50.412"])
        return self.condition(ICD10, code, "Malignant neoplasm of female breast", days_ago)

    def metastasis(self, days_ago: int, brain: bool = False) -> None:
        if brain:
            self.condition(ICD10, "C79.31", "Secondary malignant neoplasm of brain", days_ago)
            return
        code, display = self.rng.choice(
            [
                ("C78.7", "Secondary malignant neoplasm of liver"),
                ("C79.51", "Secondary malignant neoplasm of bone"),
                ("C78.01", "Secondary malignant neoplasm of right lung"),
            ]
        )
        self.condition(ICD10, code, display, days_ago)

    def obs(
        self,
        code: str,
        display: str,
        days_ago: int,
        value: JSON,
        category: str | None = "laboratory",
        extra: JSON | None = None,
        status: str = "final",
    ) -> JSON:
        body: JSON = {"status": status}
        if category:
            body["category"] = [concept(OBS_CAT, category)]
        body["code"] = concept(LOINC, code, display)
        body["subject"] = self.ref
        body["effectiveDateTime"] = f"{self.day(days_ago)}T08:{self.rng.randint(0, 59):02d}:00Z"
        body.update(value)
        if extra:
            body.update(extra)
        return self.add("Observation", body)

    def quantity(
        self,
        code: str,
        display: str,
        days_ago: int,
        value: float,
        unit: str,
        low: float | None = None,
        high: float | None = None,
        category: str = "laboratory",
    ) -> None:
        qty = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        extra = None
        if high is not None:
            rng: JSON = {"high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}
            if low is not None:
                rng["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
            extra = {"referenceRange": [rng]}
        self.obs(code, display, days_ago, {"valueQuantity": qty}, category, extra)

    def her2(
        self, score: str, days_ago: int, ish: bool | None = None, er: bool = True, pr: bool = True
    ) -> None:
        spec = self.add(
            "Specimen",
            {
                "type": {"text": "Core needle biopsy, breast"},
                "subject": self.ref,
                "collection": {"collectedDateTime": self.day(days_ago + 2)},
            },
        )
        extra = {"specimen": spec}
        self.obs(
            "85319-2",
            "HER2 [Presence] in Breast cancer specimen by Immune stain",
            days_ago,
            {"valueCodeableConcept": {"text": score}},
            extra=extra,
        )
        if ish is not None:
            self.obs(
                "85318-4",
                "ERBB2 gene duplication [Presence] in Breast cancer specimen by FISH",
                days_ago,
                {"valueCodeableConcept": POSITIVE if ish else NEGATIVE},
                extra=extra,
            )
        self.obs(
            "85337-4",
            "Estrogen receptor Ag [Presence] in Breast cancer specimen by Immune stain",
            days_ago,
            {"valueCodeableConcept": POSITIVE if er else NEGATIVE},
            extra=extra,
        )
        self.obs(
            "85339-0",
            "Progesterone receptor Ag [Presence] in Breast cancer specimen by Immune stain",
            days_ago,
            {"valueCodeableConcept": POSITIVE if pr else NEGATIVE},
            extra=extra,
        )

    def status(self, days_ago: int, worsened: bool, focus: JSON) -> None:
        value = (
            concept(SNOMED, "271299001", "Patient's condition worsened (finding)")
            if worsened
            else concept(SNOMED, "359746009", "Patient's condition stable (finding)")
        )
        self.obs(
            "97509-4",
            "Cancer disease status",
            days_ago,
            {"valueCodeableConcept": value},
            category=None,
            extra={"focus": [focus]},
        )

    def lvef(self, days_ago: int, percent: float) -> None:
        self.quantity(
            "10230-1", "Left ventricular Ejection fraction", days_ago, percent, "%", category="imaging"
        )

    def weigh(self, days_ago: int) -> None:
        if self.rng.random() < 0.08:
            self.quantity(
                "29463-7",
                "Body weight",
                days_ago,
                round(self.weight * 2.20462, 1),
                "[lb_av]",
                category="vital-signs",
            )
        else:
            self.quantity("29463-7", "Body weight", days_ago, self.weight, "kg", category="vital-signs")

    def labs(
        self,
        days_ago: int,
        plt: float = 240,
        anc: float = 3.8,
        ast: float = 0.6,
        alt: float = 0.5,
        bili: float = 0.5,
    ) -> None:
        """CBC + liver panel; ``ast``/``alt``/``bili`` as multiples of ULN, with feed-like noise."""
        unit, factor = self.unit
        if self.rng.random() < 0.004:
            unit, factor = "bogus/ul", 1.0  # a unit the engine must refuse to guess
        self.quantity(
            "777-3",
            "Platelets [#/volume] in Blood by Automated count",
            days_ago,
            round(plt * factor, 0 if factor > 1 else 1),
            unit,
            150 * factor,
            400 * factor,
        )
        self.quantity(
            "751-8",
            "Neutrophils [#/volume] in Blood by Automated count",
            days_ago,
            round(anc, 2),
            "10*3/uL",
            1.8,
            7.7,
        )
        ast_range = self.rng.random() > 0.04  # some feeds drop the reference range
        self.quantity(
            "1920-8",
            "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            days_ago,
            round(ast * 40),
            "U/L",
            10 if ast_range else None,
            40 if ast_range else None,
        )
        self.quantity(
            "1742-6",
            "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            days_ago,
            round(alt * 41),
            "U/L",
            7,
            41,
        )
        if self.bili_umol:
            self.quantity(
                "1975-2",
                "Bilirubin.total [Mass/volume] in Serum or Plasma",
                days_ago,
                round(bili * 20.5, 1),
                "umol/L",
                3,
                20.5,
            )
        else:
            self.quantity(
                "1975-2",
                "Bilirubin.total [Mass/volume] in Serum or Plasma",
                days_ago,
                round(bili * 1.2, 2),
                "mg/dL",
                0.2,
                1.2,
            )
        if self.rng.random() < 0.5:  # unrelated results the engine ignores
            self.quantity(
                "718-7",
                "Hemoglobin [Mass/volume] in Blood",
                days_ago,
                round(self.rng.uniform(9.5, 14.5), 1),
                "g/dL",
                12,
                16,
            )
        if self.rng.random() < 0.03:  # a corrected mistake: must never count
            self.obs(
                "777-3",
                "Platelets [#/volume] in Blood by Automated count",
                days_ago,
                {"valueQuantity": {"value": 3, "unit": "10*3/uL", "system": UCUM, "code": "10*3/uL"}},
                status="entered-in-error",
            )

    def regimen(self, role: int) -> list[str]:
        """The agents of the catalogue regimen playing a role (FIRST_LINE, ADC_A, ADC_B)."""
        return list(self.catalogue.regimens[regimen_roles(self.catalogue)[role]].agents)

    def in_class(self, agents: list[str], klass: str) -> list[str]:
        """The agents of a list that belong to a drug class."""
        return [a for a in agents if klass in self.catalogue.agents[a].classes]

    def drug(self, key: str) -> JSON:
        spec = self.drugs[key]
        if self.rng.random() < 0.15 or spec.code is None:
            return {"text": self.rng.choice(spec.names)}
        return concept(RXNORM, spec.code, spec.display, spec.display.capitalize())

    def give(self, key: str, days_ago: list[int], as_orders: bool = False) -> None:
        """Doses of one drug: administrations (mg, or mg/kg) or, in some feeds, completed orders."""
        medication = self.drug(key)
        spec = self.drugs[key]
        for when in days_ago:
            dose: JSON | None = None
            if spec.dose is not None and spec.per_kg:
                dose = (
                    {"value": spec.dose, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"}
                    if self.rng.random() < 0.4
                    else {"value": round(spec.dose * self.weight), "unit": "mg", "system": UCUM, "code": "mg"}
                )
            elif spec.dose is not None:
                dose = {"value": spec.dose, "unit": "mg", "system": UCUM, "code": "mg"}
            stamp = f"{self.day(when)}T10:30:00Z"
            if as_orders:
                self.add(
                    "MedicationRequest",
                    {
                        "status": "completed",
                        "intent": "order",
                        "medicationCodeableConcept": medication,
                        "subject": self.ref,
                        "authoredOn": stamp,
                        "dosageInstruction": [
                            {
                                "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
                                **({"doseAndRate": [{"doseQuantity": dose}]} if dose else {}),
                            }
                        ],
                    },
                )
            else:
                self.add(
                    "MedicationAdministration",
                    {
                        "status": "completed",
                        "medicationCodeableConcept": medication,
                        "subject": self.ref,
                        "effectiveDateTime": stamp,
                        **({"dosage": {"dose": dose}} if dose else {}),
                    },
                )
            if self.rng.random() < 0.3:
                self.add(
                    "Encounter",
                    {
                        "status": "finished",
                        "class": {"code": "AMB"},
                        "subject": self.ref,
                        "period": {"start": stamp, "end": stamp},
                    },
                )

    def surgery(self, days_ago: int) -> None:
        self.add(
            "Procedure",
            {
                "status": "completed",
                "code": concept(SNOMED, "64368001", "Partial mastectomy (procedure)"),
                "subject": self.ref,
                "performedDateTime": self.day(days_ago),
            },
        )

    def tnm(self, code: str, display: str, days_ago: int, text: str) -> None:
        self.obs(code, display, days_ago, {"valueCodeableConcept": {"text": text}}, category=None)


def cycles(start_days_ago: int, count: int, every: int = 21) -> list[int]:
    """Days-ago of ``count`` doses every ``every`` days from ``start_days_ago`` (never in the future)."""
    return [start_days_ago - i * every for i in range(count) if start_days_ago - i * every >= 1]


def _current_labs(c: Chart, tox: dict[str, float] | None = None) -> None:
    """Labs for a patient on an ADC: usually fresh (<= 3 days), sometimes stale (a labs gap)."""
    days = c.rng.choice([0, 1, 1, 2, 3]) if c.rng.random() < 0.85 else c.rng.randint(6, 25)
    c.labs(days + 30)
    c.labs(days, **(tox or {}))


def _lvef_series(c: Chart, baseline_days_ago: int, drop: float = 0.0) -> None:
    base = round(c.rng.uniform(55, 68))
    c.lvef(baseline_days_ago, base)
    if c.rng.random() < 0.12:
        return  # no follow-up scan: the LVEF gap
    c.lvef(max(5, baseline_days_ago // 2), base - round(drop / 2))
    c.lvef(c.rng.randint(5, 60), base - drop)


def _antibodies(c: Chart) -> list[str]:
    """The HER2 antibodies of the first-line regimen (its agents that are not taxanes)."""
    thp = c.regimen(FIRST_LINE)
    return [a for a in thp if a not in c.in_class(thp, "taxane")]


def _first_line(
    c: Chart, start: int, taxane_cycles: int, antibody_cycles: int, taxane_orders: bool = False
) -> None:
    """The first-line regimen: its taxane for ``taxane_cycles``, its antibodies for longer."""
    thp = c.regimen(FIRST_LINE)
    for agent in c.in_class(thp, "taxane"):
        c.give(agent, cycles(start, taxane_cycles), as_orders=taxane_orders)
    for agent in _antibodies(c):
        c.give(agent, cycles(start, antibody_cycles))


def _ebc_adjuvant_hp(c: Chart) -> None:
    bc = c.breast_cancer(300)
    del bc
    c.her2("3+", 298, er=c.rng.random() < 0.6, pr=c.rng.random() < 0.5)
    start = c.rng.randint(120, 250)
    thp = c.regimen(FIRST_LINE)
    taxanes = c.in_class(thp, "taxane")
    for agent in taxanes:
        c.give(agent, cycles(start, 6), as_orders=c.rng.random() < 0.3)
    antibodies = [a for a in thp if a not in taxanes]
    c.give(antibodies[0], cycles(start, 17))
    if c.rng.random() < 0.5:
        for agent in antibodies[1:]:
            c.give(agent, cycles(start, 17))
    _lvef_series(c, start + 7, drop=c.rng.choice([0, 0, 0, 3, 5, 12, 17]))
    c.weigh(c.rng.randint(1, 40))
    c.labs(c.rng.randint(1, 30))


def _ebc_residual(c: Chart) -> None:
    c.breast_cancer(240)
    c.her2("3+", 238, er=c.rng.random() < 0.5, pr=False)
    c.tnm("21905-5", "Primary tumor.clinical [Class] Cancer", 236, c.rng.choice(["cT2", "cT3"]))
    c.tnm("21906-3", "Regional lymph nodes.clinical [Class] Cancer", 236, c.rng.choice(["cN0", "cN1"]))
    c.lvef(232, round(c.rng.uniform(58, 66)))
    start = 225
    _first_line(c, start, 6, 6)
    surgery = c.rng.randint(20, 75)
    c.surgery(surgery)
    c.tnm("21899-0", "Primary tumor.pathology Cancer", surgery, c.rng.choice(["ypT1c", "ypT1b", "ypT2"]))
    c.tnm("21900-6", "Regional lymph nodes.pathology Cancer", surgery, c.rng.choice(["ypN0", "ypN1a"]))
    c.weigh(c.rng.randint(1, 20))
    c.labs(c.rng.randint(1, 20))


def _ebc_surveillance(c: Chart) -> None:
    c.breast_cancer(1400)
    c.her2("3+", 1398)
    c.give(_antibodies(c)[0], cycles(1380, 18))
    c.lvef(1385, 62)
    c.labs(c.rng.randint(30, 200))


def _mbc_base(c: Chart, since: int, score: str = "3+", brain: bool = False) -> JSON:
    bc = c.breast_cancer(since + 7)
    c.metastasis(since)
    if brain:
        c.metastasis(since // 3, brain=True)
    c.her2(score, since + 4, er=c.rng.random() < 0.55, pr=c.rng.random() < 0.4)
    return bc


def _mbc_untreated(c: Chart) -> None:
    since = c.rng.randint(10, 40)
    _mbc_base(c, since)
    c.lvef(since - 3 if since > 5 else 1, round(c.rng.uniform(55, 66)))
    c.weigh(c.rng.randint(1, 10))
    c.labs(c.rng.randint(1, 10))


def _mbc_first_line_stable(c: Chart) -> None:
    since = c.rng.randint(150, 500)
    bc = _mbc_base(c, since)
    start = since - 10
    n = start // 21 + 1
    _first_line(c, start, 6, n, taxane_orders=c.rng.random() < 0.2)
    c.status(c.rng.randint(10, 60), False, bc)
    _lvef_series(c, start + 5, drop=c.rng.choice([0, 0, 0, 2, 4, 8, 12, 18]))
    c.weigh(c.rng.randint(1, 45))
    c.labs(c.rng.randint(1, 20))


def _mbc_progressed(c: Chart) -> None:
    since = c.rng.randint(250, 420)
    bc = _mbc_base(c, since)
    start = since - 10
    _first_line(c, start, 6, 11)
    c.status(c.rng.randint(3, 20), True, bc)
    _lvef_series(c, start + 5)
    c.weigh(c.rng.randint(1, 20))
    c.labs(c.rng.randint(1, 5))


def _second_line(c: Chart, drug: int, tox: dict[str, float], ild: bool = False) -> None:
    since = c.rng.randint(420, 700)
    bc = _mbc_base(c, since)
    first = since - 10
    _first_line(c, first, 6, 8)
    progressed = first - 8 * 21
    c.status(progressed, True, bc)
    c.lvef(first + 5, round(c.rng.uniform(56, 66)))
    start = progressed - 14
    c.labs(start + 3)
    for agent in c.regimen(drug):
        c.give(agent, cycles(start, start // 21 + 1))
    _lvef_series(c, start + 4, drop=c.rng.choice([0, 0, 0, 3, 6, 12]))
    c.status(c.rng.randint(20, 60), False, bc)
    if ild:
        c.condition(SNOMED, "205237003", "Pneumonitis (disorder)", c.rng.randint(3, 15))
    c.weigh(c.rng.randint(1, 25))
    _current_labs(c, tox)


def _mbc_adc_a(c: Chart) -> None:
    roll = c.rng.random()
    tox: dict[str, float] = {}
    if roll < 0.12:
        tox = {"plt": c.rng.uniform(26, 49)}
    elif roll < 0.17:
        tox = {"plt": c.rng.uniform(12, 24)}
    elif roll < 0.25:
        tox = {"ast": c.rng.uniform(2.7, 4.9), "alt": c.rng.uniform(1.0, 2.4)}
    elif roll < 0.30:
        tox = {"ast": c.rng.uniform(5.5, 12), "alt": c.rng.uniform(5.5, 10)}
    elif roll < 0.34:
        tox = {"bili": c.rng.uniform(1.7, 2.8)}
    _second_line(c, ADC_A, tox)


def _mbc_adc_b(c: Chart) -> None:
    roll = c.rng.random()
    tox: dict[str, float] = {}
    if roll < 0.10:
        tox = {"anc": c.rng.uniform(0.55, 0.95)}
    elif roll < 0.13:
        tox = {"anc": c.rng.uniform(0.2, 0.45)}
    elif roll < 0.18:
        tox = {"plt": c.rng.uniform(26, 49)}
    _second_line(c, ADC_B, tox, ild=c.rng.random() < 0.03)


def _mbc_later_line(c: Chart) -> None:
    since = c.rng.randint(700, 900)
    bc = _mbc_base(c, since, brain=c.rng.random() < 0.3)
    first = since - 10
    _first_line(c, first, 6, 10)
    c.status(first - 220, True, bc)
    c.lvef(first + 3, 63)
    second = first - 240
    for agent in c.regimen(ADC_B):
        c.give(agent, cycles(second, 14))
    c.lvef(second + 3, 61)
    c.status(c.rng.randint(5, 30), True, bc)
    c.weigh(c.rng.randint(1, 20))
    c.labs(c.rng.randint(1, 5))


def _her2_low(c: Chart) -> None:
    since = c.rng.randint(300, 800)
    score = c.rng.choice(["1+", "1+", "2+"])
    bc = c.breast_cancer(since + 400)
    c.metastasis(since)
    c.her2(score, since + 3, ish=False if score == "2+" else None, er=True, pr=c.rng.random() < 0.7)
    oral = [a for a in c.catalogue.with_class("endocrine") if c.catalogue.agents[a].route == "oral"]
    endocrine = sorted(oral)
    c.give(c.rng.choice(endocrine), cycles(since - 5, 12, every=28), as_orders=True)
    c.status(c.rng.randint(5, 40), True, bc)
    c.labs(c.rng.randint(1, 10))


def _her2_zero(c: Chart) -> None:
    since = c.rng.randint(60, 500)
    c.breast_cancer(since + 300)
    c.metastasis(since)
    c.her2("0", since + 3, er=c.rng.random() < 0.6, pr=False)
    taxane = [a for a in c.catalogue.with_class("taxane") if a not in c.regimen(FIRST_LINE)]
    c.give(c.rng.choice(taxane), cycles(since - 7, 6, every=7), as_orders=True)
    c.labs(c.rng.randint(1, 15))


def _her2_equivocal(c: Chart) -> None:
    c.breast_cancer(40)
    c.her2("2+", 35)
    c.labs(c.rng.randint(1, 15))


def _her2_untested(c: Chart) -> None:
    c.breast_cancer(c.rng.randint(20, 60))
    c.labs(c.rng.randint(1, 15))


def _no_breast_cancer(c: Chart) -> None:
    c.condition(ICD10, "I10", "Essential (primary) hypertension", c.rng.randint(300, 3000))
    if c.rng.random() < 0.5:
        c.condition(
            ICD10, "E11.9", "Type 2 diabetes mellitus without complications", c.rng.randint(300, 3000)
        )
    c.labs(c.rng.randint(1, 200))


BUILDERS: dict[str, Callable[[Chart], None]] = {
    "ebc-adjuvant-hp": _ebc_adjuvant_hp,
    "ebc-residual": _ebc_residual,
    "ebc-surveillance": _ebc_surveillance,
    "mbc-untreated": _mbc_untreated,
    "mbc-first-line-stable": _mbc_first_line_stable,
    "mbc-progressed-first-line": _mbc_progressed,
    "mbc-second-line-adc-a": _mbc_adc_a,
    "mbc-second-line-adc-b": _mbc_adc_b,
    "mbc-later-line": _mbc_later_line,
    "her2-low-mbc": _her2_low,
    "her2-zero": _her2_zero,
    "her2-equivocal": _her2_equivocal,
    "her2-untested": _her2_untested,
    "no-breast-cancer": _no_breast_cancer,
}


def make_patient(seed: int, index: int, as_of: date, catalogue: Catalogue) -> tuple[str, list[JSON]]:
    """(scenario, resources) of patient ``index`` of the cohort with ``seed``."""
    rng = random.Random(f"{seed}:{index}")
    names = list(SCENARIOS)
    scenario = rng.choices(names, weights=[SCENARIOS[n][0] for n in names])[0]
    chart = Chart(f"syn{seed}-{index:07d}", rng, as_of, catalogue)
    male = (scenario == "no-breast-cancer" and rng.random() < 0.5) or rng.random() < 0.01
    chart.patient(
        "male" if male else "female",
        rng.randint(60, 85) if scenario == "no-breast-cancer" else rng.randint(56, 84),
    )
    BUILDERS[scenario](chart)
    return scenario, chart.resources


@dataclass
class SynthStats:
    """What was written."""

    patients: int
    resources: int
    files: int
    by_scenario: dict[str, int]


class _Writer:
    """Per-type NDJSON files, rolled over every ``max_lines`` lines, as ``$export`` writes them."""

    def __init__(self, out: Path, gz: bool, max_lines: int) -> None:
        self.out, self.gz, self.max_lines = out, gz, max_lines
        self.handles: dict[str, IO[bytes]] = {}
        self.lines: dict[str, int] = {}
        self.parts: dict[str, int] = {}
        self.files = 0

    def _open(self, rtype: str) -> IO[bytes]:
        part = self.parts.get(rtype, -1) + 1
        self.parts[rtype] = part
        self.lines[rtype] = 0
        self.files += 1
        path = self.out / f"{rtype}.{part:03d}.ndjson{'.gz' if self.gz else ''}"
        return gzip.open(path, "wb", compresslevel=3) if self.gz else path.open("wb")  # type: ignore[return-value]

    def write(self, resource: JSON) -> None:
        rtype = resource["resourceType"]
        handle = self.handles.get(rtype)
        if handle is None or self.lines[rtype] >= self.max_lines:
            if handle is not None:
                handle.close()
            handle = self.handles[rtype] = self._open(rtype)
        handle.write(orjson.dumps(resource) + b"\n")
        self.lines[rtype] += 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def write_cohort(
    out: Path,
    patients: int,
    seed: int,
    as_of: date,
    gz: bool = False,
    max_lines: int = 1_000_000,
    on_progress: Callable[[int], None] | None = None,
    rules: Path | None = None,
) -> SynthStats:
    """Write ``patients`` synthetic patients as Bulk NDJSON into ``out`` (plus synth-truth.csv).
    Drugs, codes, names and doses come from the drug catalogue of ``rules`` (default: bundled)."""
    catalogue = load_catalogue((rules or default_rules_dir()) / "catalogue")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ndjson*"):
        old.unlink()
    writer = _Writer(out, gz, max_lines)
    by_scenario: dict[str, int] = {}
    resources = 0
    with (out / "synth-truth.csv").open("w", encoding="utf-8") as truth:
        truth.write("patient,scenario,her2_category,setting,signature\n")
        for index in range(patients):
            scenario, chart = make_patient(seed, index, as_of, catalogue)
            for resource in chart:
                writer.write(resource)
            resources += len(chart)
            by_scenario[scenario] = by_scenario.get(scenario, 0) + 1
            _, category, setting, signature = SCENARIOS[scenario]
            truth.write(f"{chart[0]['id']},{scenario},{category},{setting},{signature or ''}\n")
            if on_progress is not None and (index + 1) % 1000 == 0:
                on_progress(index + 1)
    writer.close()
    return SynthStats(patients, resources, writer.files, dict(sorted(by_scenario.items())))

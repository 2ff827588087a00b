"""Adding a drug is data only: a copy of ``rules/`` gains a fictitious HER2-directed ADC and a new
trastuzumab biosimilar in YAML, and the engine recognises both in history, on orders, in dose
checks and on cards, with no code change."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds import Evaluator, parse_as_of, raw_patient_from_resources
from cds.engine.library import RuleLibrary, load_library
from cds.findings.cards import CardContext, render
from cds.knowledge.catalogue import load_catalogue
from tests.conftest import ROOT
from tests.core.test_derivations import RX, P, admin, breast, obs, patient, qty

AS_OF = "2026-11-01"
ADC_CODE = "9900001"  # fictitious RxNorm ingredient code
ADC_BRAND_CODE = "9900002"
BIOSIMILAR_CODE = "9900003"

NEW_AGENT = {
    "display": "T-ZZx",
    "name": "zz-trastuzumab zetacan",
    "classes": ["her2_directed"],
    "rxnorm": [ADC_CODE],
    "names": ["zz-trastuzumab zetacan", "trastuzumab zetacan", "zetacan", "t-zzx"],
    "covers": ["trastuzumab"],
    "route": "iv",
    "dose": {"basis": "mg/kg", "reductions": True, "levels": [4.8, 3.6, 2.7]},
    "safety_rulesets": ["tdxd-safety"],
    "source": "fictitious agent for the catalogue extension test",
}
NEW_PRODUCTS = {
    "zetara": {
        "display": "Zetara (T-ZZx)",
        "agents": ["tzzx"],
        "rxnorm": [ADC_BRAND_CODE],
        "names": ["zetara"],
        "covers": ["trastuzumab"],
        "route": "iv",
        "source": "fictitious brand",
    },
    "trastura": {
        "display": "Trastura (trastuzumab-qqqq)",
        "agents": ["trastuzumab"],
        "rxnorm": [BIOSIMILAR_CODE],
        "names": ["trastura", "trastuzumab-qqqq"],
        "route": "iv",
        "source": "fictitious biosimilar",
    },
}
NEW_REGIMEN = {"display": "T-ZZx monotherapy", "agents": ["tzzx"], "source": "fictitious"}


def _add(path: Path, key: str, entries: dict[str, Any]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data[key].update(entries)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> RuleLibrary:
    rules = tmp_path_factory.mktemp("ext") / "rules"
    shutil.copytree(ROOT / "rules", rules)
    catalogue = rules / "catalogue"
    _add(catalogue / "agents.yaml", "agents", {"tzzx": NEW_AGENT})
    _add(catalogue / "products.yaml", "products", NEW_PRODUCTS)
    _add(catalogue / "regimens.yaml", "regimens", {"t-zzx": NEW_REGIMEN})
    return load_library(rules)


def _evaluate(library: RuleLibrary, *resources: dict[str, Any], order: dict[str, Any] | None = None) -> Any:
    raw = raw_patient_from_resources([patient(), *resources], "test")
    return Evaluator(library).evaluate(raw, as_of=parse_as_of(AS_OF), order=order)


def _order(text: str | None = None, code: str | None = None, dose: float = 4.8) -> dict[str, Any]:
    med: dict[str, Any] = {}
    if code:
        med["coding"] = [{"system": RX, "code": code}]
    if text:
        med["text"] = text
    return {
        "resourceType": "MedicationRequest",
        "id": "draft",
        "status": "draft",
        "intent": "order",
        "subject": P,
        "medicationCodeableConcept": med,
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mg/kg"}}]}],
    }


def _metastatic(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        breast("2019-01-01"),
        obs("her2", "85319-2", "2020-01-05", valueCodeableConcept={"text": "3+"}),
        {
            "resourceType": "Condition",
            "id": "met",
            "subject": P,
            "onsetDateTime": "2025-01-01",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94391008"}]},
        },
        *extra,
    ]


def test_the_new_agent_and_biosimilar_are_yaml_only(extended: RuleLibrary) -> None:
    catalogue = extended.catalogue
    assert (catalogue.display("tzzx"), catalogue.display("trastura")) == (
        "T-ZZx",
        "Trastura (trastuzumab-qqqq)",
    )
    assert load_catalogue(ROOT / "rules" / "catalogue").agents.get("tzzx") is None  # the repo is untouched


def test_history_exposure_and_lines(extended: RuleLibrary) -> None:
    result = _evaluate(
        extended,
        *_metastatic(
            admin("b1", "2025-01-10", text="Trastura 420 mg"),
            admin("b2", "2025-01-10", code="1298944"),
            admin("z1", "2026-10-20", code=ADC_BRAND_CODE, dose=4.8),
        ),
    )
    facts = result.facts
    assert (
        facts.get("exposure.trastuzumab.ever"),
        facts.get("exposure.tzzx.ever"),
        facts.get("therapy.on.tzzx"),
    ) == (
        True,
        True,
        True,
    )
    assert facts.get("exposure.tzzx.ever") and not facts.get("exposure.tdxd.ever")
    assert (facts.lines.prior_metastatic, facts.lines.current_regimen) == (2, "tzzx")
    assert (facts.get("therapy.dose_level.tzzx"), facts.get("therapy.on_her2_directed")) == (1, True)
    assert facts.resources_for("exposure.trastuzumab") == ["MedicationAdministration/b1"]


def test_names_of_the_new_agent_are_never_trastuzumab(extended: RuleLibrary) -> None:
    facts = _evaluate(extended, breast(), admin("z1", "2026-10-20", text="zz-trastuzumab zetacan-abcd")).facts
    assert sorted(k for k, v in facts.therapy.on.items() if v) == ["tzzx"]


def test_orders_dose_checks_and_reescalation(extended: RuleLibrary) -> None:
    facts = _evaluate(extended, breast(), order=_order(text="Zetara", dose=4.8)).facts
    assert (facts.order.agent, facts.order.product, facts.order.dose_fit, facts.order.dose_level) == (
        "tzzx",
        "zetara",
        "at-level",
        1,
    )
    above = _evaluate(
        extended,
        breast(),
        obs("w", "29463-7", "2026-10-30", **qty(60, "kg")),
        order=_order(code=ADC_CODE, dose=6.0),
    )
    codes = {f.code: f for f in above.evaluation.findings}
    assert above.facts.order.dose_fit == "above-max"
    assert codes["order.dose-out-of-range"].severity == "critical"
    assert (
        "T-ZZx" in codes["order.dose-out-of-range"].summary
        and "4.8/3.6/2.7 mg/kg" in codes["order.dose-out-of-range"].detail
    )
    # 6 mg/kg of the new ADC is a trastuzumab maintenance level: name confusion, do not substitute
    assert above.facts.order.matches_other_agent == "trastuzumab" and "order.name-confusion" in codes
    reduced = _evaluate(
        extended,
        breast(),
        admin("z1", "2026-10-01", text="T-ZZx", dose=3.6),
        order=_order(text="T-ZZx", dose=4.8),
    )
    assert (reduced.facts.get("therapy.dose_level.tzzx"), reduced.facts.order.reescalation) == (2, True)
    assert "order.dose-reescalation" in {f.code for f in reduced.evaluation.findings}


def test_a_biosimilar_order_is_checked_as_trastuzumab(extended: RuleLibrary) -> None:
    facts = _evaluate(extended, breast(), order=_order(code=BIOSIMILAR_CODE, dose=6.0)).facts
    assert (facts.order.agent, facts.order.product, facts.order.dose_fit, facts.order.name_conflict) == (
        "trastuzumab",
        "trastura",
        "at-level",
        False,
    )
    conflict = _evaluate(extended, breast(), order=_order(code=BIOSIMILAR_CODE, text="Zetara")).facts
    assert (conflict.order.agent, conflict.order.name_conflict) == ("ambiguous", True)


def test_cards_show_display_names(extended: RuleLibrary) -> None:
    result = _evaluate(
        extended,
        breast(),
        obs("w", "29463-7", "2026-10-30", **qty(60, "kg")),
        order=_order(text="Zetara", dose=6.0),
    )
    context = CardContext(
        "her2-order-safety",
        "Patient/p",
        extended.parameters,
        "MedicationRequest/draft",
        {},
        catalogue=extended.catalogue,
    )
    cards = render([(result.evaluation.findings, context)])
    summaries = [c["summary"] for c in cards.cards]
    assert any("T-ZZx" in s for s in summaries) and not any("tzzx" in s for s in summaries)


def test_a_regimen_of_the_new_agent_gets_a_card_suggestion(extended: RuleLibrary) -> None:
    from cds.findings.cards import regimen_drugs

    label, drugs = regimen_drugs(extended.catalogue, "t-zzx") or ("", ())
    assert label == "T-ZZx monotherapy"
    assert [(d.display, d.rxnorm, d.dose, d.unit, d.route) for d in drugs] == [
        ("T-ZZx (zz-trastuzumab zetacan)", ADC_CODE, 4.8, "mg/kg", "IV")
    ]

"""An unreadable record is named in gap.unreadable-data when it names a HER2-directed drug of the
catalogue — by RxNorm code, by a product name (a product counts as its agents) — and not when it
names only a drug of another class."""

from __future__ import annotations

import pytest

from cds.fhir.valuesets import ValueSets, load_valuesets
from cds.knowledge.catalogue import load_catalogue
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def vs() -> ValueSets:
    rules = ROOT / "rules"
    return load_valuesets(rules / "valuesets", load_catalogue(rules / "catalogue"))


def med(concept: dict[str, object]) -> dict[str, object]:
    return {"medicationCodeableConcept": concept}


def test_an_adc_rxnorm_code_is_relevant(vs: ValueSets) -> None:
    code = vs.catalogue.agents["tdxd"].rxnorm[0]
    assert vs.relevance(med({"coding": [{"code": code}]}), ()) == [
        f"HER2-directed drug {vs.catalogue.display('tdxd')} ({code})"
    ]


def test_a_combination_product_named_in_text_is_each_of_its_her2_agents(vs: ValueSets) -> None:
    product = next(p for p in vs.catalogue.products.values() if len(p.agents) > 1)
    expected = [f"HER2-directed drug {vs.catalogue.display(a)}" for a in product.agents]
    assert sorted(vs.relevance(med({"text": product.names[0]}), ())) == sorted(expected)


def test_a_drug_of_another_class_is_not_relevant(vs: ValueSets) -> None:
    taxane = vs.catalogue.with_class("taxane")[0]
    assert vs.relevance(med({"text": vs.catalogue.agents[taxane].name}), ()) == []

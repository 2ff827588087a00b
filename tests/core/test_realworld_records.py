"""Realistic record variants, evaluated end to end with the real engine: text read in context,
other primaries, codes outside the value sets, new units, unreadable resources (clinical-spec v2).

Each test starts from a sample patient and changes only how one fact is recorded."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from cds import Evaluator, parse_as_of, raw_patient_from_bytes
from cds.findings.model import Finding
from tests.conftest import SAMPLES

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((SAMPLES / f"{name}.json").read_bytes())
    return copy.deepcopy(doc)


def pid(doc: dict[str, Any]) -> str:
    return next(e["resource"]["id"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")


def resource(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in doc["entry"] if e["resource"].get("id") == rid)


def add(doc: dict[str, Any], *resources: dict[str, Any]) -> dict[str, Any]:
    for r in resources:
        r.setdefault("subject", {"reference": f"Patient/{pid(doc)}"})
        doc["entry"].append({"resource": r})
    return doc


def drop(doc: dict[str, Any], rid: str) -> dict[str, Any]:
    doc["entry"] = [e for e in doc["entry"] if e["resource"].get("id") != rid]
    return doc


def condition(
    cid: str, text: str | None = None, coding: tuple[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    code: dict[str, Any] = {}
    if coding:
        code["coding"] = [{"system": coding[0], "code": coding[1]}]
    if text:
        code["text"] = text
    return {"resourceType": "Condition", "id": cid, "code": code, "onsetDateTime": "2026-01-15", **extra}


def evaluate(evaluator: Evaluator, doc: dict[str, Any], as_of: str = "2026-11-01") -> dict[str, Finding]:
    result = evaluator.evaluate(raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of(as_of))
    return {f.code: f for f in result.evaluation.findings}


def facts_of(evaluator: Evaluator, doc: dict[str, Any], as_of: str = "2026-11-01") -> Any:
    return evaluator.evaluate(raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of(as_of)).facts


# ---- ILD read from text ----------------------------------------------------------------------------
def test_pulmonary_fibrosis_in_text_only_is_ild_history_with_review(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), condition("fib", text="Pulmonary fibrosis (CT 2025)"))
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.thp"]  # T-DXd + pertuzumab is not offered with ILD history
    assert got["rec.mbc1.thp"].review_required is True
    assert "only as free text" in got["rec.mbc1.thp"].detail


def test_possible_pneumonitis_is_not_ild_but_reviews_the_tdxd_recommendation(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), condition("pn", text="Possible drug-induced pneumonitis"))
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert got["rec.mbc1.tdxd-pertuzumab"].review_required is True
    assert "uncertainty" in got["rec.mbc1.tdxd-pertuzumab"].detail


def test_negated_ild_changes_nothing(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), condition("no", text="No evidence of interstitial lung disease"))
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert not any(f.review_required for f in got.values())


def test_coded_ild_needs_no_text_review(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), condition("ild", text="ILD", coding=(ICD, "J84.10")))
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.thp"]
    assert got["rec.mbc1.thp"].review_required is False


# ---- hormone receptors written as text ------------------------------------------------------------------
def test_er_low_positive_marks_the_her2_low_recommendation_for_review(evaluator: Evaluator) -> None:
    doc = sample("her2-ultralow-hr-positive")
    for e in doc["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] in ("85337-4", "85339-0"):
            r.pop("valueCodeableConcept", None)
            r["valueString"] = (
                "ER low positive (1–10%)"
                if r["code"]["coding"][0]["code"] == "85337-4"
                else "PR negative (<1%)"
            )
    got = evaluate(evaluator, doc)
    assert got["rec.her2low.tdxd"].review_required is True
    assert "ER-low" in got["rec.her2low.tdxd"].detail


# ---- HER2 IHC written as a pathologist writes it --------------------------------------------------------
def _with_ihc(value: dict[str, Any]) -> dict[str, Any]:
    doc = sample("her2-ultralow-hr-positive")
    ihc = resource(doc, "her2-ultralow-hr-positive-obs1")
    ihc.pop("valueCodeableConcept")
    ihc.update(value)
    return doc


def test_ultralow_written_as_zero_plus_with_staining_still_gets_tdxd(evaluator: Evaluator) -> None:
    doc = _with_ihc(
        {
            "valueCodeableConcept": {
                "coding": [{"system": "http://loinc.org", "code": "LA6577-6", "display": "Negative"}],
                "text": "HER2 IHC 0+ (barely perceptible incomplete staining in ≤10% of tumour cells)",
            }
        }
    )
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.her2low.tdxd"]


def test_zero_null_gets_no_her2_therapy(evaluator: Evaluator) -> None:
    got = evaluate(evaluator, _with_ihc({"valueString": "Score 0 (null) - no staining"}))
    assert sorted(got) == ["info.her2-negative"]


def test_self_contradictory_ihc_is_a_her2_gap(evaluator: Evaluator) -> None:
    got = evaluate(
        evaluator, _with_ihc({"valueString": "0 (null); faint incomplete staining in 5% of cells"})
    )
    assert sorted(got) == ["gap.her2-unknown"]


# ---- the metastatic setting belongs to the breast primary ---------------------------------------------
def test_breast_cancer_metastatic_to_axillary_nodes_stays_early(evaluator: Evaluator) -> None:
    doc = sample("tdm1-ebc-katherine-table")
    resource(doc, "tdm1-ebc-katherine-table-cond1")["code"]["text"] = (
        "Invasive ductal carcinoma of left breast, metastatic to axillary lymph nodes (3/12)"
    )
    f = facts_of(evaluator, doc)
    assert (f.setting, f.review.metastasis) == ("early", False)
    assert sorted(evaluate(evaluator, doc)) == ["alert.tdm1-ebc.alt-hold", "alert.tdm1-ebc.platelets-hold"]


LUNG = condition("lung", text="Adenocarcinoma of lung", coding=(ICD, "C34.90"))


def test_bone_metastases_with_an_unlinked_lung_primary_are_not_breast_metastases(
    evaluator: Evaluator,
) -> None:
    doc = add(sample("mbc-first-line"), LUNG)
    f = facts_of(evaluator, doc)
    assert (f.setting, f.review.metastasis_primary_unknown) == ("early", True)
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["gap.metastasis-primary"]
    assert got["gap.metastasis-primary"].severity == "warning"
    assert "adenocarcinoma of lung" in got["gap.metastasis-primary"].detail


def test_every_recommendation_is_reviewed_while_a_metastasis_primary_is_unknown(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), LUNG)
    # breast evidence alone is metastatic too (liver metastasis linked to the breast primary) ...
    liver = condition(
        "liver",
        coding=(ICD, "C78.7"),
        extension=[
            {
                "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-related-primary-cancer-condition",
                "valueReference": {"reference": "Condition/mbc-first-line-cond1"},
            }
        ],
    )
    # ... but the bone metastasis is linked to neither primary
    got = evaluate(evaluator, add(doc, liver))
    assert sorted(got) == ["gap.metastasis-primary", "rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert got["rec.mbc1.thp"].review_required and got["rec.mbc1.tdxd-pertuzumab"].review_required
    assert "metastases of unknown primary" in got["rec.mbc1.thp"].detail


def test_a_metastasis_linked_to_the_breast_primary_counts_without_a_gap(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), LUNG)
    bone = resource(doc, "mbc-first-line-cond2")
    bone["extension"] = [
        {
            "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-related-primary-cancer-condition",
            "valueReference": {"reference": "Condition/mbc-first-line-cond1"},
        }
    ]
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert not any(f.review_required for f in got.values())


def test_a_metastasis_linked_to_the_other_primary_leaves_breast_early_without_a_gap(
    evaluator: Evaluator,
) -> None:
    doc = add(sample("mbc-first-line"), LUNG)
    resource(doc, "mbc-first-line-cond2")["evidence"] = [{"detail": [{"reference": "Condition/lung"}]}]
    f = facts_of(evaluator, doc)
    assert (f.setting, f.review.metastasis_primary_unknown) == ("early", False)


def test_without_another_primary_an_unlinked_metastasis_counts(evaluator: Evaluator) -> None:
    f = facts_of(evaluator, sample("mbc-first-line"))
    assert (f.setting, f.review.metastasis_primary_unknown) == ("metastatic", False)


def test_metastatic_in_the_breast_condition_text_only_counts_with_review(evaluator: Evaluator) -> None:
    doc = drop(sample("mbc-first-line"), "mbc-first-line-cond2")
    resource(doc, "mbc-first-line-cond1")["code"]["text"] = "Metastatic carcinoma of left breast (bone)"
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert all(f.review_required for f in got.values())
    assert "only as free text" in got["rec.mbc1.thp"].detail


def test_possible_metastases_keep_early_setting_with_review(evaluator: Evaluator) -> None:
    doc = drop(sample("mbc-first-line"), "mbc-first-line-cond2")
    add(doc, condition("liv", text="Possible liver metastases on CT"))
    f = facts_of(evaluator, doc)
    assert (f.setting, f.review.metastasis) == ("early", True)

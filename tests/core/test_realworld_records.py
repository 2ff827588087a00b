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


# ---- codes outside the lists, new units, LVEF fractions ------------------------------------------------
def test_ild_value_set_is_widened_and_ards_removed(library: Any) -> None:
    from cds.fhir.valuesets import Codings

    vs = library.valuesets
    for system, code in [(ICD, "J70.1"), (ICD, "J70.0"), (ICD, "J84.112"), (SNOMED, "233703007")]:
        assert vs.match("ild", Codings.of({"coding": [{"system": system, "code": code}]})) == "code", code
    for system, code in [(ICD, "J80"), (SNOMED, "67782005")]:
        assert vs.match("ild", Codings.of({"coding": [{"system": system, "code": code}]})) is None, code


def test_a_local_code_never_blocks_the_ild_text(evaluator: Evaluator) -> None:
    local = {
        "coding": [{"system": "urn:oid:1.2.3.4", "code": "PULMFIB"}],
        "text": "Idiopathic pulmonary fibrosis",
    }
    doc = add(sample("mbc-first-line"), {"resourceType": "Condition", "id": "ipf", "code": local})
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["rec.mbc1.thp"]
    assert got["rec.mbc1.thp"].review_required is True


def test_ards_is_not_ild(evaluator: Evaluator) -> None:
    ards = condition("ards", text="Acute respiratory distress syndrome", coding=(ICD, "J80"))
    got = evaluate(evaluator, add(sample("mbc-first-line"), ards))
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]


def _lab(code: str, value: float, unit: str, high: float | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"valueQuantity": {"value": value, "unit": unit}}
    if high is not None:
        q["referenceRange"] = [{"high": {"value": high, "unit": unit}}]
    return {
        "resourceType": "Observation",
        "id": f"lab-{code}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": "2026-10-31",
        **q,
    }


def test_platelet_spellings_of_real_feeds(evaluator: Evaluator) -> None:
    for unit in ("K/mcL", "10*3/mm3", "G/L", "/nL"):
        doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs6"), _lab("777-3", 42, unit))
        assert facts_of(evaluator, doc).labs.platelets.value == 42, unit


def test_transaminases_in_microkatal_are_times_sixty(evaluator: Evaluator) -> None:
    for unit in ("ukat/L", "µkat/L"):
        doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs9"), _lab("1742-6", 2.0, unit, high=0.6))
        alt = facts_of(evaluator, doc).labs.alt
        assert (alt.value, alt.x_uln) == (120.0, round(2.0 / 0.6, 4)), unit


def _lvef(value: float | None, unit: str | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "lvef-x",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "10230-1"}]},
        "effectiveDateTime": "2026-10-31",
        **extra,
    }
    if value is not None:
        out["valueQuantity"] = {"value": value} if unit is None else {"value": value, "unit": unit}
    return out


def test_lvef_fraction_without_unit_is_a_percentage(evaluator: Evaluator) -> None:
    for unit in (None, "1"):
        doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs4"), _lvef(0.58, unit))
        assert facts_of(evaluator, doc).lvef.value == 58.0, unit


def test_lvef_exactly_one_is_a_fraction_and_between_one_and_ten_is_implausible(evaluator: Evaluator) -> None:
    doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs4"), _lvef(1.0, None))
    assert facts_of(evaluator, doc).lvef.value == 100.0
    doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs4"), _lvef(5.8, None))
    f = facts_of(evaluator, doc)
    assert (f.lvef.value, f.lvef.unit_unrecognized) == (None, True)
    doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs4"), _lvef(None, None, valueString="0.55"))
    assert facts_of(evaluator, doc).lvef.value == 55.0


def test_lvef_in_percent_is_unchanged(evaluator: Evaluator) -> None:
    doc = add(drop(sample("mbc-first-line"), "mbc-first-line-obs4"), _lvef(58, "%"))
    assert facts_of(evaluator, doc).lvef.value == 58.0


# ---- progression from older mCODE codes and from a new metastatic site ---------------------------------
def _response(when: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "resp",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "88040-1"}]},
        "effectiveDateTime": when,
        "valueCodeableConcept": value,
    }


def test_progressive_disease_under_88040_1_is_progression(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-on-therapy-stable"), _response("2026-10-20", {"text": "Progressive disease"}))
    assert facts_of(evaluator, doc).progression == "yes"


def test_stable_disease_under_88040_1_is_not_progression(evaluator: Evaluator) -> None:
    doc = add(
        sample("mbc-on-therapy-stable"), _response("2026-10-20", {"text": "Stable disease, no progression"})
    )
    assert facts_of(evaluator, doc).progression == "no"


def test_a_new_metastatic_site_after_the_regimen_began_is_progression(evaluator: Evaluator) -> None:
    liver = condition("liver", coding=(ICD, "C78.7"))
    liver["onsetDateTime"] = "2026-10-01"
    f = facts_of(evaluator, add(sample("mbc-on-therapy-stable"), liver))
    assert (f.progression, f.metastatic_since) == ("yes", "2026-04-13")
    assert "Condition/liver" in f.resources_for("progression")


def test_the_same_site_recorded_again_is_not_a_new_site(evaluator: Evaluator) -> None:
    again = condition("lung-again", coding=(SNOMED, "94391008"))
    again["onsetDateTime"] = "2026-10-01"
    assert facts_of(evaluator, add(sample("mbc-on-therapy-stable"), again)).progression == "no"


def test_a_site_present_before_the_regimen_is_not_progression(evaluator: Evaluator) -> None:
    liver = condition("liver", coding=(ICD, "C78.7"))
    liver["onsetDateTime"] = "2026-04-20"  # before the first dose (2026-04-27)
    assert facts_of(evaluator, add(sample("mbc-on-therapy-stable"), liver)).progression == "no"


# ---- reference ranges by sex and age -------------------------------------------------------------------
def _alt_ranges(*ranges: dict[str, Any]) -> dict[str, Any]:
    obs = _lab("1742-6", 80, "U/L")
    obs["referenceRange"] = list(ranges)
    return obs


def _alt_facts(evaluator: Evaluator, *ranges: dict[str, Any], gender: str = "female") -> Any:
    doc = drop(sample("mbc-first-line"), "mbc-first-line-obs9")
    next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")["gender"] = gender
    return facts_of(evaluator, add(doc, _alt_ranges(*ranges))).labs.alt


def test_reference_range_for_the_patients_age_band_is_chosen(evaluator: Evaluator) -> None:
    young = {"high": {"value": 33}, "age": {"low": {"value": 18}, "high": {"value": 49}}}
    old = {"high": {"value": 40}, "age": {"low": {"value": 50}, "high": {"value": 120}}}
    alt = _alt_facts(evaluator, young, old)  # the sample patient is over 50
    assert alt.x_uln == 2.0


def test_a_specific_range_wins_over_the_general_one(evaluator: Evaluator) -> None:
    general = {"high": {"value": 50}}
    female = {"high": {"value": 40}, "appliesTo": [{"text": "female"}]}
    assert _alt_facts(evaluator, general, female).x_uln == 2.0


def test_two_matching_ranges_that_disagree_are_a_uln_gap(evaluator: Evaluator) -> None:
    a = {"high": {"value": 40}, "appliesTo": [{"text": "female"}]}
    b = {"high": {"value": 35}, "appliesTo": [{"coding": [{"system": SNOMED, "code": "248152002"}]}]}
    alt = _alt_facts(evaluator, a, b)
    assert (alt.x_uln, alt.uln_missing) == (None, True)


def test_a_range_for_another_group_only_is_a_uln_gap(evaluator: Evaluator) -> None:
    male = {"high": {"value": 50}, "appliesTo": [{"text": "Male"}]}
    alt = _alt_facts(evaluator, male)
    assert (alt.x_uln, alt.uln_missing) == (None, True)


# ---- records that cannot be read -------------------------------------------------------------------------
def test_a_resource_without_resource_type_is_skipped_and_named(evaluator: Evaluator) -> None:
    doc = sample("mbc-first-line")
    platelets = resource(doc, "mbc-first-line-obs6")
    del platelets["resourceType"]
    result = evaluator.evaluate(raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01"))
    got = {f.code: f for f in result.evaluation.findings}
    assert sorted(got) == ["gap.unreadable-data", "rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert "platelets result (777-3)" in got["gap.unreadable-data"].detail
    assert [(s.resource, s.reason) for s in result.evaluation.skipped] == [
        ("<no resourceType>/mbc-first-line-obs6", "cannot be read: no resourceType")
    ]


def test_an_unreadable_breast_cancer_diagnosis_is_not_silently_not_applicable(evaluator: Evaluator) -> None:
    doc = sample("mbc-first-line")
    del resource(doc, "mbc-first-line-cond1")["resourceType"]
    got = evaluate(evaluator, doc)
    assert sorted(got) == ["gap.unreadable-data", "info.not-applicable"]
    assert "breast cancer condition (C50.912)" in got["gap.unreadable-data"].detail


def test_an_invalid_ild_condition_raises_the_gap(evaluator: Evaluator) -> None:
    ild = condition("ild", text="Interstitial lung disease", coding=(ICD, "J84.9"))
    ild["onsetDateTime"] = "not a date"
    got = evaluate(evaluator, add(sample("mbc-first-line"), ild))
    assert "gap.unreadable-data" in got
    assert "ild condition (J84.9)" in got["gap.unreadable-data"].detail


def test_an_unreadable_her2_drug_order_raises_the_gap(evaluator: Evaluator) -> None:
    order = {
        "id": "ord",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Enhertu 5.4 mg/kg"},
    }
    got = evaluate(evaluator, add(sample("mbc-first-line"), order))
    assert "HER2-directed drug" in got["gap.unreadable-data"].detail


def test_an_unreadable_record_naming_nothing_of_interest_is_only_skipped(evaluator: Evaluator) -> None:
    doc = add(sample("mbc-first-line"), {"id": "enc", "class": {"code": "AMB"}})
    result = evaluator.evaluate(raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01"))
    assert sorted(f.code for f in result.evaluation.findings) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert [s.resource for s in result.evaluation.skipped] == ["<no resourceType>/enc"]


def test_a_bundle_entry_that_is_not_an_object_is_skipped(evaluator: Evaluator) -> None:
    doc = sample("mbc-first-line")
    doc["entry"].append({"resource": "platelets 42"})
    result = evaluator.evaluate(raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01"))
    assert [s.reason for s in result.evaluation.skipped] == ["cannot be read: not a resource"]


def test_the_cli_evaluates_a_bundle_holding_a_resource_without_resource_type(tmp_path: Any) -> None:
    import subprocess
    import sys

    doc = sample("mbc-first-line")
    del resource(doc, "mbc-first-line-obs6")["resourceType"]
    path = tmp_path / "no-type.json"
    path.write_bytes(orjson.dumps(doc))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cds.cli import main; main()",
            "evaluate",
            str(path),
            "--as-of",
            "2026-11-01",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert "gap.unreadable-data" in [f["code"] for f in out["findings"]]


# ---- content additions: pregnancy positive, T-DXd febrile neutropenia ---------------------------------
def _evaluate_with_order(evaluator: Evaluator, doc: dict[str, Any], order_name: str) -> dict[str, Finding]:
    from cds import read_order

    path = SAMPLES / "orders" / order_name
    order = read_order(path.read_bytes(), str(path))
    result = evaluator.evaluate(
        raw_patient_from_bytes(orjson.dumps(doc)), as_of=parse_as_of("2026-11-01"), order=order
    )
    return {f.code: f for f in result.evaluation.findings}


def _hcg(oid: str, when: str, **value: Any) -> dict[str, Any]:
    code = "19080-1" if "valueQuantity" in value else "2106-3"
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": when,
        **value,
    }


def _pregnancy_codes(evaluator: Evaluator, *tests: dict[str, Any]) -> list[str]:
    """The pregnancy alerts when ordering trastuzumab, with only these pregnancy tests on record."""
    doc = sample("order-pregnancy-unverified")
    doc["entry"] = [
        e
        for e in doc["entry"]
        if not (
            e["resource"]["resourceType"] == "Observation"
            and e["resource"]["code"]["coding"][0]["code"] in ("2106-3", "2118-8", "19080-1")
        )
    ]
    add(doc, *tests)
    got = _evaluate_with_order(evaluator, doc, "order-pregnancy-unverified.order.json")
    return sorted(c for c in got if c.startswith("alert.pregnancy"))


def test_a_positive_hcg_replaces_the_verify_alert(evaluator: Evaluator) -> None:
    hcg = _hcg("h", "2026-08-01", valueQuantity={"value": 30, "unit": "mIU/mL"})
    assert _pregnancy_codes(evaluator, hcg) == ["alert.pregnancy-positive"]


def test_hcg_exactly_25_is_positive_and_24_9_is_not(evaluator: Evaluator) -> None:
    at = _hcg("h", "2026-10-30", valueQuantity={"value": 25, "unit": "mIU/mL"})
    below = _hcg("h", "2026-10-30", valueQuantity={"value": 24.9, "unit": "mIU/mL"})
    assert _pregnancy_codes(evaluator, at) == ["alert.pregnancy-positive"]
    assert _pregnancy_codes(evaluator, below) == ["alert.pregnancy-unverified"]


def test_a_positive_urine_test_280_days_ago_counts_and_281_does_not(evaluator: Evaluator) -> None:
    day_280 = _hcg("u", "2026-01-25", valueCodeableConcept={"text": "Positive"})
    day_281 = _hcg("u", "2026-01-24", valueCodeableConcept={"text": "Positive"})
    assert _pregnancy_codes(evaluator, day_280) == ["alert.pregnancy-positive"]
    assert _pregnancy_codes(evaluator, day_281) == ["alert.pregnancy-unverified"]


def test_a_later_negative_test_clears_a_positive_one(evaluator: Evaluator) -> None:
    positive = _hcg("u1", "2026-06-01", valueCodeableConcept={"text": "Positive"})
    negative = _hcg("u2", "2026-09-01", valueCodeableConcept={"text": "Negative"})
    assert _pregnancy_codes(evaluator, positive, negative) == ["alert.pregnancy-unverified"]


def test_a_positive_test_while_on_tdxd_is_critical_without_an_order(evaluator: Evaluator) -> None:
    hcg = _hcg("h", "2026-10-20", valueQuantity={"value": 1200, "unit": "m[IU]/mL"})
    got = evaluate(evaluator, add(sample("tdxd-neutropenia-grade3"), hcg))
    assert got["alert.pregnancy-positive"].severity == "critical"


def _temperature(value: float, unit: str, when: str = "2026-10-31T20:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "temp",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit},
    }


def test_anc_below_one_with_fever_on_tdxd_is_febrile_neutropenia(evaluator: Evaluator) -> None:
    got = evaluate(evaluator, add(sample("tdxd-neutropenia-grade3"), _temperature(38.6, "Cel")))
    fn = got["alert.tdxd.febrile-neutropenia"]
    assert (fn.action, fn.severity, fn.review_required) == ("hold-reduce", "critical", True)


def test_fever_in_fahrenheit_is_converted(evaluator: Evaluator) -> None:
    assert "alert.tdxd.febrile-neutropenia" in evaluate(
        evaluator, add(sample("tdxd-neutropenia-grade3"), _temperature(101.3, "[degF]"))
    )  # 101.3 °F = 38.5 °C
    assert "alert.tdxd.febrile-neutropenia" not in evaluate(
        evaluator, add(sample("tdxd-neutropenia-grade3"), _temperature(100.4, "[degF]"))
    )  # 100.4 °F = 38.0 °C


def test_a_fever_days_away_from_the_anc_is_not_febrile_neutropenia(evaluator: Evaluator) -> None:
    late = _temperature(39.0, "Cel", when="2026-10-20T08:00:00Z")
    assert "alert.tdxd.febrile-neutropenia" not in evaluate(
        evaluator, add(sample("tdxd-neutropenia-grade3"), late)
    )


def test_coded_febrile_neutropenia_on_tdxd(evaluator: Evaluator) -> None:
    fn = condition("fn", coding=(SNOMED, "409089005"))
    fn["onsetDateTime"] = "2026-10-25"
    assert "alert.tdxd.febrile-neutropenia" in evaluate(evaluator, add(sample("tdxd-neutropenia-grade3"), fn))


def test_a_provisional_ild_diagnosis_is_not_ild_history_but_is_reviewed(evaluator: Evaluator) -> None:
    ild = condition("ild", coding=(ICD, "J84.9"))
    ild["verificationStatus"] = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}
        ]
    }
    got = evaluate(evaluator, add(sample("mbc-first-line"), ild))
    assert sorted(got) == ["rec.mbc1.tdxd-pertuzumab", "rec.mbc1.thp"]
    assert got["rec.mbc1.tdxd-pertuzumab"].review_required is True

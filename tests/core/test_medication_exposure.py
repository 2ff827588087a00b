"""Exposure from every medication resource, products and names from the drug catalogue, and the
therapy-side content of the version-2 amendments (each scenario asserts exact outcomes)."""

from __future__ import annotations

from typing import Any

import pytest

from cds import Evaluator, parse_as_of, raw_patient_from_resources
from cds.facts.model import PatientFacts
from cds.findings.model import Finding
from tests.core.test_derivations import RX, P, admin, breast, facts, obs, patient, qty

AS_OF = "2026-11-01"


def statement(
    sid: str,
    *,
    text: str | None = None,
    code: str | None = None,
    start: str | None = None,
    end: str | None = None,
    asserted: str | None = None,
    status: str = "active",
) -> dict[str, Any]:
    med: dict[str, Any] = {}
    if code:
        med["coding"] = [{"system": RX, "code": code}]
    if text:
        med["text"] = text
    out: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": sid,
        "status": status,
        "subject": P,
        "medicationCodeableConcept": med,
    }
    if start or end:
        out["effectivePeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    if asserted:
        out["dateAsserted"] = asserted
    return out


def request(
    rid: str,
    authored: str,
    *,
    text: str | None = None,
    code: str | None = None,
    dose: float | None = None,
    unit: str = "mg/kg",
    intent: str = "order",
    status: str = "completed",
    dose_and_rate: list[dict[str, Any]] | None = None,
    weeks: int | None = None,
) -> dict[str, Any]:
    med: dict[str, Any] = {}
    if code:
        med["coding"] = [{"system": RX, "code": code}]
    if text:
        med["text"] = text
    dosage: dict[str, Any] = {}
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose, "unit": unit}}]
    if dose_and_rate is not None:
        dosage["doseAndRate"] = dose_and_rate
    if weeks is not None:
        dosage["timing"] = {"repeat": {"frequency": 1, "period": weeks, "periodUnit": "wk"}}
    out: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "subject": P,
        "authoredOn": authored,
        "medicationCodeableConcept": med,
    }
    if dosage:
        out["dosageInstruction"] = [dosage]
    return out


def dispense(did: str, handed: str, *, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "MedicationDispense",
        "id": did,
        "status": status,
        "subject": P,
        "whenHandedOver": handed,
        "medicationCodeableConcept": {"text": text},
    }


def weight(kg: float, when: str = "2026-10-30") -> dict[str, Any]:
    return obs("wt", "29463-7", when, **qty(kg, "kg"))


def her2_positive() -> dict[str, Any]:
    return obs("her2", "85319-2", "2020-01-05", valueCodeableConcept={"text": "3+"})


def metastasis(onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "met",
        "subject": P,
        "onsetDateTime": onset,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94391008"}]},
    }


def findings(
    evaluator: Evaluator, *resources: dict[str, Any], order: dict[str, Any] | None = None
) -> list[Finding]:
    raw = raw_patient_from_resources([patient(), *resources], "test")
    return evaluator.evaluate(raw, as_of=parse_as_of(AS_OF), order=order).evaluation.findings


def by_code(found: list[Finding]) -> dict[str, Finding]:
    return {f.code: f for f in found}


# ---- statements --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("asserted", "end", "on"),
    [
        ("2026-09-20", None, True),  # asserted 42 days before as-of: on
        ("2026-09-19", None, False),  # 43 days: not on (boundary)
        ("2026-10-30", "2026-12-01", True),  # end after as-of
        ("2026-10-30", "2026-10-15", True),  # ended 17 days ago: a dose within the window
        ("2026-10-30", "2026-09-15", False),  # ended 47 days ago
    ],
)
def test_active_statement_makes_the_patient_on_the_drug(
    asserted: str, end: str | None, on: bool, evaluator: Evaluator
) -> None:
    f = facts(
        evaluator, breast(), statement("s1", text="Kadcyla", start="2026-03-01", end=end, asserted=asserted)
    )
    assert (f.get("therapy.on.tdm1"), f.get("therapy.started.tdm1"), f.get("exposure.tdm1.ever")) == (
        on,
        True,
        True,
    )
    if on:
        assert f.resources_for("therapy.on.tdm1") == ["MedicationStatement/s1"]


def test_completed_statement_is_history_not_current_therapy(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast(),
        statement("s1", text="T-DM1", start="2025-01-01", end="2025-06-01", status="completed"),
    )
    assert (f.get("therapy.on.tdm1"), f.get("exposure.tdm1.ever"), f.get("exposure.tdm1.last")) == (
        False,
        True,
        "2025-06-01",
    )


def test_statement_on_tdm1_gets_the_platelet_hold(evaluator: Evaluator) -> None:
    found = by_code(
        findings(
            evaluator,
            breast(),
            her2_positive(),
            metastasis("2025-01-01"),
            statement("s1", text="ado-trastuzumab emtansine", start="2026-06-01", asserted="2026-10-20"),
            obs("plt", "777-3", "2026-10-31", **qty(40, "10*3/uL")),
        )
    )
    assert "alert.tdm1.platelets-grade3" in found
    assert "alert.tdm1.platelets-baseline" not in found  # started: the drug has been given


# ---- orders and dispenses ----------------------------------------------------------------------
def test_per_cycle_orders_count_as_doses_and_the_baseline_alert_stays_silent(evaluator: Evaluator) -> None:
    cycles = [
        request(f"r{i}", day, text="Kadcyla", dose=3.6)
        for i, day in enumerate(
            ["2026-07-01", "2026-07-22", "2026-08-12", "2026-09-02", "2026-09-23", "2026-10-14"]
        )
    ]
    f = facts(evaluator, breast(), *cycles)
    assert (f.get("therapy.on.tdm1"), f.get("therapy.started.tdm1"), f.get("exposure.tdm1.doses_given")) == (
        True,
        True,
        6,
    )
    assert f.get("therapy.dose_level.tdm1") == 1
    found = by_code(
        findings(
            evaluator,
            breast(),
            her2_positive(),
            metastasis("2026-06-01"),
            *cycles,
            obs("plt", "777-3", "2026-10-31", **qty(90, "10*3/uL")),
        )
    )
    assert "alert.tdm1.platelets-baseline" not in found


def test_proposal_is_not_exposure(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), request("r1", "2026-10-20", text="Enhertu", dose=5.4, intent="proposal"))
    assert (f.get("therapy.on.tdxd"), f.get("exposure.tdxd.ever")) == (False, False)


def test_order_dated_today_is_not_yet_started(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), request("r1", AS_OF, text="Kadcyla", dose=3.6))
    assert (f.get("therapy.on.tdm1"), f.get("therapy.started.tdm1")) == (True, False)


def test_dispense_is_exposure(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), dispense("d1", "2026-10-25", text="Tukysa 150 mg tablets"))
    assert (f.get("therapy.on.tucatinib"), f.get("exposure.tucatinib.ever")) == (True, True)
    assert f.resources_for("exposure.tucatinib") == ["MedicationDispense/d1"]


def test_declined_dispense_is_not_exposure(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), dispense("d1", "2026-10-25", text="Tukysa", status="declined"))
    assert f.get("exposure.tucatinib.ever") is False


def test_dose_level_uses_administrations_over_orders(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast(),
        request("r1", "2026-10-01", text="Kadcyla", dose=3.6),
        admin("a1", "2026-10-02", text="Kadcyla", dose=3.0),
    )
    assert (f.get("therapy.dose_level.tdm1"), f.resources_for("therapy.dose_level.tdm1")) == (
        2,
        ["MedicationAdministration/a1"],
    )


def test_reescalation_from_orders_when_no_administration(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast(),
        request("r1", "2026-10-01", text="T-DM1", dose=3.0),
        order=request("draft", AS_OF, text="T-DM1", dose=3.6, status="draft", intent="order"),
    )
    assert (f.order.agent, f.order.reescalation, f.get("therapy.dose_level.tdm1")) == ("tdm1", True, 2)


# ---- names and products --------------------------------------------------------------------------
def test_phesgo_clinical_drug_name_is_one_product_checked_in_mg(evaluator: Evaluator) -> None:
    draft = request(
        "draft",
        AS_OF,
        text="hyaluronidase-zzxf / pertuzumab / trastuzumab",
        dose=600,
        unit="mg",
        status="draft",
    )
    f = facts(evaluator, breast(), order=draft)
    assert (f.order.agent, f.order.product, f.order.dose_fit, f.order.name_conflict, f.order.dose_mg) == (
        "phesgo",
        "phesgo",
        "at-level",
        False,
        600.0,
    )
    assert f.order.agents == {"trastuzumab": True, "pertuzumab": True}


def test_trastuzumab_and_pertuzumab_ingredient_codes_of_one_medication_are_phesgo(
    evaluator: Evaluator,
) -> None:
    draft = request("draft", AS_OF, dose=1200, unit="mg", status="draft")
    draft["medicationCodeableConcept"] = {
        "coding": [{"system": RX, "code": "224905"}, {"system": RX, "code": "1298944"}]
    }
    f = facts(evaluator, breast(), order=draft)
    assert (f.order.agent, f.order.dose_fit, f.order.dose_level, f.order.name_conflict) == (
        "phesgo",
        "at-level",
        1,
        False,
    )


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("ado-trastuzumab", "tdm1"),
        ("fam-trastuzumab", "tdxd"),
        ("trastuzumab-anns (Kanjinti)", "trastuzumab"),
    ],
)
def test_prefixed_and_suffixed_names(text: str, agent: str, evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), admin("a1", "2026-10-20", text=text))
    on = sorted(k for k, v in f.therapy.on.items() if v)
    assert on == [agent]


# ---- dose range and doseAndRate ---------------------------------------------------------------------
def test_dose_range_is_checked_at_its_high_bound_and_low_bound(evaluator: Evaluator) -> None:
    draft = request(
        "draft",
        AS_OF,
        text="Kadcyla",
        status="draft",
        dose_and_rate=[
            {"doseRange": {"low": {"value": 120, "unit": "mg"}, "high": {"value": 216, "unit": "mg"}}}
        ],
    )
    f = facts(evaluator, breast(), weight(60), order=draft)
    assert (f.order.dose_mg_per_kg, f.order.dose_fit, f.order.dose_low_fit) == (3.6, "at-level", "below-min")
    found = by_code(findings(evaluator, breast(), her2_positive(), weight(60), order=draft))
    assert (found["order.dose-out-of-range"].severity, found["order.dose-out-of-range"].rule.id) == (
        "warning",
        "order.dose-range-low-bound",
    )


def test_dose_found_in_a_later_dose_and_rate_entry(evaluator: Evaluator) -> None:
    draft = request(
        "draft",
        AS_OF,
        text="Enhertu",
        status="draft",
        dose_and_rate=[
            {"rateQuantity": {"value": 100, "unit": "mL/h"}},
            {"doseQuantity": {"value": 7.0, "unit": "mg/kg"}},
        ],
    )
    f = facts(evaluator, breast(), order=draft)
    assert (f.order.agent, f.order.dose_mg_per_kg, f.order.dose_fit) == ("tdxd", 7.0, "above-max")


# ---- content additions --------------------------------------------------------------------------------
def _mbc_first_line(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [breast("2019-01-01"), her2_positive(), metastasis("2026-01-01"), *extra]


def test_tdxd_with_pertuzumab_is_not_pertuzumab_without_trastuzumab(evaluator: Evaluator) -> None:
    found = by_code(
        findings(
            evaluator,
            *_mbc_first_line(
                admin("x1", "2026-10-20", text="Enhertu", dose=5.4),
                admin("p1", "2026-10-20", text="Perjeta", dose=420, unit="mg"),
            ),
        )
    )
    assert "alert.pertuzumab.without-trastuzumab" not in found
    found = by_code(
        findings(
            evaluator,
            *_mbc_first_line(admin("x1", "2026-10-20", text="Enhertu", dose=5.4)),
            order=request("draft", AS_OF, text="pertuzumab", dose=420, unit="mg", status="draft"),
        )
    )
    assert "alert.pertuzumab.without-trastuzumab" not in found


def test_first_line_tdm1_is_reviewed_as_outside_the_label(evaluator: Evaluator) -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "al",
        "patient": P,
        "code": {"text": "taxane"},
    }
    found = by_code(findings(evaluator, *_mbc_first_line(allergy)))
    rec = found["rec.mbc1.tdm1"]
    assert rec.review_required and "outside the US label" in rec.detail


def test_endocrine_only_line_is_not_a_her2_line(evaluator: Evaluator) -> None:
    found = by_code(
        findings(
            evaluator,
            *_mbc_first_line(
                statement("s1", text="letrozole 2.5 mg", start="2026-02-01", asserted="2026-10-20")
            ),
        )
    )
    thp = found["rec.mbc1.thp"]
    assert thp.review_required and "Letrozole" not in thp.detail and "letrozole" in thp.detail
    assert "info.on-therapy" not in found and "rec.mbc2.tdxd" not in found


def test_first_line_without_prior_lines_is_not_reviewed(evaluator: Evaluator) -> None:
    found = by_code(findings(evaluator, *_mbc_first_line()))
    assert (found["rec.mbc1.thp"].review_required, found["rec.mbc1.tdxd-pertuzumab"].review_required) == (
        False,
        False,
    )


def test_facts_name_no_drug_outside_the_catalogue(evaluator: Evaluator) -> None:
    f: PatientFacts = facts(evaluator, breast(), admin("a1", "2026-10-20", text="Kadcyla", dose=3.6))
    assert set(f.therapy.on) == set(evaluator.library.catalogue.agents)


def test_pertuzumab_at_a_subcutaneous_trastuzumab_dose_is_out_of_range_not_a_name_confusion(
    evaluator: Evaluator,
) -> None:
    draft = request("draft", AS_OF, text="pertuzumab", dose=600, unit="mg", status="draft")
    f = facts(evaluator, breast(), order=draft)
    assert (f.order.agent, f.order.dose_fit, f.order.matches_other_agent) == (
        "pertuzumab",
        "between-levels",
        None,
    )


def test_trastuzumab_at_the_tdm1_level_is_a_name_confusion(evaluator: Evaluator) -> None:
    draft = request("draft", AS_OF, text="Herceptin", dose=3.6, status="draft", weeks=3)
    f = facts(evaluator, breast(), order=draft)
    assert (f.order.agent, f.order.product, f.order.dose_fit, f.order.matches_other_agent) == (
        "trastuzumab",
        "herceptin",
        "below-min",
        "tdm1",
    )


# ---- medicationReference -----------------------------------------------------------------------
def referenced(mid: str, target: str, *, display: str | None = None) -> dict[str, Any]:
    """A T-DM1 statement naming its drug only by a reference to a Medication resource."""
    out = statement(mid, text="x", start="2026-06-01", asserted="2026-10-20")
    del out["medicationCodeableConcept"]
    out["medicationReference"] = {"reference": target, **({"display": display} if display else {})}
    return out


def tdm1_medication(mid: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": mid, "code": {"coding": [{"system": RX, "code": "1371041"}]}}


def test_referenced_medication_in_the_record_is_read_from_its_code(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), referenced("s1", "Medication/m1"), tdm1_medication("m1"))
    assert (f.get("therapy.on.tdm1"), f.resources_for("therapy.on.tdm1")) == (
        True,
        ["MedicationStatement/s1"],
    )


@pytest.mark.parametrize(
    "target", ["Medication/m1/_history/3", "https://ehr.example.org/fhir/Medication/m1/_history/3"]
)
def test_referenced_medication_by_a_versioned_or_absolute_reference_is_read_from_its_code(
    evaluator: Evaluator, target: str
) -> None:
    """Resolved by its Type/id like every other reference, not reported as missing."""
    f = facts(evaluator, breast(), referenced("s1", target), tdm1_medication("m1"))
    assert (
        f.get("therapy.on.tdm1"),
        f.resources_for("therapy.on.tdm1"),
        f.get("review.unreadable_data"),
    ) == (
        True,
        ["MedicationStatement/s1"],
        False,
    )


def test_referenced_medication_missing_from_the_record_is_an_unreadable_data_gap(
    evaluator: Evaluator,
) -> None:
    raw = raw_patient_from_resources([patient(), breast(), referenced("s1", "Medication/m1")], "test")
    result = evaluator.evaluate(raw, as_of=parse_as_of(AS_OF))
    assert [(s.resource, s.reason) for s in result.evaluation.skipped] == [
        ("MedicationStatement/s1", "its drug is Medication/m1, which the record does not hold")
    ]
    gap = by_code(result.evaluation.findings)["gap.unreadable-data"]
    assert "MedicationStatement/s1: medication Medication/m1 (not in the record)" in gap.detail


def test_missing_referenced_medication_with_a_display_is_read_from_the_display(evaluator: Evaluator) -> None:
    raw = raw_patient_from_resources(
        [patient(), breast(), referenced("s1", "Medication/m1", display="Kadcyla 100 mg vial")], "test"
    )
    result = evaluator.evaluate(raw, as_of=parse_as_of(AS_OF))
    assert (result.evaluation.skipped, "gap.unreadable-data" in result.evaluation.codes()) == ([], False)
    assert result.facts.get("therapy.on.tdm1") is True


@pytest.mark.parametrize(
    ("dose", "unit", "with_weight", "summary"),
    [
        (420, "mg", True, "Dose above the maximum for T-DM1: 420 mg = 6 mg/kg at 70 kg ordered"),
        (6, "mg/kg", True, "Dose above the maximum for T-DM1: 6 mg/kg ordered"),
        (6, "mg/kg", False, "Dose above the maximum for T-DM1: 6 mg/kg ordered"),
    ],
)
def test_dose_alert_states_the_dose_as_ordered_with_its_conversion(
    dose: float, unit: str, with_weight: bool, summary: str, evaluator: Evaluator
) -> None:
    """A card never reads "unknown mg": the dose is shown as written, converted when it was."""
    draft = request("draft", AS_OF, text="Kadcyla", status="draft", dose=dose, unit=unit)
    extra = [weight(70)] if with_weight else []
    found = by_code(findings(evaluator, breast(), her2_positive(), *extra, order=draft))
    assert found["order.dose-out-of-range"].summary == summary

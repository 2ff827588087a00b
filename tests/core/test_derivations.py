"""Unit tests of the fact derivations (clinical-spec §2), each at its boundary."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from cds import Evaluator, RuleLibrary, parse_as_of, raw_patient_from_resources
from cds.facts.her2 import ihc_score, ish_group
from cds.facts.model import PatientFacts
from cds.facts.therapy import add_months, fit_level
from cds.fhir.parse import parse_when
from cds.fhir.units import UnitUnrecognized, to_canonical
from cds.fhir.valuesets import Codings

P = {"reference": "Patient/p"}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1960-01-01", **extra}


def breast(onset: str = "2020-01-01") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "bc",
        "subject": P,
        "onsetDateTime": onset,
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    }


def obs(oid: str, code: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": P,
        "effectiveDateTime": when,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **value,
    }


def qty(value: float, unit: str, high: float | None = None, high_unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
    if high is not None:
        bound: dict[str, Any] = {"value": high}
        if high_unit:
            bound.update(unit=high_unit, system=UCUM, code=high_unit)
        out["referenceRange"] = [{"high": bound}]
    return out


def admin(
    aid: str,
    when: str,
    text: str | None = None,
    code: str | None = None,
    dose: float | None = None,
    unit: str = "mg/kg",
    status: str = "completed",
) -> dict[str, Any]:
    med: dict[str, Any] = {}
    if code:
        med["coding"] = [{"system": RX, "code": code}]
    if text:
        med["text"] = text
    out: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": aid,
        "status": status,
        "subject": P,
        "effectiveDateTime": when,
        "medicationCodeableConcept": med,
    }
    if dose is not None:
        out["dosage"] = {"dose": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}
    return out


def facts(
    evaluator: Evaluator,
    *resources: dict[str, Any],
    as_of: str = "2026-11-01",
    order: dict[str, Any] | None = None,
) -> PatientFacts:
    raw = raw_patient_from_resources([patient(), *resources], "test")
    return evaluator.evaluate(raw, as_of=parse_as_of(as_of), order=order).facts


# ---- HER2 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "score", "ultralow"),
    [
        ("3+", "3+", False),
        ("Score 2+ (equivocal)", "2+", False),
        ("1+", "1+", False),
        ("0", "0", False),
        ("0 with faint incomplete membrane staining (ultralow)", "0", True),
        ("negative", None, False),
    ],
)
def test_ihc_score_is_read_from_text(
    text: str, score: str | None, ultralow: bool, library: RuleLibrary
) -> None:
    assert ihc_score((text.lower(),), library.valuesets.cues) == (score, ultralow)


@pytest.mark.parametrize(
    ("ratio", "copies", "group"),
    [(2.0, 4.0, 1), (2.0, 3.99, 2), (1.99, 6.0, 3), (1.99, 5.99, 4), (1.99, 4.0, 4), (1.99, 3.99, 5)],
)
def test_ish_group_boundaries(ratio: float, copies: float, group: int, library: RuleLibrary) -> None:
    assert ish_group(ratio, copies, library.params) == group


def _her2(evaluator: Evaluator, *results: dict[str, Any]) -> PatientFacts:
    return facts(evaluator, breast(), *results)


def test_ihc_2plus_takes_the_ish_of_its_episode(evaluator: Evaluator) -> None:
    f = _her2(
        evaluator,
        obs("ihc", "85319-2", "2026-01-01", valueCodeableConcept={"text": "2+"}),
        obs("ish", "85318-4", "2026-01-20", valueCodeableConcept={"text": "Negative"}),
    )
    assert f.her2.category == "low" and not f.her2.ish_required


def test_ish_31_days_later_is_another_episode(evaluator: Evaluator) -> None:
    f = _her2(
        evaluator,
        obs("ihc", "85319-2", "2026-01-01", valueCodeableConcept={"text": "2+"}),
        obs("ish", "85318-4", "2026-02-01", valueCodeableConcept={"text": "Negative"}),
    )
    assert f.her2.category == "negative"


def test_ihc_2plus_without_ish_requires_ish(evaluator: Evaluator) -> None:
    f = _her2(evaluator, obs("ihc", "85319-2", "2026-01-01", valueCodeableConcept={"text": "2+"}))
    assert (f.her2.category, f.her2.ish_required) == ("equivocal", True)


def test_ish_group_from_ratio_and_copies_with_ihc_2plus_needs_review(evaluator: Evaluator) -> None:
    f = _her2(
        evaluator,
        obs("ihc", "85319-2", "2026-01-01", valueCodeableConcept={"text": "2+"}),
        obs("r", "49683-6", "2026-01-02", valueQuantity={"value": 1.5}),
        obs("c", "74860-8", "2026-01-02", valueQuantity={"value": 4.5}),
    )
    assert (f.her2.ish_group, f.her2.ish_review, f.her2.category) == (4, True, "unknown")


def test_earlier_positive_episode_keeps_positive_and_flags_discordance(evaluator: Evaluator) -> None:
    f = _her2(
        evaluator,
        obs("old", "85319-2", "2024-01-01", valueCodeableConcept={"text": "3+"}),
        obs("new", "85319-2", "2026-01-01", valueCodeableConcept={"text": "1+"}),
    )
    assert (f.her2.category, f.her2.discordant) == ("positive", True)


def test_contradictory_scores_in_one_episode_are_not_guessed(evaluator: Evaluator) -> None:
    f = _her2(
        evaluator,
        obs("a", "85319-2", "2026-01-01", valueCodeableConcept={"text": "3+"}),
        obs("b", "85319-2", "2026-01-03", valueCodeableConcept={"text": "0"}),
    )
    assert (f.her2.category, f.her2.contradictory) == ("unknown", True)


# ---- medications -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "items", "agents"),
    [
        ("ado-trastuzumab emtansine", ("tdm1",), ("tdm1",)),
        ("Trastuzumab emtansine 100 MG", ("tdm1",), ("tdm1",)),
        ("ado-trastuzumab", ("tdm1",), ("tdm1",)),
        ("fam-trastuzumab deruxtecan-nxki", ("tdxd",), ("tdxd",)),
        ("fam-trastuzumab", ("tdxd",), ("tdxd",)),
        ("ENHERTU", ("enhertu",), ("tdxd",)),
        ("T-DM1", ("tdm1",), ("tdm1",)),
        ("Herceptin Hylecta", ("herceptin_hylecta",), ("trastuzumab",)),
        ("trastuzumab-dkst (Ogivri)", ("ogivri",), ("trastuzumab",)),
        ("Phesgo", ("phesgo",), ("trastuzumab", "pertuzumab")),
        ("hyaluronidase-zzxf / pertuzumab / trastuzumab", ("phesgo",), ("trastuzumab", "pertuzumab")),
        ("Abraxane (nab-paclitaxel)", ("nab_paclitaxel", "abraxane"), ("nab_paclitaxel",)),
        ("docetaxel", ("docetaxel",), ("docetaxel",)),
        ("trastuzumabX", (), ()),
        ("warfarin", (), ()),
    ],
)
def test_medication_names_follow_the_adc_first_rule(
    text: str, items: tuple[str, ...], agents: tuple[str, ...], library: RuleLibrary
) -> None:
    found = library.valuesets.items_by_name(Codings.of(text))
    assert (found, library.catalogue.agents_of(found)) == (items, agents)


def test_phesgo_counts_as_trastuzumab_and_pertuzumab(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), admin("a1", "2026-10-20", text="Phesgo 600 mg/600 mg"))
    assert f.therapy.on["trastuzumab"] and f.therapy.on["pertuzumab"] and f.exposure.agent("trastuzumab").ever
    assert not f.exposure.agent("tdm1").ever


def test_held_dose_is_never_a_dose_given(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), admin("a1", "2026-10-20", code="1371046", dose=3.6, status="not-done"))
    assert not f.get("therapy.on.tdm1") and not f.get("exposure.tdm1.ever")


@pytest.mark.parametrize(("days_ago", "active"), [(42, True), (43, False)])
def test_active_therapy_window_boundary(days_ago: int, active: bool, evaluator: Evaluator) -> None:
    when = date.fromordinal(date(2026, 11, 1).toordinal() - days_ago).isoformat()
    f = facts(evaluator, breast(), admin("a1", when, code="1371046", dose=3.6))
    assert f.get("therapy.on.tdm1") is active


def _met(onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "met",
        "subject": P,
        "onsetDateTime": onset,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94391008"}]},
    }


def test_lines_taxane_switch_is_not_a_new_line_but_tdxd_is(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast("2019-01-01"),
        _met("2025-01-01"),
        admin("t1", "2025-01-10", code="224905"),
        admin("p1", "2025-01-10", code="1298944"),
        admin("d1", "2025-01-10", code="72962"),
        admin("n1", "2025-04-01", text="paclitaxel"),
        admin("t2", "2025-04-01", code="224905"),
        admin("x1", "2026-09-01", code="2267576", dose=5.4),
    )
    assert (f.lines.prior_metastatic, f.lines.effective, f.lines.current_regimen) == (2, 2, "tdxd")


@pytest.mark.parametrize(("relapse", "early"), [("2025-07-01", True), ("2025-07-02", False)])
def test_early_relapse_is_inclusive_at_six_months(relapse: str, early: bool, evaluator: Evaluator) -> None:
    f = facts(evaluator, breast("2024-01-01"), _met(relapse), admin("t1", "2025-01-01", code="224905"))
    assert f.lines.early_relapse is early
    assert f.lines.effective == (1 if early else 0)


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)


@pytest.mark.parametrize(
    ("dose", "fit"),
    [
        (3.78, "at-level"),
        (3.79, "above-max"),
        (3.3, "between-levels"),
        (2.28, "at-level"),
        (2.27, "below-min"),
    ],
)
def test_dose_fit_tolerance(dose: float, fit: str) -> None:
    assert fit_level(dose, [3.6, 3.0, 2.4], 5)[0] == fit


def test_tdm1_at_trastuzumab_dose_is_name_confusion(evaluator: Evaluator) -> None:
    order = {
        "resourceType": "MedicationRequest",
        "id": "draft",
        "status": "draft",
        "intent": "order",
        "subject": P,
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1371041"}]},
        "dosageInstruction": [
            {
                "doseAndRate": [
                    {"doseQuantity": {"value": 6, "unit": "mg/kg", "system": UCUM, "code": "mg/kg"}}
                ]
            }
        ],
    }
    f = facts(evaluator, breast(), order=order)
    assert (f.order.agent, f.order.dose_fit, f.order.matches_other_agent) == (
        "tdm1",
        "above-max",
        "trastuzumab",
    )


# ---- labs and units ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("unit", "value", "canonical"),
    [("10*3/uL", 42, 42), ("10*9/L", 42, 42), ("K/uL", 42, 42), ("/mm3", 42000, 42), ("cells/uL", 42000, 42)],
)
def test_platelet_units_normalise(unit: str, value: float, canonical: float, library: RuleLibrary) -> None:
    assert to_canonical(library.valuesets.analytes["platelets"], value, unit) == canonical


def test_bilirubin_umol_converts_to_mg_dl(library: RuleLibrary) -> None:
    assert to_canonical(library.valuesets.analytes["bilirubin"], 34.2, "umol/L") == pytest.approx(2.0)


@pytest.mark.parametrize("unit", ["mg", "%", None, "mg%"])
def test_unknown_units_are_rejected_never_guessed(unit: str | None, library: RuleLibrary) -> None:
    with pytest.raises(UnitUnrecognized):
        to_canonical(library.valuesets.analytes["platelets"], 42, unit)


def test_ast_is_a_multiple_of_its_own_uln(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), obs("ast", "1920-8", "2026-10-31", **qty(200, "U/L", 40)))
    assert (f.labs.ast.x_uln, f.labs.ast.age_days) == (5.0, 1)


def test_uln_in_another_unit_is_converted(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), obs("b", "1975-2", "2026-10-31", **qty(41.04, "umol/L", 1.2, "mg/dL")))
    assert f.labs.bilirubin.x_uln == pytest.approx(2.0, abs=1e-3)


def test_missing_reference_range_means_uln_missing(evaluator: Evaluator) -> None:
    f = facts(evaluator, breast(), obs("ast", "1920-8", "2026-10-31", **qty(200, "U/L")))
    assert f.labs.ast.x_uln is None and f.labs.ast.uln_missing


def test_strict_text_reference_range_is_used(evaluator: Evaluator) -> None:
    ast = obs("ast", "1920-8", "2026-10-31", **qty(120, "U/L"))
    ast["referenceRange"] = [{"text": "0-40"}]
    assert facts(evaluator, breast(), ast).labs.ast.x_uln == 3.0


def test_results_after_as_of_are_ignored(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast(),
        obs("p1", "777-3", "2026-10-30", **qty(200, "10*3/uL")),
        obs("p2", "777-3", "2026-11-02T08:00:00Z", **qty(20, "10*3/uL")),
    )
    assert f.labs.platelets.value == 200


def test_lvef_string_range_uses_the_lower_bound(evaluator: Evaluator) -> None:
    assert (
        facts(evaluator, breast(), obs("e", "10230-1", "2026-10-01", valueString="55-60%")).lvef.value == 55
    )


def test_unrecognised_unit_marks_the_latest_result_unusable(evaluator: Evaluator) -> None:
    f = facts(
        evaluator,
        breast(),
        obs("p1", "777-3", "2026-10-20", **qty(200, "10*3/uL")),
        obs("p2", "777-3", "2026-10-31", **qty(20, "mg")),
    )
    assert f.labs.platelets.value is None and f.labs.platelets.unit_unrecognized and f.data.unit_unrecognized


def test_date_only_values_compare_by_calendar_date() -> None:
    when = parse_when("2026-11-01")
    assert when is not None and when.date_only
    assert when.not_after(datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC))
    assert not when.not_after(datetime(2026, 10, 31, 23, 59, tzinfo=UTC))


def test_undated_therapy_is_never_silently_dropped(evaluator: Evaluator) -> None:
    """An undated trastuzumab statement: counted as received, lines unknown, a gap, no line-based rec."""
    undated = {
        "resourceType": "MedicationStatement",
        "id": "ms1",
        "status": "completed",
        "subject": P,
        "medicationCodeableConcept": {"coding": [{"system": RX, "code": "224905"}]},
    }
    her2 = obs("ihc", "85319-2", "2025-01-01", valueCodeableConcept={"text": "3+"})
    raw = raw_patient_from_resources(
        [patient(), breast("2019-01-01"), _met("2025-01-01"), her2, undated], "t"
    )
    result = evaluator.evaluate(raw, as_of=parse_as_of("2026-11-01"))
    f = result.facts
    assert f.exposure.agent("trastuzumab").ever and f.lines.undated_therapy and not f.lines.known
    assert f.lines.undated_agents == "trastuzumab"
    assert result.evaluation.codes() == ["gap.therapy-dates"]

"""Worklist wording and identity: the action in clinical words with value and date; the MRN."""

from __future__ import annotations

from datetime import date

from cds import Evaluator, raw_patient_from_path
from cds.cohort.worker import patient_identifier
from cds.engine.runtime import getter
from cds.findings.actions import action_text, describe_basis, format_day, load_wording
from cds.findings.model import Basis
from tests.cohort.helpers import AS_OF, RULES, SAMPLES

MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def _action(evaluator: Evaluator, sample: str, code: str) -> str:
    result = evaluator.evaluate(raw_patient_from_path(SAMPLES / f"{sample}.json"), as_of=AS_OF)
    [finding] = [f for f in result.evaluation.findings if f.code == code]
    return action_text(finding, load_wording(RULES), getter(result.facts), AS_OF.date())


def test_action_text_is_the_rule_action_with_value_unit_and_date(evaluator: Evaluator) -> None:
    assert (
        _action(evaluator, "tdm1-platelets-grade3", "alert.tdm1.platelets-grade3")
        == "Hold T-DM1: platelets 42 ×10³/µL on 31 Oct"
    )
    assert (
        _action(evaluator, "tdxd-neutropenia-grade3", "alert.tdxd.neutrophils-grade3")
        == "Interrupt T-DXd: ANC 0.8 ×10⁹/L on 31 Oct"
    )


def test_data_gap_reads_what_to_obtain_and_names_what_is_missing_first(evaluator: Evaluator) -> None:
    assert _action(evaluator, "gap-labs-missing-anc", "gap.labs-missing") == (
        "obtain ANC (within 3 days) before the next T-DXd dose: no ANC; "
        "last platelets on 31 Oct; last AST on 31 Oct"
    )


def test_finding_without_a_value_reads_as_its_summary_clause(evaluator: Evaluator) -> None:
    assert (
        _action(evaluator, "tdm1-ild", "alert.tdm1.ild")
        == "Discontinue T-DM1: interstitial lung disease/pneumonitis diagnosed on T-DM1"
    )


def test_describe_basis_uses_the_wording_table_only() -> None:
    wording = load_wording(RULES)
    dates = {"lvef.date": "2025-10-14T08:00:00Z"}.__getitem__
    assert describe_basis(
        Basis(fact="lvef.value", value=43.0, resources=[]), wording, dates, date(2026, 11, 1)
    ) == ("LVEF 43% on 14 Oct 2025")
    assert describe_basis(Basis(fact="lvef.value", value=43.0, resources=[]), wording) == "LVEF 43%"
    assert describe_basis(Basis(fact="therapy.on_tdm1", value=True, resources=[]), wording) is None
    assert describe_basis(Basis(fact="weight.kg", value=None, resources=[]), wording) == "no recent weight"
    assert format_day("2026-10-31T08:00:00Z", date(2026, 11, 1)) == "31 Oct"
    assert format_day(None) is None


def test_identifier_prefers_the_mrn_type_then_official_then_first() -> None:
    ssn = {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789", "use": "official"}
    mrn = {"system": "urn:oid:1.2.3", "value": "A0042", "type": MR}
    other = {"system": "urn:x", "value": "X-1"}
    assert patient_identifier({"identifier": [ssn, other, mrn]}) == "A0042"
    assert patient_identifier({"identifier": [other, ssn]}) == "123-45-6789"
    assert patient_identifier({"identifier": [other]}) == "X-1"
    assert patient_identifier({"identifier": [{"value": ""}, {"type": MR}]}) is None
    assert patient_identifier({"identifier": "not-a-list"}) is None
    assert patient_identifier({}) is None

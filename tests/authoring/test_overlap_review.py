"""Reviewable lint overlaps: fact implications, acknowledgements in the rule files (with their
fingerprints going stale), policies that resolve a conflict, ``cds rules ack`` and lint progress.
All on copies of the real rules and samples."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cds.authoring import acks, analysis, edit
from cds.authoring.cohort import cached_cohort, cohort_facts
from cds.authoring.implications import load_implications
from cds.authoring.lint import LintReport, lint
from cds.cli import app
from cds.engine.conditions import _compare, parse_condition
from cds.engine.library import load_library
from cds.evaluate import Evaluator
from cds.facts.model import PatientFacts, leaf_paths
from cds.findings.build import build_findings
from tests.authoring.workbench_helpers import commit_all

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "fhir_samples"
REVIEWER = "Test Pharmacist"
runner = CliRunner()


def _warnings_about(report: LintReport, a: str, b: str) -> list[str]:
    return [
        d.message
        for d in report.of("warning")
        if {d.rule, *re.findall(r"overlaps (\S+)", d.message)} == {a, b}
    ]


def _acknowledged(report: LintReport) -> set[frozenset[str]]:
    return {
        frozenset({a.diagnostic.rule or "", *re.findall(r"overlaps (\S+)", a.diagnostic.message)})
        for a in report.reviewed("acknowledgement")
    }


def _drop_ack(path: Path, rule: str, other: str) -> None:
    """Remove one acknowledgement entry (the six lines `cds rules ack` wrote)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    start = next(
        i
        for i, line in enumerate(lines)
        if line == f'  - rule: "{rule}"' and lines[i + 1] == f'    other: "{other}"'
    )
    del lines[start : start + 6]
    path.write_text("\n".join(lines), encoding="utf-8")


def _drop_all_acks(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    head = text[: text.index(acks.SECTION_COMMENT.split("\n")[0])].rstrip("\n") + "\n"
    path.write_text(head, encoding="utf-8")
    return head


# ---- fact implications ---------------------------------------------------------------------------


def test_an_implication_proves_ild_since_tdxd_start_and_no_ild_history_exclusive() -> None:
    types = leaf_paths(agents=("tdxd",))
    rec = parse_condition({"conditions.ild_history": False}, {}, types)
    alert = parse_condition({"conditions.ild_since_start.tdxd": True}, {}, types)
    implications, problems = load_implications(ROOT / "rules")
    assert problems == []
    assert analysis.joint_witness(rec, alert) == {
        "conditions.ild_history": False,
        "conditions.ild_since_start.tdxd": True,
    }
    assert analysis.joint_witness(rec, alert, implications) is None
    both = parse_condition(
        {"all": [{"conditions.ild_history": False}, {"conditions.ild_since_start.tdxd": True}]}, {}, types
    )
    assert analysis.why_never(both, implications) == (
        "conditions.ild_history == false and conditions.ild_since_start.tdxd == true "
        "(fact implication ild-since-start-is-ild-history) cannot both hold"
    )


def test_an_implication_removes_a_false_overlap_from_lint(rules: Path) -> None:
    with_implications = lint(rules, cohort=None, base=None)
    assert _warnings_about(with_implications, "rec.mbc2.tdxd", "alert.tdxd.ild") == []
    assert "6 fact implications" in with_implications.checked
    (rules / "facts" / "implications.yaml").unlink()
    without = lint(rules, cohort=None, base=None)
    assert len(_warnings_about(without, "rec.mbc2.tdxd", "alert.tdxd.ild")) == 1
    assert len(_warnings_about(without, "rec.mbc2.tdxd", "alert.tdxd.ild-history")) == 1
    assert [d.rule for d in without.of("warning")] == ["rec.mbc1.tdxd-pertuzumab"] * 2 + [
        "rec.mbc2.tdxd"
    ] * 2 + ["rec.ebc.tdxd-high-risk"] * 2


def test_a_malformed_implication_is_a_lint_error_with_its_line(rules: Path) -> None:
    path = rules / "facts" / "implications.yaml"
    path.write_text(
        path.read_text().replace(
            "then: {conditions.ild_history: true}", "then: {conditions.ild_hist: true}", 1
        )
    )
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "ild_hist:" in t) - 2
    errors = [str(d) for d in lint(rules, cohort=None, base=None).of("error")]
    assert errors == [
        f"{path}:{line} field then.conditions.ild_hist: implication ild-since-start-is-ild-history: "
        "unknown fact path 'conditions.ild_hist' (did you mean conditions.ild_history?); "
        "`cds rules facts` lists every path"
    ]


def test_every_implication_holds_on_every_sample_patient() -> None:
    """A wrong implication would hide a real overlap: check each on the derived facts of every
    sample patient, and that each one is exercised (its premise holds for someone)."""
    library = load_library(ROOT / "rules")
    implications, _ = load_implications(ROOT / "rules")
    patients, _ = cached_cohort(SAMPLES)
    exercised = dict.fromkeys((i.id for i in implications), 0)
    for patient, facts in cohort_facts(library, patients):
        assert isinstance(facts, PatientFacts), facts
        for imp in implications:
            for agent in library.catalogue.agent_ids():
                _key, premise, conclusion = imp.instances(imp.premise.path.replace(analysis.AGENT, agent))[0]
                if _compare(premise, facts.get(premise.path)):
                    exercised[imp.id] += 1
                    assert _compare(conclusion, facts.get(conclusion.path)), (patient.name, _key)
    assert all(exercised.values()), exercised


# ---- acknowledgements ------------------------------------------------------------------------------


def test_shipped_rules_lint_with_no_errors_and_no_unacknowledged_warnings() -> None:
    report = lint(ROOT / "rules", cohort=SAMPLES, base=None)
    assert report.of("error") == [] and report.of("warning") == []
    assert (len(report.reviewed("acknowledgement")), len(report.reviewed("policy"))) == (34, 11)
    for item in report.reviewed("acknowledgement"):
        assert item.note.startswith(
            "acknowledged by HER2 CDS engineering (pending pharmacist review) on 2026-12-07: "
        )
    result = runner.invoke(app, ["rules", "lint", str(ROOT / "rules"), "--base", ""])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith(
        "0 error(s), 0 warning(s), 8 note(s); 34 overlap(s) acknowledged, 11 resolved by policies"
    )


def test_an_acknowledgement_silences_exactly_its_warning_and_no_other(rules: Path) -> None:
    tdxd = rules / "tdxd-safety.yaml"
    _drop_all_acks(tdxd)
    before = lint(rules, cohort=None, base=None)
    assert len(before.of("warning")) == 18
    path, entry, renewed = acks.acknowledge(
        rules,
        "alert.tdxd.platelets-grade3",
        "rec.mbc2.tdxd",
        reviewer=REVIEWER,
        reason="the hold gates this dose; the regimen stands once platelets recover",
        on=date(2026, 12, 7),
    )
    assert (path, renewed, entry.other) == (tdxd, False, "rec.mbc2.tdxd")
    after = lint(rules, cohort=None, base=None)
    gone = [
        str(d)
        for d in before.of("warning")
        if "alert.tdxd.platelets-grade3 (" in d.message and d.rule == "rec.mbc2.tdxd"
    ]
    assert len(gone) == 1
    assert {str(d) for d in after.of("warning")} == {str(d) for d in before.of("warning")} - set(gone)
    assert len(after.of("warning")) == 17
    # the same alert with another recommendation is still reported
    assert len(_warnings_about(after, "alert.tdxd.platelets-grade3", "rec.mbc1.tdxd-pertuzumab")) == 1
    assert frozenset({"alert.tdxd.platelets-grade3", "rec.mbc2.tdxd"}) in _acknowledged(after)


def test_changing_the_alert_makes_its_acknowledgements_stale_and_the_warnings_return(rules: Path) -> None:
    tdxd = rules / "tdxd-safety.yaml"
    text = edit.rule_text(tdxd, "alert.tdxd.platelets-grade3")
    edit.replace_rule(
        tdxd, "alert.tdxd.platelets-grade3", text.replace('{"<": $platelets_grade3_below}', '{"<": 45}')
    )
    report = lint(rules, cohort=None, base=None)
    stale = [d for d in report.of("warning") if "acknowledgement is stale" in d.message]
    assert sorted(d.rule or "" for d in stale) == [
        "rec.ebc.tdxd-high-risk",
        "rec.mbc1.tdxd-pertuzumab",
        "rec.mbc2.tdxd",
    ]
    assert all("alert.tdxd.platelets-grade3 (tdxd-safety.yaml)" in d.message for d in stale)
    assert (
        "changed since HER2 CDS engineering (pending pharmacist review) reviewed it on 2026-12-07"
        in stale[0].message
    )
    assert len(report.of("warning")) == 3
    assert not {p for p in _acknowledged(report) if "alert.tdxd.platelets-grade3" in p}


def test_changing_the_recommendation_makes_its_acknowledgements_stale(rules: Path) -> None:
    therapy = rules / "her2-therapy.yaml"
    text = edit.rule_text(therapy, "rec.mbc2.tdxd")
    edit.replace_rule(
        therapy, "rec.mbc2.tdxd", text.replace('progression: {in: ["yes", "unknown"]}', 'progression: "yes"')
    )
    report = lint(rules, cohort=None, base=None)
    stale = sorted(re.findall(r"overlaps (\S+)", d.message)[0] for d in report.of("warning"))
    assert stale == sorted(
        f"alert.tdxd.{a}"
        for a in (
            "febrile-neutropenia",
            "lvef-hold",
            "neutrophils-grade3",
            "neutrophils-grade4",
            "platelets-grade3",
            "platelets-grade4",
        )
    )
    assert all("acknowledgement is stale" in d.message for d in report.of("warning"))


def test_rewording_a_rule_keeps_its_acknowledgements(rules: Path) -> None:
    tdxd = rules / "tdxd-safety.yaml"
    text = edit.rule_text(tdxd, "alert.tdxd.platelets-grade3")
    edit.replace_rule(tdxd, "alert.tdxd.platelets-grade3", text.replace("Interrupt T-DXd:", "Pause T-DXd:"))
    report = lint(rules, cohort=None, base=None)
    assert report.of("warning") == [] and len(report.reviewed("acknowledgement")) == 34


def test_an_acknowledgement_no_longer_needed_is_a_note(rules: Path) -> None:
    tdxd = rules / "tdxd-safety.yaml"
    text = edit.rule_text(tdxd, "alert.tdxd.platelets-grade3")
    edit.replace_rule(tdxd, "alert.tdxd.platelets-grade3", text.replace("action: hold", "action: continue"))
    report = lint(rules, cohort=None, base=None)
    notes = [str(d) for d in report.of("info") if "not reported any more" in d.message]
    assert len(notes) == 3 and report.of("warning") == []
    assert notes[0].startswith(f"{tdxd}:")


MALFORMED = [
    (
        "reviewer",
        'reviewer: "HER2 CDS engineering (pending pharmacist review)"',
        'reviewer: ""',
        "String should have at least 3 characters",
        "acknowledged_overlaps.0.reviewer",
    ),
    (
        "date",
        "date: 2026-12-07",
        "date: next week",
        "Input should be a valid date",
        "acknowledged_overlaps.0.date",
    ),
    ("date", "date: 2026-12-07", "date: 2026-13-45", "not a valid date: month must be in 1..12", None),
    (
        "fingerprint",
        'fingerprint: "988259e78491733c"',
        'fingerprint: "hand-edited"',
        "fingerprint is 16 hex digits written by `cds rules ack` (do not edit it)",
        "acknowledged_overlaps.0.fingerprint",
    ),
    (
        "note",
        'reason: "A dose range',
        'reason: "ok"\n    note: "A dose range',
        "Extra inputs are not permitted",
        "acknowledged_overlaps.0.note",
    ),
]


@pytest.mark.parametrize(
    ("key", "old", "new", "message", "field"),
    MALFORMED,
    ids=["reviewer", "date-text", "date-nonexistent", "fingerprint", "extra-key"],
)
def test_a_malformed_acknowledgement_is_a_lint_error_at_its_line(
    rules: Path, key: str, old: str, new: str, message: str, field: str | None
) -> None:
    path = rules / "order-checks.yaml"
    path.write_text(path.read_text().replace(old, new))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.strip().startswith(f"{key}:"))
    report = lint(rules, cohort=None, base=None)
    assert not report.ok
    assert [(d.file, d.line, d.field) for d in report.of("error") if message in d.message] == [
        (str(path), line, field)
    ]


def test_an_acknowledgement_of_a_rule_elsewhere_or_of_an_unknown_rule_is_a_lint_error(rules: Path) -> None:
    path = rules / "order-checks.yaml"
    original = path.read_text()
    path.write_text(original.replace('rule: "order.dose-above-max"', 'rule: "rec.mbc2.tdxd"'))
    # the loader points at the section (its first entry); the message names the entry
    lines = path.read_text().splitlines()
    section = next(i for i, t in enumerate(lines, 1) if t == "acknowledged_overlaps:") + 1
    errors = lint(rules, cohort=None, base=None).of("error")
    assert [(d.line, d.message) for d in errors] == [
        (
            section,
            "Value error, entry 1 (rec.mbc2.tdxd / order.dose-range-low-bound): 'rec.mbc2.tdxd' is not "
            "a rule of this file (an acknowledgement lives in the file of its first rule)",
        )
    ]
    path.write_text(
        original.replace('other: "order.dose-range-low-bound"', 'other: "order.dose-range-lowbound"')
    )
    entry = next(
        i for i, t in enumerate(path.read_text().splitlines(), 1) if t == '  - rule: "order.dose-above-max"'
    )
    errors = lint(rules, cohort=None, base=None).of("error")
    assert [str(d) for d in errors] == [
        f"{path}:{entry} rule order.dose-above-max field acknowledged_overlaps[0].other: "
        "acknowledges an overlap with 'order.dose-range-lowbound', which no rule file defines "
        "(remove the entry, or fix the rule id)"
    ]


def test_acknowledgements_need_no_version_bump(rules: Path) -> None:
    commit_all(rules)
    _drop_ack(rules / "tdxd-safety.yaml", "alert.tdxd.lvef-hold", "rec.mbc2.tdxd")
    acks.acknowledge(
        rules,
        "rec.mbc2.tdxd",
        "alert.tdxd.lvef-hold",
        reviewer=REVIEWER,
        reason="the LVEF hold gates this dose; T-DXd stays the second-line choice",
        on=date(2026, 12, 8),
    )
    report = lint(rules, cohort=None, base="HEAD")
    assert report.ok and report.of("warning") == []
    assert "versions against git HEAD" in report.checked


# ---- cds rules ack ---------------------------------------------------------------------------------


def test_cds_rules_ack_writes_a_valid_entry_and_keeps_comments(rules: Path) -> None:
    path = rules / "order-checks.yaml"
    head = _drop_all_acks(path)
    comments = [line for line in head.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 5
    args = [
        "rules",
        "ack",
        "order.dose-above-max",
        "order.dose-range-low-bound",
        "--rules",
        str(rules),
        "--reviewer",
        REVIEWER,
        "--reason",
        "one finding per code keeps the critical one",
        "--date",
        "2026-12-07",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "acknowledged: order.dose-above-max overlaps order.dose-range-low-bound in" in result.output
    text = path.read_text()
    assert (
        text.startswith(head)
        and [ln for ln in text.splitlines() if ln.lstrip().startswith("#")][: len(comments)] == comments
    )
    entry = yaml.safe_load(text)["acknowledged_overlaps"]
    assert len(entry) == 1
    assert {k: v for k, v in entry[0].items() if k != "fingerprint"} == {
        "rule": "order.dose-above-max",
        "other": "order.dose-range-low-bound",
        "reviewer": REVIEWER,
        "date": date(2026, 12, 7),
        "reason": "one finding per code keeps the critical one",
    }
    assert re.fullmatch(r"[0-9a-f]{16}", entry[0]["fingerprint"])
    report = lint(rules, cohort=None, base=None)
    assert report.ok and report.of("warning") == []
    # running it again renews the entry in place (asked the other way round)
    args[2:4] = ["order.dose-range-low-bound", "order.dose-above-max"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "renewed: order.dose-above-max overlaps" in result.output
    assert len(yaml.safe_load(path.read_text())["acknowledged_overlaps"]) == 1


def test_cds_rules_ack_inserts_into_an_existing_section_without_touching_other_lines(rules: Path) -> None:
    path = rules / "tdxd-safety.yaml"
    _drop_ack(path, "alert.tdxd.lvef-hold", "rec.mbc2.tdxd")
    before = path.read_text().splitlines()
    result = runner.invoke(
        app,
        [
            "rules",
            "ack",
            "alert.tdxd.lvef-hold",
            "rec.mbc2.tdxd",
            "--rules",
            str(rules),
            "--reviewer",
            REVIEWER,
            "--reason",
            "the LVEF hold gates this dose; T-DXd stays the second-line choice",
        ],
    )
    assert result.exit_code == 0, result.output
    after = path.read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 6


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (("alert.tdxd.platelets-grade3", "rec.mbc2.tdm1"), "do not conflict, so lint reports no overlap"),
        (("alert.tdxd.ild", "rec.mbc2.tdxd"), "can never fire for the same patient"),
        (
            ("alert.her2.chf", "rec.mbc1.thp"),
            "policy chf-reviews-recommendations marks rec.mbc1.thp for review",
        ),
        (("alert.tdxd.nope", "rec.mbc2.tdxd"), "no rule 'alert.tdxd.nope'"),
    ],
)
def test_cds_rules_ack_refuses_what_lint_does_not_warn_about(
    rules: Path, pair: tuple[str, str], message: str
) -> None:
    before = {p.name: p.read_text() for p in rules.glob("*.yaml")}
    result = runner.invoke(
        app, ["rules", "ack", *pair, "--rules", str(rules), "--reviewer", REVIEWER, "--reason", "x" * 30]
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert {p.name: p.read_text() for p in rules.glob("*.yaml")} == before


def test_cds_rules_ack_refuses_a_short_reason(rules: Path) -> None:
    _drop_ack(rules / "tdxd-safety.yaml", "alert.tdxd.lvef-hold", "rec.mbc2.tdxd")
    result = runner.invoke(
        app,
        [
            "rules",
            "ack",
            "alert.tdxd.lvef-hold",
            "rec.mbc2.tdxd",
            "--rules",
            str(rules),
            "--reviewer",
            REVIEWER,
            "--reason",
            "intended",
        ],
    )
    assert result.exit_code == 2
    assert "error: reason: String should have at least 20 characters" in result.output


# ---- policies that resolve a conflict --------------------------------------------------------------


def _findings(facts: dict[str, object]) -> dict[str, tuple[bool, str]]:
    library = load_library(ROOT / "rules")
    model = PatientFacts.model_validate(facts)
    findings, _ = build_findings(library, model, Evaluator(library).engine.fire(model))
    return {f.code: (f.review_required, f.detail) for f in findings}


def test_heart_failure_on_her2_therapy_marks_the_recommendations_for_review() -> None:
    found = _findings(
        {
            "her2": {"category": "positive"},
            "setting": "metastatic",
            "conditions": {"heart_failure": True},
            "therapy": {"on_her2_directed": True, "on": {"trastuzumab": True}},
        }
    )
    assert set(found) >= {"alert.her2.chf", "rec.mbc1.thp", "rec.mbc1.tdxd-pertuzumab"}
    for code in ("rec.mbc1.thp", "rec.mbc1.tdxd-pertuzumab"):
        review, detail = found[code]
        assert review and detail.endswith(
            "Review: symptomatic heart failure: the labels require discontinuing HER2-directed therapy "
            "(alert.her2.chf); confirm with cardiology before starting or continuing this regimen"
        )
    without_alert = _findings({"her2": {"category": "positive"}, "setting": "metastatic"})
    assert without_alert["rec.mbc1.thp"][0] is False


def test_a_tdm1_discontinue_alert_marks_the_tdm1_recommendation_for_review() -> None:
    found = _findings(
        {
            "her2": {"category": "positive"},
            "setting": "early",
            "conditions": {"nrh": True},
            "therapy": {"on": {"tdm1": True}},
            "early": {"residual_disease": True, "surgery_days_ago": 30, "high_risk": False},
        }
    )
    assert "alert.tdm1.nrh" in found
    review, detail = found["rec.ebc.tdm1"]
    assert (
        review
        and "T-DM1 is to be discontinued for nodular regenerative hyperplasia (alert.tdm1.nrh)" in detail
    )
    assert found["rec.ebc.tdxd"][0] is True  # reviewed for its own reason (not high risk), not by the policy
    assert "alert.tdm1.nrh" not in found["rec.ebc.tdxd"][1]


def test_lint_reports_policy_resolved_overlaps_with_the_policy(rules: Path) -> None:
    report = lint(rules, cohort=None, base=None)
    resolved = {
        a.diagnostic.rule: a.note
        for a in report.reviewed("policy")
        if "alert.tdm1.nrh" in a.diagnostic.message
    }
    assert resolved == {
        "rec.ebc.tdm1-preferred": "policy tdm1-nrh-reviews-tdm1-recommendations marks rec.ebc.tdm1 "
        "for review when alert.tdm1.nrh is present"
    }
    therapy = rules / "her2-therapy.yaml"
    text = therapy.read_text()
    start = text.index("  - id: tdm1-nrh-reviews-tdm1-recommendations")
    end = text.index("  - id: tdm1-hy-law-reviews-tdm1-recommendations")
    therapy.write_text(text[:start] + text[end:])
    warned = lint(rules, cohort=None, base=None)
    assert len(_warnings_about(warned, "rec.ebc.tdm1-preferred", "alert.tdm1.nrh")) == 1


# ---- progress and the CLI listing ------------------------------------------------------------------


def test_lint_reports_progress_through_every_stage() -> None:
    seen: list[tuple[str, int, int]] = []
    lint(ROOT / "rules", cohort=SAMPLES, base="HEAD", progress=lambda s, d, t: seen.append((s, d, t)))
    stages = list(dict.fromkeys(s for s, _d, _t in seen))
    assert stages == [
        "loading rules",
        "checking versions",
        "checking rules",
        "running embedded tests",
        "running sample patients",
        "checking overlaps",
        "done",
    ]
    patients = [(d, t) for s, d, t in seen if s == "running sample patients"]
    assert patients[0] == (0, 151) and patients[-1] == (151, 151) and len(patients) == 152
    assert seen[-1] == ("done", 1, 1)


def test_lint_show_acknowledged_lists_who_when_and_why() -> None:
    result = runner.invoke(
        app,
        ["rules", "lint", str(ROOT / "rules"), "--base", "", "--cohort", str(SAMPLES), "--show-acknowledged"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum(line.startswith("acknowledged: ") for line in lines) == 34
    assert sum(line.startswith("resolved: ") for line in lines) == 11
    assert (
        sum(
            line.startswith(
                "    acknowledged by HER2 CDS engineering (pending pharmacist review) on 2026-12-07: "
            )
            for line in lines
        )
        == 34
    )
    assert sum(line.startswith("    policy ") for line in lines) == 11
    assert (
        lines[-1]
        == "0 error(s), 0 warning(s), 8 note(s); 34 overlap(s) acknowledged, 11 resolved by policies"
    )


def test_one_overlap_acknowledged_in_both_files_is_a_lint_error(rules: Path) -> None:
    therapy = rules / "her2-therapy.yaml"
    existing = next(
        a
        for a in yaml.safe_load((rules / "tdxd-safety.yaml").read_text())["acknowledged_overlaps"]
        if a["other"] == "rec.mbc2.tdxd" and a["rule"] == "alert.tdxd.lvef-hold"
    )
    entry = acks.new_entry(
        "rec.mbc2.tdxd",
        "alert.tdxd.lvef-hold",
        REVIEWER,
        existing["reason"],
        date(2026, 12, 8),
        existing["fingerprint"],
    )
    acks.write(therapy, entry)
    tdxd = rules / "tdxd-safety.yaml"
    lines = tdxd.read_text().splitlines()
    line = next(
        i
        for i, t in enumerate(lines, 1)
        if t == '  - rule: "alert.tdxd.lvef-hold"' and lines[i] == '    other: "rec.mbc2.tdxd"'
    )
    errors = [str(d) for d in lint(rules, cohort=None, base=None).of("error")]
    # the first file in ruleset order keeps it; the later one is the error
    assert errors == [
        f"{tdxd}:{line} rule alert.tdxd.lvef-hold field acknowledged_overlaps[13]: alert.tdxd.lvef-hold / "
        "rec.mbc2.tdxd is also acknowledged in her2-therapy.yaml: keep one entry"
    ]


def test_cds_rules_ack_without_rules_edits_the_rules_directory_it_stands_in(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never the bundled rules (site-packages, or another checkout): ./rules, else a clear error."""
    monkeypatch.delenv("CDS_RULES_DIR", raising=False)
    path = rules / "order-checks.yaml"
    _drop_all_acks(path)
    pair = ["order.dose-above-max", "order.dose-range-low-bound"]
    args = [
        "rules",
        "ack",
        *pair,
        "--reviewer",
        REVIEWER,
        "--reason",
        "one finding per code keeps the critical one",
    ]
    monkeypatch.chdir(rules.parent)
    assert rules.name == "rules"
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "acknowledged_overlaps" in path.read_text()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no rules directory to edit here: pass --rules DIR or set $CDS_RULES_DIR" in result.output

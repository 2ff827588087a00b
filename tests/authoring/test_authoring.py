"""Lint, test, explain, diff, new, promote and changelog on copies of the real rules and samples."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cds.authoring import analysis, edit
from cds.authoring.lint import lint
from cds.cli import app
from cds.engine.conditions import parse_condition
from cds.engine.library import load_library
from cds.facts.model import leaf_paths
from tests.authoring.workbench_helpers import commit_all

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "fhir_samples"
runner = CliRunner()


def _cond(raw: dict[str, object]) -> analysis.Condition:
    return parse_condition(raw, {"lo": 25, "hi": 50}, leaf_paths())


def test_contradictory_interval_can_never_fire_and_boundaries_are_exact() -> None:
    never = _cond({"all": [{"labs.platelets.value": {"<": "$lo"}}, {"labs.platelets.value": {">=": "$hi"}}]})
    assert analysis.why_never(never) == (
        "labs.platelets.value < $lo (= 25) and labs.platelets.value >= $hi (= 50) cannot both hold"
    )
    # [50, 50) is empty, [50, 50] is not; whole-number facts have no value strictly between 3 and 4
    assert analysis.why_never(
        _cond({"all": [{"labs.platelets.value": {">=": 50}}, {"labs.platelets.value": {"<": 50}}]})
    )
    assert (
        analysis.why_never(
            _cond({"all": [{"labs.platelets.value": {">=": 50}}, {"labs.platelets.value": {"<=": 50}}]})
        )
        is None
    )
    assert analysis.why_never(_cond({"all": [{"lines.effective": {">": 3}}, {"lines.effective": {"<": 4}}]}))
    assert analysis.why_never(_cond({"all": [{"setting": "early"}, {"setting": "metastatic"}]}))
    assert (
        analysis.why_never(
            _cond({"any": [{"setting": "early"}, {"labs.platelets.value": {"missing": True}}]})
        )
        is None
    )


def test_witnesses_of_every_real_rule_satisfy_it() -> None:
    from cds.engine.conditions import evaluate
    from cds.engine.runtime import getter

    lib = load_library(ROOT / "rules")
    for rs in lib.rulesets:
        for rid, compiled in rs.rules.items():
            witness = analysis.witnesses(compiled.condition)[0]
            facts = analysis.facts_from(witness)
            assert facts is not None and evaluate(compiled.condition, getter(facts)), rid
            for label, negative in analysis.negation_witnesses(compiled.condition):
                neg = analysis.facts_from(negative)
                assert neg is not None and not evaluate(compiled.condition, getter(neg)), (rid, label)


def test_repository_rules_lint_clean() -> None:
    report = lint(ROOT / "rules", cohort=SAMPLES, base=None)
    assert report.of("error") == []
    # the two T-DM1 "not recovered" rules share a code with different actions but exclude each other
    assert not [
        d for d in report.of("warning") if "both produce alert.tdm1.platelets-not-recovered" in d.message
    ]


RULE_NEVER = """
  - id: alert.tdm1.platelets-impossible
    title: impossible
    description: contradictory on purpose
    when:
      all:
        - therapy.on.tdm1: true
        - labs.platelets.value: {"<": $platelets_grade4_below}
        - labs.platelets.value: {">=": $platelets_grade3_below}
    then:
      code: alert.tdm1.platelets-impossible
      kind: alert
      action: hold
      applies_to: tdm1
      summary: "never"
      detail: "never {labs.platelets.valu}"
      evidence: [kadcyla-uspi]
"""

RULE_CONFLICT = """
  - id: alert.tdxd.platelets-low-avoid
    title: T-DXd avoid below 150 platelets
    description: conflicts with the preferred T-DXd recommendation
    when:
      all:
        - therapy.on.tdxd: true
        - labs.platelets.value: {"<": 150}
    then:
      code: alert.tdxd.platelets-low-avoid
      kind: alert
      action: discontinue
      applies_to: tdxd
      summary: "avoid"
      detail: "avoid"
      evidence: [enhertu-uspi]
"""


def _append_rule(path: Path, block: str) -> None:
    text = path.read_text()
    head, sep, tail = text.partition("\ntests:")
    path.write_text(head.rstrip("\n") + "\n" + block + sep + tail)


def test_lint_reports_never_firing_rule_with_line_and_unknown_placeholder(rules: Path) -> None:
    _append_rule(rules / "tdm1-safety.yaml", RULE_NEVER)
    report = lint(rules, cohort=None, base=None)
    errors = [str(d) for d in report.of("error")]
    line = next(
        i
        for i, t in enumerate((rules / "tdm1-safety.yaml").read_text().splitlines(), 1)
        if "platelets-impossible" in t and "id:" in t
    )
    assert (
        f"{rules / 'tdm1-safety.yaml'}:{line} rule alert.tdm1.platelets-impossible field when: "
        "can never fire: "
        "labs.platelets.value < $platelets_grade4_below (= 25) and labs.platelets.value >= "
        "$platelets_grade3_below (= 50) cannot both hold"
    ) in errors
    assert any("unknown fact {labs.platelets.valu} in detail" in e for e in errors)
    result = runner.invoke(app, ["rules", "lint", str(rules), "--base", "", "-q"])
    assert result.exit_code == 1, result.output


def test_lint_warns_on_preferred_tdxd_vs_tdxd_avoid_alert(rules: Path) -> None:
    _append_rule(rules / "tdxd-safety.yaml", RULE_CONFLICT)
    report = lint(rules, cohort=SAMPLES, base=None)
    warnings = [
        d
        for d in report.of("warning")
        if d.rule == "alert.tdxd.platelets-low-avoid" or "alert.tdxd.platelets-low-avoid" in d.message
    ]
    conflict = [
        d
        for d in warnings
        if "preferred recommendation rec.mbc2.tdxd (t-dxd) and discontinue alert "
        "alert.tdxd.platelets-low-avoid on tdxd" in d.message
    ]
    assert len(conflict) == 1
    assert "labs.platelets.value=" in conflict[0].message and "therapy.on.tdxd=True" in conflict[0].message
    assert report.ok  # overlaps are warnings, not errors


def test_version_bump_check_against_git(rules: Path) -> None:
    commit_all(rules)
    path = rules / "tdm1-safety.yaml"
    major, minor, _patch = (int(p) for p in yaml.safe_load(path.read_text())["version"].split("."))
    path.write_text(
        path.read_text().replace("platelets_grade3_below: {value: 50,", "platelets_grade3_below: {value: 55,")
    )
    errors = [d.message for d in lint(rules, cohort=None, base="HEAD").of("error")]
    assert any(
        f"content of approved ruleset changed since HEAD but version is still {major}.{minor}.{_patch}" in e
        for e in errors
    )
    subprocess.run(["git", "-C", str(rules), "checkout", "-q", "--", "."], check=True)
    bumped = f"{major}.{minor + 1}.0"
    assert edit.set_parameters(rules, {"platelets_grade3_below": 55}) == {"tdm1-safety.yaml": bumped}
    assert lint(rules, cohort=None, base="HEAD").ok


def _case_count(rules: Path) -> int:
    return sum(
        len(yaml.safe_load(p.read_text(encoding="utf-8")).get("tests") or [])
        for p in rules.glob("*.yaml")
        if p.name != "evidence.yaml"
    )


def test_rules_test_shows_readable_diff_after_threshold_change(rules: Path) -> None:
    total = _case_count(rules)
    ok = runner.invoke(app, ["rules", "test", str(rules)])
    assert ok.exit_code == 0 and f"{total} passed, 0 failed" in ok.output
    edit.set_parameters(rules, {"platelets_grade3_below": 55})
    bad = runner.invoke(app, ["rules", "test", str(rules)])
    assert bad.exit_code == 1
    assert "FAIL tdm1-safety.yaml: platelets exactly 50 is not grade 3 (boundary)" in bad.output
    assert "fired but not expected: alert.tdm1.platelets-grade3" in bad.output
    assert "+ alert.tdm1.platelets-grade3 fired: rule alert.tdm1.platelets-grade3 holds with" in bad.output
    counts = re.search(r"(\d+) passed, (\d+) failed", bad.output)
    assert counts is not None and int(counts.group(2)) >= 1
    assert int(counts.group(1)) + int(counts.group(2)) == total


def test_explain_shows_value_source_and_date() -> None:
    result = runner.invoke(
        app,
        [
            "rules",
            "explain",
            str(SAMPLES / "tdm1-platelets-exactly-50.json"),
            "--rules",
            str(ROOT / "rules"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {r["rule_id"]: r for r in yaml.safe_load(result.output)}
    assert len(rows) == sum(len(rs.rules) for rs in load_library(ROOT / "rules").rulesets)
    assert rows["alert.tdm1.platelets-grade3"]["outcome"] == "not fired"
    assert rows["alert.tdm1.platelets-grade3"]["reason"] == (
        "platelets 50 ×10³/µL (Observation/tdm1-platelets-exactly-50-obs17, 2026-10-31) is not < 50 ×10³/µL "
        "[$platelets_grade3_below]"
    )
    assert rows["info.on-therapy"]["outcome"] == "fired"


def test_diff_against_directory_groups_changes(rules: Path, tmp_path: Path) -> None:
    edit.set_parameters(rules, {"platelets_grade3_below": 55})
    html = tmp_path / "impact.html"
    text = runner.invoke(
        app, ["rules", "diff", str(rules), "--against", str(ROOT / "rules"), "--cohort", str(SAMPLES)]
    )
    assert text.exit_code == 0, text.output
    assert f"1 of {len(list(SAMPLES.glob('*.json')))} patients change" in text.output
    assert "alert.tdm1.platelets-grade3 (alert.tdm1.platelets-grade3) now fires: 1 patient(s)" in text.output
    assert "tdm1-platelets-exactly-50: - -> alert.tdm1.platelets-grade3 [critical/hold]" in text.output
    assert "ruleset versions: tdm1-safety 2.1.0 -> 2.2.0" in text.output
    out = runner.invoke(
        app,
        [
            "rules",
            "diff",
            str(rules),
            "--against",
            str(ROOT / "rules"),
            "--cohort",
            str(SAMPLES),
            "--format",
            "html",
            "-o",
            str(html),
        ],
    )
    assert out.exit_code == 0 and 'data-kind="now fires"' in html.read_text()


def test_ndjson_cohort_groups_by_subject(tmp_path: Path) -> None:
    import orjson

    from cds.authoring.cohort import load_cohort

    bundle = orjson.loads((SAMPLES / "tdm1-platelets-exactly-50.json").read_bytes())
    by_type: dict[str, list[bytes]] = {}
    for entry in bundle["entry"]:
        res = entry["resource"]
        by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    for rtype, lines in by_type.items():
        (tmp_path / f"{rtype}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    patients, rejected = load_cohort(tmp_path)
    assert rejected == [] and [p.name for p in patients] == ["Patient/tdm1-platelets-exactly-50"]
    assert len(patients[0].raw.resources) == len(bundle["entry"])


def test_new_scaffold_promote_and_changelog(rules: Path) -> None:
    before = yaml.safe_load((rules / "her2-therapy.yaml").read_text())["version"]
    major, minor, _patch = (int(x) for x in before.split("."))
    bumped = f"{major}.{minor + 1}.0"
    result = runner.invoke(
        app,
        [
            "rules",
            "new",
            "--from",
            "her2-therapy:rec.mbc2.tdm1",
            "--id",
            "rec.mbc2.tdm1-site",
            "--into",
            str(rules / "her2-therapy.yaml"),
            "--rules",
            str(rules),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "added rule rec.mbc2.tdm1-site with 8 test case(s)" in result.output
    data = yaml.safe_load((rules / "her2-therapy.yaml").read_text())
    assert (data["version"], data["status"]) == (bumped, "draft")
    assert data["tests"][-8]["name"] == "rec.mbc2.tdm1-site fires"
    # the generated cases pass on their own rule
    from cds.authoring.testing import run_embedded_tests

    lib = load_library(rules, statuses={"draft", "approved"})
    outcomes = {o.name: o for o in run_embedded_tests(lib) if o.name.startswith("rec.mbc2.tdm1-site")}
    assert len(outcomes) == 8 and all(o.passed for o in outcomes.values())
    bad = runner.invoke(
        app, ["rules", "promote", str(rules / "her2-therapy.yaml"), "--to", "approved", "--by", "x"]
    )
    assert bad.exit_code == 2 and "draft can move to in-review, retired, not approved" in bad.output
    assert (
        runner.invoke(
            app, ["rules", "promote", str(rules / "her2-therapy.yaml"), "--to", "in-review"]
        ).exit_code
        == 0
    )
    # approval is refused while embedded tests fail (the copy also fires in the existing 2nd-line cases)
    refused = runner.invoke(
        app, ["rules", "promote", str(rules / "her2-therapy.yaml"), "--to", "approved", "--by", "A. Reviewer"]
    )
    assert refused.exit_code == 1 and "failing test" in refused.output
    from cds.authoring.changelog import changes

    old = yaml.safe_load((ROOT / "rules" / "her2-therapy.yaml").read_text())
    assert changes(old, yaml.safe_load((rules / "her2-therapy.yaml").read_text())) == [
        "status approved -> in-review",
        "rule added: rec.mbc2.tdm1-site",
        "8 test case(s) added",
    ]


def test_rules_facts_lists_every_path_a_condition_may_name_with_its_meaning() -> None:
    import json

    result = runner.invoke(app, ["rules", "facts", "labs.platelets.", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["path"]: (r["type"], r["description"]) for r in json.loads(result.output)}
    assert rows["labs.platelets.value"] == ("float | None", "value in the analyte's canonical unit")
    every = json.loads(runner.invoke(app, ["rules", "facts", "--format", "json"]).output)
    assert {r["path"] for r in every} == set(
        leaf_paths(agents=load_library(ROOT / "rules").valuesets.catalogue.agent_ids())
    )


def test_unknown_fact_path_names_the_closest_paths() -> None:
    fact_types = leaf_paths(agents=("tdm1", "tdxd"))
    with pytest.raises(
        Exception, match=r"unknown fact path 'therapy.on_tdm1' \(did you mean therapy.on.tdm1"
    ):
        parse_condition({"therapy.on_tdm1": True}, {}, fact_types, "rule")


def test_changing_a_shared_parameter_warns_every_other_ruleset_that_uses_it(rules: Path) -> None:
    """platelets_grade3_below is declared in tdm1-safety and read by tdxd-safety too: editing it
    changes T-DXd's approved behaviour, so lint says so on the T-DXd file."""
    commit_all(rules)
    path = rules / "tdm1-safety.yaml"
    path.write_text(
        path.read_text().replace("platelets_grade3_below: {value: 50,", "platelets_grade3_below: {value: 55,")
    )
    warnings = [
        d for d in lint(rules, cohort=None).of("warning") if "uses $platelets_grade3_below" in d.message
    ]
    assert [(Path(d.file).name, d.message) for d in warnings] == [
        (
            "tdxd-safety.yaml",
            "uses $platelets_grade3_below from tdm1-safety.yaml, which changed since HEAD (50 -> 55): this "
            "ruleset's behaviour changes too; review its tests and impact with the change",
        )
    ]

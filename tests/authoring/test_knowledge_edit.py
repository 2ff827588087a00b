"""Knowledge additions on copies of the real rules: surgical edits (comments and layout kept),
sources checked by the engine's loaders, review status enforced in production, lifecycle and
changelog for knowledge files."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cds import config
from cds.authoring import edit, knowledge_edit
from cds.authoring.changelog import knowledge_changes
from cds.cli import app
from cds.engine.library import load_library
from cds.errors import ConfigurationError
from tests.authoring.workbench_helpers import copy_rules

ROOT = Path(__file__).resolve().parents[2]
OBS = "valuesets/observations.yaml"
runner = CliRunner()


def _unit() -> knowledge_edit.MemberEdit:
    units = "analytes.platelets.units"
    return knowledge_edit.member_edit(OBS, units, "thou/cmm", "Site lab report format", "1")


def test_adding_a_unit_changes_only_its_lines_bumps_the_version_and_returns_the_file_to_draft(
    rules: Path,
) -> None:
    old = (rules / OBS).read_text().splitlines()
    new = knowledge_edit.validated_text(rules, _unit()).splitlines()
    diff = list(difflib.unified_diff(old, new, n=0, lineterm=""))
    removed = [line[1:] for line in diff[2:] if line.startswith("-")]
    added = [line[1:] for line in diff[2:] if line.startswith("+")]
    units = '            "/uL": 0.001, "/mm3": 0.001, "cells/uL": 0.001, "{cells}/uL": 0.001'
    assert removed == ["version: 1.0.0", units + "}"]
    assert added == [
        "version: 1.1.0",
        "status: draft",
        units + ', "thou/cmm": 1}',
        "",
        "# Sources of members added through the workbench: dotted path -> member -> source.",
        "member_sources:",
        '  "analytes.platelets.units":',
        '    "thou/cmm": "Site lab report format"',
    ]
    assert new[0] == old[0]  # the header comment is kept


def test_block_style_lists_and_maps_get_a_line_in_their_own_indentation() -> None:
    text = "version: 1.0.0\nnames:\n  - alpha\n  - beta\nunits:\n  a: 1\n  b: 2\nempty: []\n"
    assert knowledge_edit.add_member_text(text, "names", "gamma", None) == text.replace(
        "  - beta\n", '  - beta\n  - "gamma"\n'
    )
    with_c = text.replace("  b: 2\n", '  b: 2\n  "c": 0.5\n')
    assert knowledge_edit.add_member_text(text, "units", "c", 0.5) == with_c
    assert knowledge_edit.add_member_text(text, "empty", "x", None).endswith('empty: ["x"]\n')
    with pytest.raises(ValueError, match="'beta' is already in names"):
        knowledge_edit.add_member_text(text, "names", "beta", None)
    with pytest.raises(ValueError, match="names is a list: a member has no factor"):
        knowledge_edit.add_member_text(text, "names", "delta", 2.0)


def test_member_sources_must_name_a_member_and_give_a_source(rules: Path) -> None:
    path = rules / OBS
    original = path.read_text()
    for block, reason in (
        ('member_sources:\n  "analytes.platelets.units":\n    "nope/L": "x"\n', "'nope/L' is not in"),
        ('member_sources:\n  "analytes.platelets.units":\n    "K/mcL": ""\n', "'K/mcL' needs a source"),
        ('member_sources:\n  "analytes.platelets.canonical":\n    "x": "y"\n', "is not a list or map"),
    ):
        path.write_text(original + block)
        with pytest.raises(ConfigurationError, match=reason):
            load_library(rules, statuses=config.WORKING_STATUSES)
    path.write_text(original + 'member_sources:\n  "analytes.platelets.units":\n    "K/mcL": "lab"\n')
    load_library(rules, statuses=config.WORKING_STATUSES)


def test_production_refuses_unapproved_knowledge_until_it_is_approved(rules: Path) -> None:
    (rules / OBS).write_text(knowledge_edit.validated_text(rules, _unit()))
    with pytest.raises(ConfigurationError) as refused:
        load_library(rules)
    assert refused.value.reason == (
        f"knowledge not approved in {rules}: valuesets/observations.yaml is draft. Approve it (workbench "
        "Review page or cds rules promote FILE --to approved --by NAME), or load drafts (--include-drafts)"
    )
    working = load_library(rules, statuses=config.WORKING_STATUSES)
    assert working.valuesets.analytes["platelets"].units["thou/cmm"] == 1
    with pytest.raises(ValueError, match=r"observations\.yaml: draft can move to in-review, not retired"):
        edit.promote(rules / OBS, "retired")
    edit.promote(rules / OBS, "in-review")
    edit.promote(rules / OBS, "approved", "A. Reviewer")
    data = yaml.safe_load((rules / OBS).read_text())
    assert (data["status"], data["approved_by"]) == ("approved", "A. Reviewer")
    assert load_library(rules).valuesets.statuses[OBS] == "approved"


def test_cli_promotes_a_knowledge_file_and_writes_its_changelog(tmp_path: Path) -> None:
    rules = copy_rules(tmp_path, git=True)  # a site's rules: the changelog compares with the last commit
    product = knowledge_edit.product_edit(
        "zercepac",
        {"display": "Zercepac (trastuzumab)", "agents": "trastuzumab", "names": "zercepac", "route": "iv",
         "source": "EMA EPAR"},
    )
    (rules / product.file).write_text(knowledge_edit.validated_text(rules, product))
    target = str(rules / product.file)
    assert runner.invoke(app, ["rules", "promote", target, "--to", "retired"]).exit_code == 2
    assert runner.invoke(app, ["rules", "promote", target, "--to", "in-review"]).exit_code == 0
    result = runner.invoke(app, ["rules", "promote", target, "--to", "approved", "--by", "A. Reviewer"])
    assert result.exit_code == 0, result.output
    changelog = (rules / "changelogs/catalogue-products.md").read_text()
    assert "Current: 2.1.0 (approved)" in changelog
    assert "products: added zercepac (display Zercepac (trastuzumab); agents [trastuzumab]" in changelog


def test_knowledge_changes_read_as_plain_language() -> None:
    old = {"version": "1.0.0", "analytes": {"platelets": {"units": {"K/uL": 1}, "loinc": ["777-3"]}}}
    new = {
        "version": "1.1.0",
        "status": "in-review",
        "analytes": {"platelets": {"units": {"K/uL": 1, "thou/cmm": 1}, "loinc": ["777-3", "26515-7"]}},
        "member_sources": {"analytes.platelets.units": {"thou/cmm": "lab"}},
    }
    assert knowledge_changes(old, new) == [
        "status approved -> in-review",
        "analytes.platelets.units: added 'thou/cmm' = 1 (source: lab)",
        "analytes.platelets.loinc: added '26515-7'",
    ]

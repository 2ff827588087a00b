"""Every numeric threshold of clinical-spec §5-§7 at its boundary, through the real engine.

Each case is a facts snapshot (defaults fill the rest) and the exact codes the alert rulesets give.
"""

from __future__ import annotations

from typing import Any

import pytest

from cds import Evaluator, PatientFacts
from cds.findings.build import build_findings

MBC_TDM1: dict[str, Any] = {
    "setting": "metastatic",
    "therapy": {"on": {"tdm1": True}, "started": {"tdm1": True}},
}
EBC_TDM1: dict[str, Any] = {"setting": "early", "therapy": {"on": {"tdm1": True}, "started": {"tdm1": True}}}
TDXD: dict[str, Any] = {"setting": "metastatic", "therapy": {"on": {"tdxd": True}}}
FRESH = {"age_days": 1}
FRESH_LABS = {
    "platelets": {**FRESH, "value": 200},
    "ast": {**FRESH, "x_uln": 1.0},
    "alt": {**FRESH, "x_uln": 1.0},
    "bilirubin": {**FRESH, "x_uln": 1.0},
    "anc": {**FRESH, "value": 3.0},
}
FRESH_LVEF = {"value": 60, "age_days": 10, "baseline": 60, "baseline_known": True, "drop": 0}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def snapshot(
    base: dict[str, Any], labs: dict[str, Any] | None = None, lvef: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    facts = merge(
        base,
        {
            "labs": merge(FRESH_LABS, labs or {}),
            "lvef": merge(FRESH_LVEF, lvef or {}),
            "weight": {"kg": 70, "age_days": 1},
            "her2": {"category": "positive", "tested": True},
        },
    )
    return merge(facts, extra)


def lab(name: str, **values: Any) -> dict[str, Any]:
    return {name: {**FRESH, **values}}


CASES = [
    # T-DM1 metastatic platelets
    ("plt 49.9 grade 3", snapshot(MBC_TDM1, lab("platelets", value=49.9)), ["alert.tdm1.platelets-grade3"]),
    ("plt 24.9 grade 4", snapshot(MBC_TDM1, lab("platelets", value=24.9)), ["alert.tdm1.platelets-grade4"]),
    (
        "plt 74.9 after 40 not recovered",
        snapshot(MBC_TDM1, {**lab("platelets", value=74.9), "platelets_min_since_last_dose": {"tdm1": 40}}),
        ["alert.tdm1.platelets-not-recovered"],
    ),
    (
        "plt 75 after 40 recovered",
        snapshot(MBC_TDM1, {**lab("platelets", value=75), "platelets_min_since_last_dose": {"tdm1": 40}}),
        [],
    ),
    (
        "baseline plt 99.9 before first dose",
        snapshot(
            {"setting": "metastatic", "therapy": {"on": {"tdm1": True}, "started": {"tdm1": False}}},
            lab("platelets", value=99.9),
        ),
        ["alert.tdm1.platelets-baseline"],
    ),
    (
        "baseline plt 100 before first dose",
        snapshot(
            {"setting": "metastatic", "therapy": {"on": {"tdm1": True}, "started": {"tdm1": False}}},
            lab("platelets", value=100),
        ),
        [],
    ),
    # T-DM1 metastatic liver
    ("AST/ALT 2.5x is not grade 2", snapshot(MBC_TDM1, {"ast_alt_max_x_uln": 2.5}), []),
    ("AST/ALT 2.51x grade 2", snapshot(MBC_TDM1, {"ast_alt_max_x_uln": 2.51}), ["alert.tdm1.ast-alt-grade2"]),
    ("AST/ALT 5.01x grade 3", snapshot(MBC_TDM1, {"ast_alt_max_x_uln": 5.01}), ["alert.tdm1.ast-alt-grade3"]),
    (
        "AST/ALT 20x still grade 3",
        snapshot(MBC_TDM1, {"ast_alt_max_x_uln": 20.0}),
        ["alert.tdm1.ast-alt-grade3"],
    ),
    (
        "AST/ALT 20.01x grade 4",
        snapshot(MBC_TDM1, {"ast_alt_max_x_uln": 20.01}),
        ["alert.tdm1.ast-alt-grade4"],
    ),
    ("bili 1.5x is not grade 2", snapshot(MBC_TDM1, lab("bilirubin", x_uln=1.5)), []),
    ("bili 1.51x grade 2", snapshot(MBC_TDM1, lab("bilirubin", x_uln=1.51)), ["alert.tdm1.bilirubin-grade2"]),
    (
        "bili 3.0x still grade 2",
        snapshot(MBC_TDM1, lab("bilirubin", x_uln=3.0)),
        ["alert.tdm1.bilirubin-grade2"],
    ),
    (
        "bili 10.01x grade 4",
        snapshot(MBC_TDM1, lab("bilirubin", x_uln=10.01)),
        ["alert.tdm1.bilirubin-grade4"],
    ),
    (
        "Hy's law drawn 4 days apart is not paired",
        snapshot(
            MBC_TDM1, {"ast_alt_max_x_uln": 3.5, "liver_draw_gap_days": 4, **lab("bilirubin", x_uln=2.5)}
        ),
        ["alert.tdm1.ast-alt-grade2", "alert.tdm1.bilirubin-grade2"],
    ),
    (
        "Hy's law at exactly 3x and 2x does not fire",
        snapshot(
            MBC_TDM1, {"ast_alt_max_x_uln": 3.0, "liver_draw_gap_days": 0, **lab("bilirubin", x_uln=2.0)}
        ),
        ["alert.tdm1.ast-alt-grade2", "alert.tdm1.bilirubin-grade2"],
    ),
    # T-DM1 metastatic LVEF
    ("LVEF 39.9 hold", snapshot(MBC_TDM1, lvef={"value": 39.9, "drop": 20.1}), ["alert.tdm1.lvef-hold"]),
    (
        "LVEF 40 drop 10 hold",
        snapshot(MBC_TDM1, lvef={"value": 40, "baseline": 50, "drop": 10}),
        ["alert.tdm1.lvef-hold"],
    ),
    (
        "LVEF 45 drop 9.9 repeat",
        snapshot(MBC_TDM1, lvef={"value": 45, "baseline": 54.9, "drop": 9.9}),
        ["alert.tdm1.lvef-repeat"],
    ),
    ("LVEF 45.1 continue", snapshot(MBC_TDM1, lvef={"value": 45.1, "baseline": 60, "drop": 14.9}), []),
    # T-DM1 early (KATHERINE) table
    (
        "EBC plt 74.9 hold",
        snapshot(EBC_TDM1, lab("platelets", value=74.9)),
        ["alert.tdm1-ebc.platelets-hold"],
    ),
    ("EBC plt 75 ok", snapshot(EBC_TDM1, lab("platelets", value=75)), []),
    ("EBC ALT 3.01x hold", snapshot(EBC_TDM1, lab("alt", x_uln=3.01)), ["alert.tdm1-ebc.alt-hold"]),
    ("EBC ALT 3.0x ok", snapshot(EBC_TDM1, lab("alt", x_uln=3.0)), []),
    (
        "EBC bili 1.01x hold",
        snapshot(EBC_TDM1, lab("bilirubin", x_uln=1.01)),
        ["alert.tdm1-ebc.bilirubin-hold"],
    ),
    (
        "EBC bili 2.01x discontinue",
        snapshot(EBC_TDM1, lab("bilirubin", x_uln=2.01)),
        ["alert.tdm1-ebc.bilirubin-discontinue"],
    ),
    (
        "EBC LVEF 44.9 hold",
        snapshot(EBC_TDM1, lvef={"value": 44.9, "drop": 15.1}),
        ["alert.tdm1-ebc.lvef-hold"],
    ),
    (
        "EBC LVEF 49.9 drop 9 repeat",
        snapshot(EBC_TDM1, lvef={"value": 49.9, "baseline": 58.9, "drop": 9}),
        ["alert.tdm1-ebc.lvef-repeat"],
    ),
    (
        "EBC cycle 15 order",
        snapshot(
            EBC_TDM1,
            order={
                "present": True,
                "agent": "tdm1",
                "agents": {"tdm1": True},
                "her2_directed": True,
                "dose_fit": "at-level",
                "cycle_number": 15,
            },
        ),
        ["alert.ebc.cycles"],
    ),
    (
        "EBC cycle 14 order",
        snapshot(
            EBC_TDM1,
            order={
                "present": True,
                "agent": "tdm1",
                "agents": {"tdm1": True},
                "her2_directed": True,
                "dose_fit": "at-level",
                "cycle_number": 14,
            },
        ),
        [],
    ),
    # T-DXd
    ("T-DXd ANC 0.49 grade 4", snapshot(TDXD, lab("anc", value=0.49)), ["alert.tdxd.neutrophils-grade4"]),
    ("T-DXd ANC 0.5 grade 3", snapshot(TDXD, lab("anc", value=0.5)), ["alert.tdxd.neutrophils-grade3"]),
    ("T-DXd plt 24.9 grade 4", snapshot(TDXD, lab("platelets", value=24.9)), ["alert.tdxd.platelets-grade4"]),
    ("T-DXd drop 20 at 50% continues", snapshot(TDXD, lvef={"value": 50, "baseline": 70, "drop": 20}), []),
    (
        "T-DXd drop 20.1 interrupts",
        snapshot(TDXD, lvef={"value": 50, "baseline": 70.1, "drop": 20.1}),
        ["alert.tdxd.lvef-hold"],
    ),
    # monitoring windows
    ("LVEF 91 days old is current", snapshot(MBC_TDM1, lvef={"age_days": 91}), []),
    ("LVEF 92 days old is overdue", snapshot(MBC_TDM1, lvef={"age_days": 92}), ["gap.lvef-overdue"]),
    (
        "labs 4 days old are stale",
        snapshot(MBC_TDM1, lab("ast", x_uln=1.0, age_days=4)),
        ["gap.labs-missing"],
    ),
]


@pytest.mark.parametrize(("name", "facts", "codes"), CASES, ids=[c[0] for c in CASES])
def test_threshold_boundary(name: str, facts: dict[str, Any], codes: list[str], evaluator: Evaluator) -> None:
    patient = PatientFacts.model_validate(facts)
    findings, _ = build_findings(evaluator.library, patient, evaluator.engine.fire(patient))
    got = sorted(f.code for f in findings if f.kind in ("alert", "data-gap"))
    assert got == sorted(codes)

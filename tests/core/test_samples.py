"""Every synthetic scenario in fhir_samples/ gives exactly its expected findings (sidecar files).

The sidecars were written from the clinical spec by hand, independently of the engine; a failure
here is a disagreement between the engine and the specification of that scenario. The ``rw-*``
samples (fhir_samples/realworld.py) vary how each fact is recorded, as real records do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cds import Evaluator, parse_as_of, raw_patient_from_path, read_order
from tests.conftest import SAMPLES

SIDECARS = sorted(SAMPLES.glob("*.expected.yaml"))


def _case(sidecar: Path) -> tuple[Path, dict[str, Any]]:
    expected = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
    return sidecar.with_name(sidecar.name.replace(".expected.yaml", ".json")), expected


def test_there_is_a_sample_per_scenario() -> None:
    assert len(SIDECARS) >= 25
    for sidecar in SIDECARS:
        assert _case(sidecar)[0].exists(), sidecar


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.name.replace(".expected.yaml", ""))
def test_sample_gives_exactly_its_expected_findings(sidecar: Path, evaluator: Evaluator) -> None:
    bundle, expected = _case(sidecar)
    order = None
    if expected.get("order"):
        order_path = SAMPLES / expected["order"]
        order = read_order(order_path.read_bytes(), str(order_path))
    result = evaluator.evaluate(
        raw_patient_from_path(bundle), as_of=parse_as_of(expected["as_of"]), order=order
    )
    got = {f.code: f for f in result.evaluation.findings}
    want = {f["code"]: f for f in expected["findings"]}
    assert sorted(got) == sorted(want)
    for code, attrs in want.items():
        for key, value in attrs.items():
            if key != "code":
                assert getattr(got[code], key) == value, f"{code}.{key}"
    # a sidecar may list resource ids that must be left out (another patient's data, unreadable
    # entries); nothing else may be skipped
    skipped = sorted(s.resource.rsplit("/", 1)[-1] for s in result.evaluation.skipped)
    assert skipped == sorted(expected.get("skipped") or [])


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.name.replace(".expected.yaml", ""))
def test_every_finding_shows_its_basis(sidecar: Path, evaluator: Evaluator) -> None:
    """FDA non-device CDS criteria: rule id and version, facts with resource ids, and evidence."""
    bundle, expected = _case(sidecar)
    order = None
    if expected.get("order"):
        order = read_order((SAMPLES / expected["order"]).read_bytes(), expected["order"])
    result = evaluator.evaluate(
        raw_patient_from_path(bundle), as_of=parse_as_of(expected["as_of"]), order=order
    )
    for finding in result.evaluation.findings:
        assert finding.rule.id and finding.rule.version and finding.rule.ruleset
        assert finding.basis, finding.code
        if finding.kind in ("recommendation", "alert"):
            assert finding.evidence and all(e.url.startswith("https://") for e in finding.evidence)
            assert any(b.resources for b in finding.basis), finding.code
        if finding.rule.evidence_status == "unverified":
            assert finding.review_required and "verify against the current label" in finding.detail
        assert len(finding.summary) <= 139, finding.code

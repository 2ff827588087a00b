"""The synthetic cohort is recognised by the engine (the report itself: test_report.py)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

from cds.cohort.synth import SCENARIOS, write_cohort
from tests.cohort.helpers import AS_OF, run, table


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synth_is_seeded_and_recognised_by_the_engine(tmp_path: Path) -> None:
    stats = write_cohort(tmp_path / "a", 700, seed=5, as_of=AS_OF.date(), max_lines=4000)
    write_cohort(tmp_path / "b", 700, seed=5, as_of=AS_OF.date(), max_lines=4000)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert len(list((tmp_path / "a").glob("Observation.*.ndjson"))) >= 2  # rolled over like $export
    assert set(stats.by_scenario) == set(SCENARIOS)
    summary = run(tmp_path / "a", tmp_path / "out", processes=2, partition_size=200).data
    assert (summary["patients_in"], summary["evaluated"], summary["rejected"]) == (700, 700, 0)
    with (tmp_path / "a" / "synth-truth.csv").open() as handle:
        truth = {row["patient"]: row for row in csv.DictReader(handle)}
    rows = {r["patient"]: r for r in table(tmp_path / "out", "patients").to_pylist()}
    hits: Counter[str] = Counter()
    her2_ok: Counter[str] = Counter()
    for pid, t in truth.items():
        codes = (rows[pid]["codes"] or "").split()
        hits[t["scenario"]] += bool(t["signature"]) and t["signature"] in codes
        her2_ok[t["scenario"]] += (
            rows[pid]["her2_category"] == t["her2_category"] and rows[pid]["setting"] == t["setting"]
        )
    for scenario, count in stats.by_scenario.items():
        assert her2_ok[scenario] / count >= 0.9, (scenario, her2_ok[scenario], count)
        if SCENARIOS[scenario][3]:
            assert hits[scenario] / count >= 0.6, (scenario, hits[scenario], count)
    # Noise shows up as the data gaps and alerts a quality team would act on.
    findings = table(tmp_path / "out", "findings")
    codes = set(findings["code"].to_pylist())
    for expected in (
        "gap.lvef-overdue",
        "gap.labs-missing",
        "alert.tdm1.platelets-grade3",
        "alert.tdxd.neutrophils-grade3",
        "gap.unit-unrecognized",
        "rec.mbc2.tdxd",
    ):
        assert expected in codes, expected

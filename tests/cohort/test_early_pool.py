"""A large NDJSON cohort starts its workers before ingesting: same results, no worker left behind.

The workers load the rules while the coordinator groups the lines. Whether the pool was started
early must not change a single output, and an ingest that fails must not leave spawned workers.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cds.cohort import runner
from cds.cohort.runner import RunOptions, run_cohort
from cds.cohort.synth import write_cohort
from cds.errors import CohortError
from tests.cohort.helpers import AS_OF, RULES


def options(source: Path, out: Path, processes: int) -> RunOptions:
    return RunOptions(
        input=source,
        out=out,
        as_of=AS_OF,
        rules_dir=RULES,
        processes=processes,
        partition_size=15,
        report=False,
    )


def test_a_pool_started_before_ingest_gives_the_same_outputs_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cohort(tmp_path / "in", 60, seed=11, as_of=AS_OF.date())
    started: list[int] = []
    plain_start = runner.LocalPool.start

    def start(processes: int, rules: runner.RulesSpec | None = None) -> runner.LocalPool:
        started.append(processes)
        assert rules is not None  # the early pool loads the rules as it starts
        return plain_start(processes, rules)

    monkeypatch.setattr(runner, "EARLY_POOL_BYTES", 0)
    monkeypatch.setattr(runner.LocalPool, "start", staticmethod(start))
    pooled = run_cohort(options(tmp_path / "in", tmp_path / "pooled", 2))
    single = run_cohort(options(tmp_path / "in", tmp_path / "single", 1))
    assert started == [2]
    assert pooled.data["evaluated"] == single.data["evaluated"] == 60
    for name in ("findings", "patients"):
        assert pq.read_table(tmp_path / "pooled" / f"{name}.parquet").equals(
            pq.read_table(tmp_path / "single" / f"{name}.parquet")
        )
    assert multiprocessing.active_children() == []


def test_an_ingest_that_fails_terminates_the_early_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cohort(tmp_path / "in", 5, seed=12, as_of=AS_OF.date())

    def broken_ingest(*args: object, **kwargs: object) -> None:
        raise CohortError("the spill disk is full")

    monkeypatch.setattr(runner, "EARLY_POOL_BYTES", 0)
    monkeypatch.setattr(runner, "ingest_ndjson", broken_ingest)
    with pytest.raises(CohortError, match="spill disk is full"):
        run_cohort(options(tmp_path / "in", tmp_path / "out", 2))
    assert multiprocessing.active_children() == []


def test_a_small_input_starts_no_pool_before_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cohort(tmp_path / "in", 5, seed=13, as_of=AS_OF.date())
    early: list[object] = []
    plain_start = runner.LocalPool.start

    def start(processes: int, rules: runner.RulesSpec | None = None) -> runner.LocalPool:
        early.append(rules)
        return plain_start(processes, rules)

    monkeypatch.setattr(runner.LocalPool, "start", staticmethod(start))
    run_cohort(options(tmp_path / "in", tmp_path / "out", 2))
    assert early == [None]  # started after ingest, sized to the partitions, rules loaded on first use

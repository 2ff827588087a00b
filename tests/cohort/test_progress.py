"""The cohort progress display moves per patient and shows the rate the run really achieves."""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path

from rich.progress import Progress as Bar

from cds.cohort import runner
from cds.cohort.cli import RateColumn
from cds.cohort.runner import Progress, RunOptions, run_cohort
from cds.cohort.sources import classify
from cds.cohort.spill import ingest_ndjson, plan_partitions
from cds.cohort.synth import write_cohort
from cds.cohort.worker import RulesSpec, SpillSource, Task, report_progress, run_task
from tests.cohort.helpers import AS_OF, RULES


def progress_steps(
    tmp_path: Path, patients: int, seed: int, processes: int, partition_size: int
) -> list[int]:
    """The progress advances a cohort run of ``patients`` synthetic patients reports."""
    write_cohort(tmp_path / "in", patients, seed=seed, as_of=AS_OF.date())
    steps: list[int] = []
    options = RunOptions(
        input=tmp_path / "in",
        out=tmp_path / "out",
        as_of=AS_OF,
        rules_dir=RULES,
        processes=processes,
        partition_size=partition_size,
        report=False,
    )
    run_cohort(options, Progress(evaluate_advance=steps.append))
    return steps


def test_in_process_progress_advances_once_per_patient(tmp_path: Path) -> None:
    steps = progress_steps(tmp_path, 30, seed=3, processes=1, partition_size=10)
    assert steps == [1] * 30  # one step per patient, not one jump of 10 per partition


def test_pool_workers_count_every_patient_they_take_up_in_shared_memory(tmp_path: Path) -> None:
    write_cohort(tmp_path / "in", 25, seed=4, as_of=AS_OF.date())
    db = tmp_path / "spill.sqlite"
    ingest_ndjson(classify(tmp_path / "in"), db, lambda record: None)
    (part,) = plan_partitions(db, 100)
    taken = multiprocessing.get_context("spawn").Value("q", 0)
    sigint = signal.getsignal(signal.SIGINT)
    runner._init_worker(taken)  # what each pool process runs first (it also ignores Ctrl-C)
    try:
        result = run_task(
            Task(0, SpillSource(str(db), part, "in"), RulesSpec.from_dir(RULES, {"approved"}, False), AS_OF)
        )
    finally:
        report_progress(None)
        signal.signal(signal.SIGINT, sigint)  # later tests' subprocesses must not inherit it
    assert taken.value == result.counts["patients_in"] == 25


def test_pool_progress_adds_up_to_the_cohort(tmp_path: Path) -> None:
    steps = progress_steps(tmp_path, 40, seed=5, processes=2, partition_size=20)
    assert sum(steps) == 40


def test_rate_is_patients_done_by_this_run_over_the_time_it_took() -> None:
    now = [100.0]
    bar = Bar(RateColumn(), get_time=lambda: now[0], disable=True)
    task = bar.add_task("evaluating", total=10_000, completed=2_000, unit="patients", initial=2_000)
    now[0] = 100.5
    bar.advance(task, 100)
    assert str(RateColumn().render(bar.tasks[0])) == "- patients/s"  # under a second: no figure yet
    now[0] = 110.0
    bar.advance(task, 2_900)
    # 3,000 patients in 10 s: 300/s (the 2,000 a resumed run found done do not count)
    assert str(RateColumn().render(bar.tasks[0])) == "300 patients/s"

"""``cds cohort run`` and ``cds cohort synth``.

Exit codes: 0 done and reconciled; 1 counts did not reconcile, an evaluation failed inside the
engine, or part of the input could not be read (a damaged file, a manifest entry, errors the export
reported: see errors.jsonl; every other patient is evaluated and the outputs are written); 2 bad
arguments or input; 130 interrupted (finished partitions kept: rerun with --resume).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cds import config
from cds.clikit import AsOfOpt, RulesOpt, as_of_or_exit, err, fail, format_option

cohort_app = typer.Typer(
    help="Evaluate whole cohorts (Bulk FHIR NDJSON or folders of bundles) and report who needs what.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class RateColumn(ProgressColumn):
    """The true rate: what this run has done divided by the time it has taken (patients a resumed
    run found done are not counted), not a short-window estimate that jumps with each batch."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "patients")
        elapsed = task.finished_time if task.finished else task.elapsed
        done = task.completed - float(task.fields.get("initial", 0))
        if not elapsed or elapsed < 1.0 or done <= 0:
            return Text(f"- {unit}/s", style="cyan")
        return Text(f"{done / elapsed:,.0f} {unit}/s", style="cyan")


_fail = fail


@cohort_app.command("run")
def run(
    source: Annotated[
        Path, typer.Argument(help="Bulk NDJSON folder or file, folder of bundles, or .jsonl of bundles.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created).")],
    as_of: AsOfOpt = None,
    output_format: Annotated[
        str,
        format_option(
            "parquet",
            "csv",
            "fhir",
            help="Output: the table files as parquet or csv; fhir writes parquet tables plus "
            "fhir/<Type>.ndjson (GuidanceResponse, DetectedIssue, RequestGroup: FHIR R4).",
        ),
    ] = "parquet",
    processes: Annotated[
        int | None, typer.Option("--processes", "-j", help="Local worker processes (default: one per core).")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. dask://10.0.0.5:8786.")
    ] = None,
    dask_local: Annotated[
        int | None, typer.Option("--dask-local", help="Start a local Dask cluster with N worker processes.")
    ] = None,
    partition_size: Annotated[int, typer.Option("--partition-size", help="Patients per partition.")] = 1000,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip partitions finished by an earlier run.")
    ] = False,
    rules: RulesOpt = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (e.g. in CI logs).")
    ] = False,
) -> None:
    """Evaluate every patient; write findings, patients, errors.jsonl, summary.json and report.html."""
    from cds.cohort.runner import Progress as Hooks
    from cds.cohort.runner import RunOptions, run_cohort
    from cds.errors import (
        OUTCOMES,
        BadManifest,
        CohortError,
        DamagedFile,
        ExportReported,
        Interrupted,
        outcome_of,
    )

    if scheduler and dask_local:
        raise _fail("use --scheduler or --dask-local, not both")
    if (
        partition_size < 1
        or (processes is not None and processes < 1)
        or (dask_local is not None and dask_local < 1)
    ):
        raise _fail("--partition-size, --processes and --dask-local must be at least 1")
    instant = as_of_or_exit(as_of)
    rules_dir = config.rules_dir(rules)
    opts = RunOptions(
        input=source,
        out=out,
        as_of=instant,
        rules_dir=rules_dir,
        fmt="parquet" if output_format == "fhir" else output_format,  # type: ignore[arg-type]
        fhir=output_format == "fhir",
        processes=processes,
        scheduler=scheduler,
        dask_local=dask_local,
        partition_size=partition_size,
        resume=resume,
        report=not no_report,
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=no_progress,
        transient=False,
    )
    ids: dict[str, Any] = {}

    def ingest_start(total: int) -> None:
        ids["ingest"] = bar.add_task("grouping by patient", total=max(1, total // 1_000_000), unit="MB")

    def evaluate_start(total: int, done: int) -> None:
        if "ingest" in ids:
            bar.update(ids["ingest"], completed=bar.tasks[0].total)
        ids["eval"] = bar.add_task("evaluating", total=total, completed=done, unit="patients", initial=done)

    hooks = Hooks(
        ingest_start=ingest_start,
        ingest_advance=lambda done: bar.update(ids["ingest"], completed=done // 1_000_000),
        evaluate_start=evaluate_start,
        evaluate_advance=lambda n: bar.advance(ids["eval"], n),
    )
    try:
        with bar:
            summary = run_cohort(opts, hooks).data
    except CohortError as exc:
        raise _fail(str(exc), outcome_of(exc).exit_code) from exc
    except Interrupted as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(outcome_of(exc).exit_code) from exc
    kinds: dict[str, int] = summary["error_kinds"]
    failed = kinds.get(OUTCOMES["evaluation-failed"].cohort_kind, 0)
    unread = {
        kind: kinds[kind]
        for kind in sorted({OUTCOMES[e.code].cohort_kind for e in (DamagedFile, BadManifest, ExportReported)})
        if kinds.get(kind)
    }
    err.print(
        f"{summary['patients_in']} patients in: {summary['evaluated']} evaluated, "
        f"{summary['rejected']} rejected; "
        f"{summary['findings']} findings; {summary['error_records']} records in errors.jsonl",
        markup=False,
    )
    timings = summary["timings"]
    err.print(
        f"{timings['total_s']:.1f} s total ({timings['ingest_s']:.1f} s grouping), "
        f"{timings['patients_per_s_total'] or 0:,.0f} patients/s; outputs in {out}/",
        markup=False,
    )
    if not summary["reconciled"]:
        bad = [k for k, v in summary["checks"].items() if not v]
        raise _fail(f"counts do not reconcile: {', '.join(bad)}", 1)
    if unread:
        listed = ", ".join(f"{n} {kind}" for kind, n in unread.items())
        raise _fail(
            f"part of the input was not read ({listed} in errors.jsonl); every other patient was evaluated",
            1,
        )
    if failed:
        raise _fail(
            f"{failed} patient(s) failed inside the engine (kind evaluation-failed in errors.jsonl)", 1
        )


@cohort_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Bulk NDJSON files.")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="How many patients.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 7,
    as_of: Annotated[str, typer.Option("--as-of", help="Data are dated before this day.")] = "2026-11-01",
    gz: Annotated[bool, typer.Option("--gzip", help="Write .ndjson.gz files.")] = False,
    max_lines: Annotated[
        int, typer.Option("--max-lines", help="Lines per file before rolling over.")
    ] = 1_000_000,
) -> None:
    """Write a realistic synthetic HER2 clinic cohort as Bulk NDJSON (plus synth-truth.csv)."""
    from cds.cohort.synth import write_cohort

    try:
        day = date.fromisoformat(as_of)
    except ValueError as exc:
        raise _fail(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)") from exc
    if patients < 1 or max_lines < 1:
        raise _fail("--patients and --max-lines must be at least 1")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("writing patients", total=patients)
        stats = write_cohort(
            out, patients, seed, day, gz, max_lines, lambda done: bar.update(task, completed=done)
        )
        bar.update(task, completed=patients)
    err.print(
        f"{stats.patients} patients, {stats.resources} resources in {stats.files} files in {out}/",
        markup=False,
    )
    for scenario, count in stats.by_scenario.items():
        err.print(f"  {scenario:28} {count}", markup=False)

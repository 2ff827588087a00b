"""Run a cohort: ingest, partition, evaluate on a process pool or Dask, merge, summarise, report.

Partitions are the unit of scheduling, of output and of ``--resume``: each finished partition
is written by the coordinating process as soon as it arrives, and a rerun with ``--resume``
skips partitions that have a done-marker (after checking that the input, as-of instant, rules
and partition size are the same). Ctrl-C terminates the workers and leaves finished partitions
in place.

The local pool uses the ``spawn`` start method: workers do not inherit the parent's state, and
each one reads its partitions straight from the SQLite spill. Dask tasks carry their input bytes
and the rule files, because a remote worker sees neither the spill nor the rules directory.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from cds.cohort import outputs
from cds.cohort.outputs import error_record
from cds.cohort.sources import CohortInput, classify, damaged, lines_until_break, open_binary
from cds.cohort.spill import (
    IngestStats,
    Partition,
    fingerprint,
    ingest_ndjson,
    is_complete,
    plan_partitions,
    stored_stats,
)
from cds.cohort.worker import (
    FileSource,
    PartResult,
    RulesSpec,
    SpillSource,
    Task,
    materialise,
    report_progress,
    run_task,
)
from cds.errors import CohortError as CohortError
from cds.errors import DamagedFile
from cds.errors import Interrupted as Interrupted
from cds.findings.fhir_out import TYPES as FHIR_TYPES


@dataclass
class RunOptions:
    """Everything a cohort run needs (the CLI fills it; tests build it directly)."""

    input: Path
    out: Path
    as_of: datetime
    rules_dir: Path
    statuses: frozenset[str] = frozenset({"approved"})
    fmt: outputs.OutputFormat = "parquet"
    processes: int | None = None
    scheduler: str | None = None
    dask_local: int | None = None
    partition_size: int = 1000
    resume: bool = False
    report: bool = True
    fhir: bool = False  # also write fhir/<Type>.ndjson: GuidanceResponse, DetectedIssue, RequestGroup


@dataclass
class Progress:
    """Callbacks the CLI binds to a progress display (all optional). ``evaluate_advance`` is called
    as patients are taken up (several times a second on the local pool, per patient in-process;
    per finished partition on Dask, whose workers share no memory with the coordinator)."""

    ingest_start: Callable[[int], None] = lambda total_bytes: None
    ingest_advance: Callable[[int], None] = lambda done_bytes: None
    evaluate_start: Callable[[int, int], None] = lambda total_patients, already_done: None
    evaluate_advance: Callable[[int], None] = lambda patients: None


@dataclass
class Summary:
    """The reconciled counts and timings of a run (written as summary.json)."""

    data: dict[str, Any] = field(default_factory=dict)


def default_processes() -> int:
    """One worker per usable core (the rules engine evaluates one patient at a time per process)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _executor_name(opts: RunOptions) -> str:
    if opts.scheduler:
        return f"dask({opts.scheduler})"
    if opts.dask_local:
        return f"dask-local({opts.dask_local} workers)"
    return f"process-pool({opts.processes or default_processes()})"


def _manifest(opts: RunOptions, inp: CohortInput, rules: RulesSpec) -> dict[str, Any]:
    return {
        "input": str(opts.input.resolve()),
        "kind": inp.kind,
        "fingerprint": fingerprint(inp),
        "as_of": opts.as_of.isoformat(),
        "rules_digest": rules.digest,
        "statuses": sorted(opts.statuses),
        "partition_size": opts.partition_size,
        "fhir": opts.fhir,
    }


def _bundle_items(inp: CohortInput, sink: IO[bytes]) -> list[tuple[str, int, int, int]]:
    """Items of a bundles input: whole files, or (offset, length, line) of each .jsonl line (a
    .jsonl that breaks off keeps the lines before the break; the break goes to ``sink``)."""
    if inp.kind == "bundles":
        return [(str(f.path), 0, -1, 0) for f in inp.files]
    items: list[tuple[str, int, int, int]] = []

    def broke(problem: DamagedFile) -> None:
        _write_line(sink, error_record(problem, "ingest"))

    for f in inp.files:
        name = str(f.path)
        try:
            handle = open_binary(f.path)
        except OSError as exc:
            broke(damaged(name, 1, 0, exc))
            continue
        with handle:
            offset = 0
            for number, line in lines_until_break(handle, broke, name):
                if line.strip():
                    items.append((name, offset, len(line), number))
                offset += len(line)
    return items


def _chunks(items: list[tuple[str, int, int, int]], size: int) -> list[tuple[tuple[str, int, int, int], ...]]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def _write_line(sink: IO[bytes], record: dict[str, Any]) -> None:
    sink.write(orjson.dumps(record) + b"\n")


def _init_worker(taken: Any = None) -> None:
    # The coordinator owns Ctrl-C: it terminates the pool; workers must not die mid-write on SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if taken is not None:  # a shared counter of patients taken up, read by the coordinator
        report_progress(lambda n: _add(taken, n))


def _add(counter: Any, n: int) -> None:
    with counter.get_lock():
        counter.value += n


POLL_SECONDS = 0.25  # how often the coordinator reads the workers' patient counter


def _pool_results(
    tasks: list[Task], processes: int, tick: Callable[[int], None] = lambda patients: None
) -> Iterator[PartResult]:
    """Partition results as they finish; ``tick(n)`` as patients are taken up, several times a
    second (a shared counter the workers bump per patient), so progress moves per patient."""
    if processes == 1:
        report_progress(tick)
        try:
            for task in tasks:
                yield run_task(task)
        finally:
            report_progress(None)
        return
    ctx = multiprocessing.get_context("spawn")
    taken = ctx.Value("q", 0)
    reported = 0

    def poll() -> None:
        nonlocal reported
        value = int(taken.value)
        if value > reported:
            tick(value - reported)
            reported = value

    pool = ctx.Pool(processes=min(processes, len(tasks)) or 1, initializer=_init_worker, initargs=(taken,))
    try:
        results = pool.imap_unordered(run_task, tasks)
        while True:
            try:
                result = results.next(timeout=POLL_SECONDS)
            except multiprocessing.TimeoutError:
                poll()
                continue
            except StopIteration:
                break
            poll()
            yield result
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _dask_results(tasks: list[Task], opts: RunOptions) -> Iterator[PartResult]:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise CohortError("--scheduler/--dask-local need dask[distributed] installed") from exc
    cluster = None
    if opts.dask_local:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=opts.dask_local,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        client = Client(cluster, timeout="30s")  # type: ignore[no-untyped-call]
    else:
        address = (opts.scheduler or "").removeprefix("dask://")
        address = address if "://" in address else f"tcp://{address}"
        try:
            client = Client(address, timeout="15s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise CohortError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = 2 * workers  # partitions in flight: bounds the bytes held on the client
        queue = list(tasks)
        futures = as_completed()  # type: ignore[no-untyped-call]
        while queue and futures.count() < window:  # type: ignore[no-untyped-call]
            futures.add(client.submit(run_task, materialise(queue.pop(0)), pure=False))  # type: ignore[no-untyped-call]
        for future in futures:
            result: PartResult = future.result()
            future.release()
            if queue:
                futures.add(client.submit(run_task, materialise(queue.pop(0)), pure=False))  # type: ignore[no-untyped-call]
            yield result
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


def run_cohort(opts: RunOptions, progress: Progress | None = None) -> Summary:
    """Run the whole cohort; returns the summary (also written to ``out/summary.json``)."""
    progress = progress or Progress()
    started = time.perf_counter()
    try:
        inp = classify(opts.input)
    except ValueError as exc:
        raise CohortError(str(exc)) from exc
    ship_rules = bool(opts.scheduler or opts.dask_local)
    rules = RulesSpec.from_dir(opts.rules_dir, opts.statuses, ship=ship_rules)
    out, work = opts.out, opts.out / ".work"
    manifest = _manifest(opts, inp, rules)
    manifest_path = work / "run.json"
    if opts.resume and manifest_path.exists():
        previous = orjson.loads(manifest_path.read_bytes())
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise CohortError(f"cannot resume {out}: {', '.join(changed)} differ from the earlier run")
    elif (out / "parts").exists():
        shutil.rmtree(out / "parts")
    work.mkdir(parents=True, exist_ok=True)
    manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    ingest_errors = work / "ingest-errors.jsonl"
    stats: IngestStats | None = None
    tasks: list[Task]
    parts: list[Partition] | None = None
    if inp.kind == "ndjson":
        db = work / "spill.sqlite"
        if opts.resume and is_complete(db, manifest["fingerprint"]) and ingest_errors.exists():
            stats = stored_stats(db)
        else:
            progress.ingest_start(sum(f.path.stat().st_size for f in inp.files))
            with ingest_errors.open("wb") as sink:
                stats = ingest_ndjson(
                    inp, db, lambda record: _write_line(sink, record), progress.ingest_advance
                )
        parts = plan_partitions(db, opts.partition_size)
        root = str(opts.input)
        tasks = [Task(p.index, SpillSource(str(db), p, root), rules, opts.as_of, opts.fhir) for p in parts]
        planned = sum(p.patients for p in parts)
    else:
        with ingest_errors.open("wb") as sink:
            items = _bundle_items(inp, sink)
            for name in inp.not_resource_files:
                sink.write(
                    orjson.dumps(
                        {
                            "stage": "ingest",
                            "kind": "not-a-bundle-file",
                            "file": str(name),
                            "line": None,
                            "patient": None,
                            "resource": None,
                            "reason": "a .jsonl file in a folder of .json bundles: not read",
                        }
                    )
                    + b"\n"
                )
        chunks = _chunks(items, opts.partition_size)
        tasks = [Task(i, FileSource(chunk), rules, opts.as_of, opts.fhir) for i, chunk in enumerate(chunks)]
        planned = len(items)
    ingest_seconds = time.perf_counter() - started

    done_counts: dict[int, dict[str, int]] = {}
    if opts.resume:
        for task in tasks:
            counts = outputs.part_done(out, task.index)
            if counts is not None:
                done_counts[task.index] = counts
    pending = [t for t in tasks if t.index not in done_counts]
    progress.evaluate_start(planned, sum(c["patients_in"] for c in done_counts.values()))
    first_result: float | None = None
    eval_started = time.perf_counter()
    results: Iterable[PartResult]
    per_partition = bool(opts.scheduler or opts.dask_local)  # remote workers report per partition
    if per_partition:
        results = _dask_results(pending, opts)
    else:
        results = _pool_results(pending, opts.processes or default_processes(), progress.evaluate_advance)
    try:
        if pending:
            for result in results:
                outputs.write_part(
                    out,
                    result.index,
                    result.findings,
                    result.patients,
                    result.errors,
                    result.counts,
                    result.fhir,
                )
                done_counts[result.index] = result.counts
                if first_result is None:
                    first_result = time.perf_counter() - started
                if per_partition:
                    progress.evaluate_advance(result.counts["patients_in"])
    except KeyboardInterrupt as exc:
        raise Interrupted(len(done_counts), len(tasks)) from exc
    evaluate_seconds = time.perf_counter() - eval_started

    order = [t.index for t in tasks]
    findings_rows = outputs.merge_tables(out, order, "findings", outputs.FINDINGS_SCHEMA, opts.fmt)
    patient_rows = outputs.merge_tables(out, order, "patients", outputs.PATIENTS_SCHEMA, opts.fmt)
    for stale in ("findings", "patients"):
        other = out / f"{stale}.{'csv' if opts.fmt == 'parquet' else 'parquet'}"
        if other.exists():
            other.unlink()
    error_kinds = outputs.merge_errors(out, ingest_errors, order)
    fhir_counts = outputs.merge_fhir(out, order, FHIR_TYPES) if opts.fhir else None
    if fhir_counts is None and (out / "fhir").exists():
        shutil.rmtree(out / "fhir")  # from an earlier --format fhir run: not these results
    summary = _summarise(
        opts, inp, rules, stats, done_counts, planned, findings_rows, patient_rows, error_kinds
    )
    patients_evaluated_now = sum(
        r["patients_in"] for i, r in done_counts.items() if i in {t.index for t in pending}
    )
    summary.data["timings"] = {
        "ingest_s": round(ingest_seconds, 3),
        "evaluate_s": round(evaluate_seconds, 3),
        "first_result_s": round(first_result, 3) if first_result is not None else None,
        "total_s": round(time.perf_counter() - started, 3),
        "patients_per_s_evaluate": round(patients_evaluated_now / evaluate_seconds, 1)
        if evaluate_seconds
        else None,
        "patients_per_s_total": round(patients_evaluated_now / (time.perf_counter() - started), 1),
        "resumed_partitions": len(tasks) - len(pending),
    }
    if fhir_counts is not None:
        summary.data["fhir_resources"] = fhir_counts
    (out / "summary.json").write_bytes(orjson.dumps(summary.data, option=orjson.OPT_INDENT_2))
    if opts.report:
        from cds.cohort.report import report_thresholds, write_report

        write_report(out, report_thresholds(opts.rules_dir, opts.statuses))
    return summary


def _summarise(
    opts: RunOptions,
    inp: CohortInput,
    rules: RulesSpec,
    stats: IngestStats | None,
    done: dict[int, dict[str, int]],
    planned: int,
    findings_rows: int,
    patient_rows: int,
    error_kinds: Counter[str],
) -> Summary:
    total = {
        k: sum(c.get(k, 0) for c in done.values())
        for k in ("patients_in", "evaluated", "rejected", "findings", "skipped_resources")
    }
    checks = {
        "patients_in == evaluated + rejected": total["patients_in"] == total["evaluated"] + total["rejected"],
        "patients_in == patients planned from the input": total["patients_in"] == planned,
        "patients.rows == evaluated": patient_rows == total["evaluated"],
        "findings.rows == findings": findings_rows == total["findings"],
    }
    if stats is not None:
        checks["lines == grouped + medications + unlinked + dropped"] = stats.reconciles()
    data: dict[str, Any] = {
        "input": str(opts.input),
        "input_kind": inp.kind,
        "as_of": opts.as_of.isoformat(),
        "rules_digest": rules.digest,
        "executor": _executor_name(opts),
        "partitions": len(done),
        "partition_size": opts.partition_size,
        **total,
        "findings_rows": findings_rows,
        "error_records": sum(error_kinds.values()),
        "error_kinds": dict(sorted(error_kinds.items())),
        "lines": stats.__dict__ if stats is not None else None,
        "checks": checks,
        "reconciled": all(checks.values()),
    }
    return Summary(data)

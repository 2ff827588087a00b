"""``cds rules lint`` on the shipped rules and samples: a fresh CLI run, and lint() in one process
as the workbench calls it (first run, repeated runs, and the run after a threshold edit).

    python bench/lint.py                   # 5 runs of each, median and minimum
    python bench/lint.py --runs 10
    python bench/lint.py --rev 2e232fb     # also time the CLI of an earlier commit (git archive)

The CLI figure is a fresh interpreter (imports, rule loading, FHIR parsing of every sample), run
with ``--base ""`` so an exported earlier commit (no git there) does the same work. In
one process, lint keeps the sample patients' facts and the rule files' line maps, keyed by file
contents and the derivation inputs, so later runs skip FHIR parsing; a rule-threshold edit keeps
them (facts do not depend on rule thresholds), a value-set edit would not. The stage table is
from lint's progress callback on the first in-process run. Numbers, not assertions: see
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds.authoring import cohort as cohort_cache  # noqa: E402
from cds.authoring import edit, lint  # noqa: E402

RULES, SAMPLES = ROOT / "rules", ROOT / "fhir_samples"


def cli(runs: int, root: Path = ROOT) -> tuple[list[float], list[float]]:
    """CPU and wall seconds of ``runs`` fresh ``cds rules lint rules/`` processes in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cds.cli", "rules", "lint", "rules", "--base", ""],
            check=False,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=root,
        )
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return cpu, wall


def timed(call: Callable[[], object]) -> tuple[float, float]:
    cpu, start = time.process_time(), time.perf_counter()
    call()
    return time.process_time() - cpu, time.perf_counter() - start


def clear_caches() -> None:
    cohort_cache._COHORT.clear()
    cohort_cache._FACTS.clear()
    lint._LINES.clear()


def row(name: str, cpu: list[float], wall: list[float]) -> None:
    print(
        f"| {name} | {statistics.median(cpu):.2f} s | {statistics.median(wall):.2f} s | {min(wall):.2f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rev", help="also time the CLI of this git revision (exported with git archive)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")

    stages: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(stage: str, _done: int, _total: int) -> None:
        now = time.perf_counter()
        if stage != last[1]:
            if last[1]:
                stages[str(last[1])] = stages.get(str(last[1]), 0.0) + now - float(last[0])
            last[0], last[1] = now, stage

    clear_caches()
    first = timed(lambda: lint.lint(RULES, cohort=SAMPLES, base="HEAD", progress=progress))

    firsts, warm, edited = [], [], []
    for _ in range(args.runs):
        clear_caches()
        firsts.append(timed(lambda: lint.lint(RULES, cohort=SAMPLES, base="HEAD")))
        warm.append(timed(lambda: lint.lint(RULES, cohort=SAMPLES, base="HEAD")))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "rules"
        shutil.copytree(RULES, copy)
        value = 50
        lint.lint(copy, cohort=SAMPLES, base=None)
        for _ in range(args.runs):
            value = 55 if value == 50 else 50
            edit.set_parameters(copy, {"platelets_grade3_below": value})
            edited.append(timed(lambda: lint.lint(copy, cohort=SAMPLES, base=None)))

    print("\n| run | CPU median | wall median | wall min |\n|---|---|---|---|")
    if args.rev:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.rev], check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            row(f"`cds rules lint rules/` at {args.rev} (fresh process)", *cli(args.runs, Path(tmp)))
    row("`cds rules lint rules/` (fresh process)", *cli(args.runs))
    row("`lint()` in a process, first run", [c for c, _ in firsts], [w for _, w in firsts])
    row("`lint()` again, nothing changed", [c for c, _ in warm], [w for _, w in warm])
    row("`lint()` after a threshold edit (copy, no git)", [c for c, _ in edited], [w for _, w in edited])
    print(f"\nfirst in-process run {first[1]:.2f} s wall; by stage:\n\n| stage | wall |\n|---|---|")
    for stage, seconds in stages.items():
        print(f"| {stage} | {seconds:.2f} s |")


if __name__ == "__main__":
    main()

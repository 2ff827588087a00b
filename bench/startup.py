"""Command-line start-up: ``cds --help`` and ``cds evaluate --help`` against importing typer and rich.

    python bench/startup.py            # 15 runs of each, median and minimum CPU and wall time
    python bench/startup.py --runs 40

Each figure is one fresh interpreter (``python -c ...``), so it includes interpreter start-up. The
baseline imports only what the help screen itself needs (typer and rich). CPU time (user + sys of
the child) is reported next to wall time because it moves less when the machine is busy. The
target is a ratio of at most 3: each command imports its engine, web, database and dataframe
modules only when it runs. Numbers, not assertions: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# typer (0.29) builds a pydantic TypeAdapter for each parameter of the command it runs, so any
# command's --help, even a one-option app, also imports pydantic: that row is the floor.
FLOOR = """
import typer
app = typer.Typer()
@app.command()
def main(name: str = "x", flag: bool = False) -> None: ...
@app.command()
def other() -> None: ...
app()
"""
CASES = {
    "import typer, rich (baseline)": ["-c", "import typer, rich.console, rich.table"],
    "one-option typer app: cmd --help": ["-c", FLOOR, "main", "--help"],
    "cds --help": ["-c", "from cds.cli import main; main()", "--help"],
    "cds evaluate --help": ["-c", "from cds.cli import main; main()", "evaluate", "--help"],
}


def measure(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """CPU and wall seconds of ``runs`` fresh interpreters running ``args``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per case")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"python bench/startup.py --runs {args.runs}   ({os.cpu_count()} cores, load average "
        f"{load[0]:.2f}, Python {sys.version.split()[0]})\n"
    )
    print(f"{'case':34} {'CPU median':>11} {'CPU min':>8} {'wall median':>12} {'wall min':>9}")
    medians = {}
    for name, case in CASES.items():
        measure(case, 2)  # warm the file cache
        cpu, wall = measure(case, args.runs)
        medians[name] = (statistics.median(cpu), statistics.median(wall))
        print(
            f"{name:34} {statistics.median(cpu) * 1000:9.0f}ms {min(cpu) * 1000:6.0f}ms "
            f"{statistics.median(wall) * 1000:10.0f}ms {min(wall) * 1000:7.0f}ms"
        )
    base_cpu, base_wall = medians["import typer, rich (baseline)"]
    print()
    for name in ("one-option typer app: cmd --help", "cds --help", "cds evaluate --help"):
        cpu, wall = medians[name]
        print(f"ratio {name:34} CPU {cpu / base_cpu:4.2f}x   wall {wall / base_wall:4.2f}x   (target <= 3x)")


if __name__ == "__main__":
    main()

"""Instructions per warm CDS Hooks call, counted by valgrind's callgrind: a figure that does not
drift with the machine's speed, for before/after comparisons on a shared VM.

    python bench/instructions.py                                  # this checkout, about 4 minutes
    python bench/instructions.py --checkout /path/to/other/checkout   # another version

Runs the checkout's own ``bench/hooks_parts.py`` (the real app, JWT checks on, SQLite audit;
each call with its own token) under callgrind twice, with 5 and with 105 calls, and prints the
difference of the two instruction totals divided by 100: the instructions of one warm
patient-view call with 300 prefetched resources, start-up and warm-up excluded.
``PYTHONHASHSEED`` is fixed so both runs hash alike.
Needs valgrind (Debian/Ubuntu: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def instructions(checkout: Path, calls: int, resources: int, work: Path) -> int:
    """The instruction total of one run of the checkout's ``bench/hooks_parts.py`` under callgrind."""
    out = work / f"callgrind.{calls}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "-q",
        sys.executable,
        str(checkout / "bench" / "hooks_parts.py"),
        "--calls",
        str(calls),
        "--resources",
        str(resources),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        command, check=True, cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    found = _TOTAL.search(out.read_text(encoding="utf-8", errors="replace"))
    if found is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkout", type=Path, default=ROOT, help="the version to measure (default: this one)"
    )
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument("--calls", type=int, nargs=2, default=(5, 105), metavar=("FEW", "MANY"))
    args = parser.parse_args()
    few, many = args.calls
    if many <= few:
        parser.error("--calls FEW MANY needs MANY > FEW")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        low = instructions(args.checkout, few, args.resources, Path(tmp))
        high = instructions(args.checkout, many, args.resources, Path(tmp))
    per_call = (high - low) / (many - few)
    print(
        f"python bench/instructions.py --calls {few} {many} --resources {args.resources}   ({args.checkout})"
    )
    print(f"instructions per warm patient-view call: {per_call / 1e6:.2f} M")


if __name__ == "__main__":
    main()

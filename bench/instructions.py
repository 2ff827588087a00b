"""Instructions per warm CDS Hooks call or per new patient, counted by valgrind's callgrind: a
figure that does not drift with the machine's speed, for before/after comparisons on a shared VM.

    python bench/instructions.py                                  # this checkout, about 4 minutes
    python bench/instructions.py --checkout /path/to/other/checkout   # another version
    python bench/instructions.py --workload new-patient           # a new 300-lab chart
    python bench/instructions.py --workload cohort-patient        # a synthetic cohort patient
    python bench/instructions.py --workload decode-floor          # orjson.loads of the 300-lab chart

Runs the checkout's own ``bench/hooks_parts.py`` (the real app, JWT checks on, SQLite audit;
each call with its own token) under callgrind twice, with 5 and with 105 calls, and prints the
difference of the two instruction totals divided by 100: the instructions of one warm
patient-view call with 300 prefetched resources, start-up and warm-up excluded.
``--workload new-patient|cohort-patient|decode-floor`` runs this checkout's ``bench/engine_work.py``
instead, with ``PYTHONPATH`` naming the checkout measured (5 and 55 patients for the 300-lab
charts, 5 and 105 cohort patients, each from its bytes, in one warm process): the instructions
of one new patient, or of decoding one 300-lab chart with orjson alone.
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


def instructions(
    checkout: Path, calls: int, resources: int, work: Path, workload: str = "hooks", pool: int = 0
) -> int:
    """The instruction total of one run of the workload under callgrind: the checkout's
    ``bench/hooks_parts.py``, or this checkout's ``bench/engine_work.py`` on the checkout's engine."""
    out = work / f"callgrind.{calls}"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if workload == "hooks":
        script = [
            str(checkout / "bench" / "hooks_parts.py"),
            "--calls",
            str(calls),
            "--resources",
            str(resources),
        ]
    else:
        script = [str(ROOT / "bench" / "engine_work.py"), "--workload", workload, "--count", str(calls)]
        script += ["--pool", str(pool)]  # the same patients generated in both runs
        env["PYTHONPATH"] = str(checkout)
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q", sys.executable, *script]
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
    parser.add_argument(
        "--workload",
        choices=("hooks", "new-patient", "cohort-patient", "decode-floor"),
        default="hooks",
        help="a warm patient-view call (default), a new 300-lab patient, a synthetic cohort patient, "
        "or orjson.loads of a 300-lab chart",
    )
    parser.add_argument("--resources", type=int, default=300, help="prefetched resources (hooks)")
    parser.add_argument(
        "--calls",
        type=int,
        nargs=2,
        default=None,
        metavar=("FEW", "MANY"),
        help="calls or patients of the two runs (default: 5 105; new-patient and decode-floor: 5 55)",
    )
    args = parser.parse_args()
    few, many = args.calls or ((5, 55) if args.workload in ("new-patient", "decode-floor") else (5, 105))
    if many <= few:
        parser.error("--calls FEW MANY needs MANY > FEW")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="cds-instructions-") as tmp:
        pool = many + 5  # bench/engine_work.py's warm-up patients
        low = instructions(args.checkout, few, args.resources, Path(tmp), args.workload, pool)
        high = instructions(args.checkout, many, args.resources, Path(tmp), args.workload, pool)
    per_call = (high - low) / (many - few)
    print(
        f"python bench/instructions.py --workload {args.workload} --calls {few} {many}"
        + (f" --resources {args.resources}" if args.workload == "hooks" else "")
        + f"   ({args.checkout})"
    )
    what = {
        "hooks": "warm patient-view call",
        "new-patient": "new 300-lab patient",
        "cohort-patient": "synthetic cohort patient",
        "decode-floor": "orjson.loads of a 300-lab chart",
    }[args.workload]
    print(f"instructions per {what}: {per_call / 1e6:.2f} M")


if __name__ == "__main__":
    main()

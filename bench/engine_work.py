"""Evaluate a number of new patients in one warm process: the workload ``bench/instructions.py
--workload new-patient|cohort-patient`` counts instructions of (start-up and warm-up excluded by
taking the difference of two counts).

    python bench/engine_work.py --workload new-patient --count 50

``new-patient``: variants of the 300-lab T-DM1 chart (``bench/patients.py``), each a patient the
process has not seen (their facts are alike, so the engine is told to forget the rules it fired
before each one: every patient's facts are asserted in durable_rules). ``cohort-patient``:
synthetic cohort patients (``cds cohort synth --seed 7``, about 45 resources each), the rules'
memory left as a cohort worker has it. ``decode-floor``: only ``orjson.loads`` of the new-patient
charts (the floor the 300-lab target is a multiple of). Both from their bytes (decode included), as
``cds evaluate`` and a cohort worker do. The engine measured is whichever ``cds`` ``PYTHONPATH``
names first.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import orjson

import cds  # the version measured: whatever PYTHONPATH names first
import cds.config
from cds import Evaluator, load_library, parse_as_of, raw_patient_from_bytes
from cds.cohort.synth import make_patient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench.patients
from bench.patients import lab_history_patient

AS_OF = parse_as_of("2026-11-01")
WARM = 5


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload", choices=("new-patient", "cohort-patient", "decode-floor"), default="new-patient"
    )
    parser.add_argument("--count", type=int, default=50, help="patients evaluated after the warm-up")
    parser.add_argument(
        "--pool",
        type=int,
        default=110,
        help="patients generated whatever --count is, so that two counts differ only by evaluations",
    )
    args = parser.parse_args()
    if not 0 <= args.count <= args.pool - WARM:
        parser.error(f"--count must be between 0 and --pool minus {WARM}")
    library = load_library(Path(cds.__file__).resolve().parent.parent / "rules")
    evaluator = Evaluator(library)
    tune = getattr(cds.config, "tune_gc", None)
    if tune is not None:  # what this version's long-running surfaces do after loading the rules
        tune()
    total = args.pool
    if args.workload in ("new-patient", "decode-floor"):
        items = [lab_history_patient(300, v) for v in range(1, total + 1)]
    else:
        items = [
            orjson.dumps(make_patient(7, i, date(2026, 11, 1), library.catalogue)[1]) for i in range(total)
        ]
    for data in items[:WARM]:
        evaluator.evaluate(raw_patient_from_bytes(data), as_of=AS_OF)
    started = time.process_time()
    forget = getattr(evaluator.engine, "forget", None) if args.workload == "new-patient" else None
    for data in items[WARM : WARM + args.count]:
        if args.workload == "decode-floor":
            orjson.loads(data)
            continue
        if forget is not None:
            forget()
        evaluator.evaluate(raw_patient_from_bytes(data), as_of=AS_OF)
    spent = time.process_time() - started
    print(f"{args.workload}: {args.count} patients, {1000 * spent / max(args.count, 1):.3f} CPU ms each")


if __name__ == "__main__":
    main()

"""The same measurement on any version of the engine, for before/after tables on a shared machine.

    python bench/before_after.py                                  # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/before_after.py --label before

Uses only what every version has (``Evaluator(library).evaluate``; a cache-clearing function if
the version has one), so an older checkout can be measured by the same code, back to back with
this one: shared machines drift by 2x within an hour, figures taken minutes apart are comparable,
figures taken on different days are not. CPU time (``time.process_time``), the median over all
repetitions. Prints one JSON line.

* ``lab300_cold``: the 300-lab on-T-DM1 chart of bench/patients.py, every memory forgotten first;
* ``lab300_new``: a different patient of that shape each time, in a warm process (the rules
  that fired for earlier facts forgotten, where the version remembers them);
* ``lab300_repeat``: the same patient again, as a CDS Hooks service sees it (the service's
  Evaluator configuration: ``remember_verdicts=True`` where the version has it);
* ``decode_floor``: orjson.loads of the 300-lab Bundle;
* ``synth_per_cpu_s``: synthetic cohort patients (cds cohort synth --seed 7) per CPU-second.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from collections.abc import Callable
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


def forgetter(library: object) -> Callable[[], None]:
    """This version's way to forget what earlier evaluations taught the process."""
    try:
        from cds.fhir.parse import forget_everything

        return lambda: forget_everything(library.valuesets)  # type: ignore[attr-defined]
    except ImportError:
        from cds.fhir.parse import clear_validation_cache  # type: ignore[attr-defined]

        return clear_validation_cache  # type: ignore[no-any-return]


def rounds(run: Callable[[int], float], per_round: int, count: int = 4) -> float:
    """The median CPU ms of ``run(i)`` over ``count * per_round`` repetitions."""
    return statistics.median(run(i) for i in range(count * per_round))


def cpu_ms(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", default="after")
    parser.add_argument("--patients", type=int, default=1000)
    args = parser.parse_args()
    library = load_library(Path(cds.__file__).resolve().parent.parent / "rules")
    evaluator = Evaluator(library)
    service = (
        Evaluator(library, remember_verdicts=True)  # type: ignore[call-arg]
        if "remember_verdicts" in inspect.signature(Evaluator).parameters
        else Evaluator(library)
    )
    forget = forgetter(library)
    tune = getattr(cds.config, "tune_gc", None)
    if tune is not None:  # what this version's long-running surfaces do after loading the rules
        tune()
    lab = lab_history_patient()
    variants = [lab_history_patient(300, v) for v in range(1, 200)]

    def evaluate(ev: Evaluator, data: bytes) -> float:
        return cpu_ms(lambda: ev.evaluate(raw_patient_from_bytes(data), as_of=AS_OF))

    for data in variants[:5]:
        evaluate(evaluator, data)
    out: dict[str, object] = {"label": args.label, "cds": str(Path(cds.__file__).resolve().parent)}
    out["decode_floor"] = rounds(lambda i: cpu_ms(lambda: orjson.loads(lab)), 100)

    fired_memo = getattr(evaluator.engine, "forget", lambda: None)  # the variants' facts are alike

    def cold(i: int) -> float:
        forget()
        fired_memo()
        return evaluate(evaluator, lab)

    out["lab300_cold"] = rounds(cold, 10)

    def new(i: int) -> float:
        fired_memo()  # a new patient's facts are asserted, not remembered
        return evaluate(evaluator, variants[5 + i % 190])

    out["lab300_new"] = rounds(new, 20)
    evaluate(service, lab)
    out["lab300_repeat"] = rounds(lambda i: evaluate(service, lab), 20)
    cohort = [
        orjson.dumps(make_patient(7, i, date(2026, 11, 1), library.catalogue)[1])
        for i in range(args.patients)
    ]
    for data in cohort[:50]:
        evaluate(evaluator, data)
    started = time.process_time()
    for data in cohort:
        evaluator.evaluate(raw_patient_from_bytes(data), as_of=AS_OF)
    out["synth_per_cpu_s"] = args.patients / (time.process_time() - started)
    print(orjson.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}).decode())


if __name__ == "__main__":
    main()

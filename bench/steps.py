"""Two steps measured on any version of the engine, back to back (see bench/before_after.py):

    python bench/steps.py
    PYTHONPATH=/path/to/other/checkout python bench/steps.py --label before

* ``rules``: ``RuleEngine.fire`` alone (durable_rules, every loaded ruleset) on the facts of
  synthetic cohort patients (``cds cohort synth --seed 7``) and of the 300-lab T-DM1 chart
  (bench/patients.py): median CPU ms;
* ``repeat``: the service's repeat evaluation of the 300-lab chart from already decoded resources
  (what the CDS Hooks service does after reading the request), ``Evaluator(remember_verdicts=True)``:
  median CPU ms.

CPU time (``time.process_time``), medians; prints one JSON line. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import orjson

import cds  # the version measured: whatever PYTHONPATH names first
from cds import (
    Evaluator,
    config,
    load_library,
    parse_as_of,
    raw_patient_from_bytes,
    raw_patient_from_resources,
)
from cds.cohort.synth import make_patient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bench.patients
from bench.patients import lab_history_patient

ROOT = Path(__file__).resolve().parent.parent
AS_OF = parse_as_of("2026-11-01")


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", default="after")
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    library = load_library(ROOT / "rules")
    evaluator = Evaluator(library)
    facts = [
        evaluator.evaluate(
            raw_patient_from_resources(make_patient(7, i, date(2026, 11, 1), library.catalogue)[1], "synth"),
            as_of=AS_OF,
        ).facts
        for i in range(args.patients)
    ]
    lab = lab_history_patient()
    lab_facts = evaluator.evaluate(raw_patient_from_bytes(lab, "lab"), as_of=AS_OF).facts
    config.tune_gc()
    for f in facts[:200]:
        evaluator.engine.fire(f)
    synth: list[float] = []
    for f in facts:
        started = time.process_time()
        evaluator.engine.fire(f)
        synth.append(time.process_time() - started)
    chart: list[float] = []
    for _ in range(300):
        started = time.process_time()
        evaluator.engine.fire(lab_facts)
        chart.append(time.process_time() - started)

    service = Evaluator(library, remember_verdicts=True)
    resources = [entry["resource"] for entry in orjson.loads(lab)["entry"]]
    for _ in range(30):
        service.evaluate(raw_patient_from_resources(resources, "call"), as_of=AS_OF)
    repeat: list[float] = []
    for _ in range(300):
        started = time.process_time()
        service.evaluate(raw_patient_from_resources(resources, "call"), as_of=AS_OF)
        repeat.append(time.process_time() - started)
    print(
        orjson.dumps(
            {
                "label": args.label,
                "cds": str(Path(cds.__file__).parent),
                "rules_synth_ms": ms(synth),
                "rules_lab300_ms": ms(chart),
                "repeat_lab300_ms": ms(repeat),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()

"""Select-then-validate against validate-everything on a synthetic cohort: same results, less work.

    python bench/validate_modes.py                  # 5,000 patients (about 2 minutes on 2 cores)
    python bench/validate_modes.py --patients 500

Builds the patients ``cds cohort synth --seed 7`` writes (cds.cohort.synth.make_patient), each
one's resources decoded from NDJSON lines as a Bulk export gives them; in every tenth patient one
resource (a different one each time) is made invalid for fhir.resources in a way its reading does
not notice (an unknown element, a date-only meta.lastUpdated, an extension without url).
Evaluates every patient with ``Evaluator(validate="all")`` and ``Evaluator(validate="selected")``.
Prints how many patients differ in anything (evaluation JSON: findings, gaps, skipped; facts;
provenance), how many resources fhir.resources validated in each mode and the CPU time of each
mode. The test suite runs the same comparison on 300 patients (tests/core/test_validation_modes.py).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from cds import Evaluator, load_library, parse_as_of
from cds.cohort.synth import make_patient
from cds.fhir import parse
from cds.fhir.source import raw_patient_from_resources

ROOT = Path(__file__).resolve().parent.parent
AS_OF = parse_as_of("2026-11-01")
INVALID = (
    lambda r: r.__setitem__("unknownElement", True),
    lambda r: r.__setitem__("meta", {"lastUpdated": "2026-01-01"}),
    lambda r: r.__setitem__("extension", [{"valueString": "x"}]),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--invalid-every", type=int, default=10, help="one invalid resource per N patients")
    args = parser.parse_args()
    library = load_library(ROOT / "rules")
    modes = {mode: Evaluator(library, validate=mode) for mode in ("all", "selected")}  # type: ignore[arg-type]
    patients = []
    for i in range(args.patients):
        chart = make_patient(args.seed, i, date(2026, 11, 1), library.catalogue)[1]
        if args.invalid_every and i % args.invalid_every == 0:
            n = i // args.invalid_every
            INVALID[n % len(INVALID)](chart[n % len(chart)])
        patients.append([orjson.dumps(r) for r in chart])
    resources = sum(len(p) for p in patients)
    counted = {"n": 0}
    plain = parse.validation_error

    def counting(resource: dict[str, Any], remember: bool = False) -> str | None:
        counted["n"] += 1
        return plain(resource, remember)

    results: dict[str, list[Any]] = {mode: [] for mode in modes}
    cpu = dict.fromkeys(modes, 0.0)
    validated = dict.fromkeys(modes, 0)
    parse.validation_error = counting
    chunk = 250  # modes alternate by chunks, so drift of a shared machine hits both alike
    try:
        for first in range(0, len(patients), chunk):
            for mode, evaluator in modes.items():
                counted["n"] = 0
                started = time.process_time()
                for lines in patients[first : first + chunk]:
                    raw = raw_patient_from_resources([orjson.loads(line) for line in lines], "synth")
                    result = evaluator.evaluate(raw, as_of=AS_OF)
                    results[mode].append(
                        (
                            result.evaluation.to_json(),
                            result.facts.model_dump_json(),
                            orjson.dumps(result.facts.provenance),
                        )
                    )
                cpu[mode] += time.process_time() - started
                validated[mode] += counted["n"]
    finally:
        parse.validation_error = plain
    differ = sum(1 for a, s in zip(results["all"], results["selected"], strict=True) if a != s)
    skipped = sum(len(orjson.loads(e[0])["skipped"]) for e in results["selected"])
    unreadable = sum(b"gap.unreadable-data" in e[0] for e in results["selected"])
    load = os.getloadavg()
    print(
        f"python bench/validate_modes.py --patients {args.patients} --seed {args.seed}   "
        f"({os.cpu_count()} cores, load average {load[0]:.2f})"
    )
    print(
        f"patients: {args.patients}, resources: {resources}; skipped resources: {skipped}, "
        f"patients with gap.unreadable-data: {unreadable}"
    )
    print(f"patients whose evaluation, facts or provenance differ between the modes: {differ}")
    for mode in modes:
        print(
            f"validate={mode + ':':9} {cpu[mode]:6.1f} s CPU "
            f"({args.patients / cpu[mode]:,.0f} patients/CPU-s), "
            f"{validated[mode]} resources validated with fhir.resources"
        )
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

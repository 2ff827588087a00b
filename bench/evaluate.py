"""Single-patient evaluation benchmark: where the time goes, throughput, memory, engine overhead.

    python bench/evaluate.py                 # full run (10,000 patients), ~1-2 minutes on 2 cores
    python bench/evaluate.py --patients 2000 # quicker

Prints, per bundle (small ~50 resources, the 330-resource Synthea breast-cancer bundle T0, the
2.7 MB Synthea bundle), median and p99 of (a) decode + filter + validate, (b) facts, (c) rules
(durable_rules fire for every ruleset, plus findings); patients/s over N evaluations in one process
cycling the 86 samples; RSS before/after; and the ratio of the durable_rules step to plain Python
for the same three decisions. Numbers, not assertions: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cds import Evaluator, load_library, parse_as_of, raw_patient_from_bytes
from cds.engine.durable import DurableRunner
from cds.engine.runtime import getter, project
from cds.facts.build import build_facts
from cds.facts.model import PatientFacts
from cds.fhir.validate import clear_validation_cache
from cds.findings.build import build_findings

ROOT = Path(__file__).resolve().parent.parent
# externally written bundles: vendored under tests/data/external, larger ones in $CDS_EXTERNAL_DATA
# (tests/data/SOURCES.md says where to download them)
EXTERNAL_ROOTS = [ROOT / "tests" / "data" / "external"] + (
    [Path(os.environ["CDS_EXTERNAL_DATA"])] if os.environ.get("CDS_EXTERNAL_DATA") else []
)
AS_OF = parse_as_of("2026-11-01")


def external(rel: str) -> bytes | None:
    """An external bundle's bytes, or None when it is not on this machine."""
    for root in EXTERNAL_ROOTS:
        if (root / rel).is_file():
            return (root / rel).read_bytes()
    print(f"not measured: {rel} (see tests/data/SOURCES.md for where to download it)")
    return None


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def stages(evaluator: Evaluator, data: bytes, reps: int, cold: bool = True) -> dict[str, list[float]]:
    """Per-stage times in ms over ``reps`` evaluations of one bundle (cold: no cached validation)."""
    out: dict[str, list[float]] = {"parse": [], "facts": [], "rules": [], "total": []}
    lib = evaluator.library
    for _ in range(reps):
        if cold:
            clear_validation_cache()
        start = time.perf_counter()
        record = evaluator.parse(raw_patient_from_bytes(data))
        parsed = time.perf_counter()
        facts = build_facts(record, lib.valuesets, lib.params, AS_OF)
        built = time.perf_counter()
        build_findings(lib, facts, evaluator.engine.fire(facts))
        done = time.perf_counter()
        spans = ((start, parsed), (parsed, built), (built, done))
        t_parse, t_facts, t_rules = ((b - a) * 1000 for a, b in spans)
        out["parse"].append(t_parse)
        out["facts"].append(t_facts)
        out["rules"].append(t_rules)
        out["total"].append(t_parse + t_facts + t_rules)
    return out


# -- the same three decisions in plain Python, for the engine-overhead ratio ---------------------------
def plain_python(f: PatientFacts) -> list[str]:
    fired = []
    p = f.labs.platelets.value
    if f.setting == "metastatic" and f.therapy.on_tdm1 and p is not None and 25 <= p < 50:
        fired.append("alert.tdm1.platelets-grade3")
    if (
        f.her2.category == "positive"
        and f.setting == "metastatic"
        and f.lines.known
        and f.lines.effective == 1
        and f.lines.last_her2_directed
        and f.progression in ("yes", "unknown")
        and not f.exposure.tdxd.ever
        and not f.conditions.ild_history
    ):
        fired.append("rec.mbc2.tdxd")
    labs = (f.labs.platelets, f.labs.ast, f.labs.alt, f.labs.bilirubin)
    if f.therapy.on_tdm1 and any(lab.age_days is None or lab.age_days > 3 for lab in labs):
        fired.append("gap.labs-missing.tdm1")
    return fired


def engine_ratio(
    evaluator: Evaluator, facts_list: list[PatientFacts], reps: int
) -> tuple[float, float, float]:
    lib = evaluator.library
    ids = ("alert.tdm1.platelets-grade3", "rec.mbc2.tdxd", "gap.labs-missing.tdm1")
    definition: dict[str, Any] = {}
    paths: list[str] = []
    for rid in ids:
        ruleset, compiled = lib.rule(rid)
        definition[rid] = ruleset.durable[rid]
        paths += [p for p in compiled.paths if p not in paths]
    runner = DurableRunner({"bench-three@1.0.0": definition})
    for f in facts_list:  # both implementations must agree before timing them
        # durable fires an $or rule once per matching branch; the runtime dedupes, and so do we
        fired = sorted(set(runner.fire("bench-three@1.0.0", project(tuple(paths), getter(f)))))
        assert fired == sorted(plain_python(f)), (fired, plain_python(f))
    _, t_engine = timed(
        lambda: [
            runner.fire("bench-three@1.0.0", project(tuple(paths), getter(f)))
            for _ in range(reps)
            for f in facts_list
        ]
    )
    _, t_python = timed(lambda: [plain_python(f) for _ in range(reps) for f in facts_list])
    n = reps * len(facts_list)
    return t_engine / n * 1000, t_python / n * 1000, t_engine / t_python


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000, help="evaluations for throughput and RSS")
    parser.add_argument("--reps", type=int, default=200, help="repetitions per bundle for stage timings")
    args = parser.parse_args()

    library = load_library(ROOT / "rules")
    evaluator = Evaluator(library)
    found = {
        "small (mbc-second-line, 47 resources)": (
            ROOT / "fhir_samples" / "mbc-second-line.json"
        ).read_bytes(),
        "T0 Synthea breast (330 resources, 1.1 MB)": external("mcode-pathways/T0_patient.json"),
        "Kathy_Walker Synthea (424 resources, 2.7 MB)": external(
            "smart-generated-r4-synthea/Kathy_Walker_59885d16-d333-481e-8edb-422fa047d6b6.json"
        ),
    }
    bundles = {name: data for name, data in found.items() if data is not None}
    gc.collect()
    load = os.getloadavg()
    print(
        f"python bench/evaluate.py --patients {args.patients} --reps {args.reps}   ({os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f})\n"
    )
    print(f"{'bundle':48} {'stage':6} {'median ms':>10} {'p99 ms':>8}")
    for name, data in bundles.items():
        stages(evaluator, data, 5)  # warm up
        times = stages(evaluator, data, args.reps)
        for stage in ("parse", "facts", "rules", "total"):
            values = times[stage]
            print(f"{name:48} {stage:6} {statistics.median(values):10.3f} {pct(values, 0.99):8.3f}")
        warm = stages(evaluator, data, args.reps, cold=False)["total"]
        print(
            f"{name:48} {'warm':6} {statistics.median(warm):10.3f} {pct(warm, 0.99):8.3f}   "
            "(same resources seen before: validation verdicts cached)"
        )

    samples = [p.read_bytes() for p in sorted((ROOT / "fhir_samples").glob("*.json"))]
    for data in samples:
        evaluator.evaluate(raw_patient_from_bytes(data), as_of=AS_OF)
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    for i in range(args.patients):
        clear_validation_cache()  # cold: every patient validated from scratch, as in a cohort
        evaluator.evaluate(raw_patient_from_bytes(samples[i % len(samples)]), as_of=AS_OF)
    elapsed = time.perf_counter() - start
    gc.collect()
    after = rss_mb()
    print(
        f"\nthroughput: {args.patients} evaluations of the {len(samples)} samples in {elapsed:.1f} s = "
        f"{args.patients / elapsed:,.0f} patients/s (one process, parse+facts+rules+findings, cold)"
    )
    print(
        f"RSS: {before:.1f} MiB before, {after:.1f} MiB after {args.patients} evaluations "
        f"(growth {after - before:+.1f} MiB)"
    )

    facts_list = [
        build_facts(evaluator.parse(raw_patient_from_bytes(d)), library.valuesets, library.params, AS_OF)
        for d in samples
    ]
    engine_us, python_us, ratio = engine_ratio(evaluator, facts_list, 50)
    print(
        "\nthree rules (platelets grade 3, rec.mbc2.tdxd, gap.labs-missing): "
        f"durable_rules {engine_us:.1f} us "
        f"vs plain Python {python_us:.1f} us per patient -> engine/Python = {ratio:.0f}x (same decisions, "
        f"checked on all {len(facts_list)} samples)"
    )


if __name__ == "__main__":
    main()

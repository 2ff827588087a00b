"""Single-patient evaluation benchmark: CPU per stage, the decode floor, throughput, memory, engine share.

    python bench/evaluate.py                  # about 2 minutes on 2 cores
    python bench/evaluate.py --patients 1000  # quicker

Times are CPU time of this process (``time.process_time``), medians over repetitions, so other
work on a shared machine inflates them less than wall time. Three situations per patient:

* cold: every memory of earlier evaluations forgotten first (``forget_everything``): the first
  patient of a fresh process, e.g. one ``cds evaluate`` run;
* new patient: a different patient of the same shape each time, in a process that has evaluated
  others (a cohort, a clinic's day of chart opens): what the element memories share across
  patients is warm, the patient's own resources are new (and its facts are asserted in
  durable_rules: the rules that fired for the alike facts of the variants before are forgotten);
* repeat: the same patient again with ``Evaluator(remember_verdicts=True)``, as the CDS Hooks
  service runs (chart open, then order-select, then order-sign).

Patients: the 300-lab on-T-DM1 chart of bench/patients.py (the performance target: <= 10 ms and
<= 10x its orjson decode), a 47-resource sample, and the Synthea bundles when present. Stages:
(a) decode + read, (b) facts, including settling validation (validation and screen shown on their
own), (c) durable_rules (every ruleset), (d) findings. Also: the 300-lab chart with
``validate="all"``, throughput over synthetic cohort patients, RSS, and durable_rules against
plain Python for the same three decisions. Numbers, not assertions: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from bench.patients import lab_history_patient
from cds import Evaluator, config, load_library, parse_as_of, raw_patient_from_bytes
from cds.cohort.synth import make_patient
from cds.engine.durable import DurableRunner
from cds.engine.runtime import getter, project
from cds.evaluate import ValidateMode
from cds.facts.build import build_facts
from cds.facts.model import PatientFacts
from cds.fhir import settle
from cds.fhir.parse import forget_everything
from cds.fhir.source import raw_patient_from_resources
from cds.findings.build import build_findings

ROOT = Path(__file__).resolve().parent.parent
# externally written bundles: vendored under tests/data/external, larger ones in $CDS_EXTERNAL_DATA
# (tests/data/SOURCES.md says where to download them)
EXTERNAL_ROOTS = [ROOT / "tests" / "data" / "external"] + (
    [Path(os.environ["CDS_EXTERNAL_DATA"])] if os.environ.get("CDS_EXTERNAL_DATA") else []
)
AS_OF = parse_as_of("2026-11-01")
STAGES = ("read", "facts", "settle", "rules", "findings", "total")


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


class SettleClock:
    """CPU time spent settling validation (validate + screen) inside build_facts."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._plain = settle.Settlement.settle

    def __enter__(self) -> SettleClock:
        clock = self

        def timed(this: settle.Settlement, *args: Any) -> bool:
            started = time.process_time()
            try:
                return clock._plain(this, *args)
            finally:
                clock.spent += time.process_time() - started

        settle.Settlement.settle = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        settle.Settlement.settle = self._plain  # type: ignore[method-assign]


def stages(
    evaluator: Evaluator,
    bundles: Callable[[int], bytes],
    reps: int,
    forget: bool,
    new_facts: bool = False,
) -> dict[str, list[float]]:
    """Per-stage CPU ms over ``reps`` evaluations of ``bundles(i)``. ``forget`` forgets every
    memory; ``new_facts`` only the rules that fired for earlier facts, so each patient's facts are
    asserted in durable_rules (the 300-lab variants have alike facts)."""
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    lib = evaluator.library
    with SettleClock() as clock:
        for i in range(reps):
            data = bundles(i)
            if forget:
                forget_everything(lib.valuesets)
            if forget or new_facts:
                evaluator.engine.forget()
            clock.spent = 0.0
            t0 = time.process_time()
            raw = raw_patient_from_bytes(data)
            if evaluator.records is not None:  # as the service: a record kept by content, if any
                record, _lock = evaluator.records.record(raw, None, lambda raw=raw: evaluator.parse(raw))
            else:
                record = evaluator.parse(raw)
            t1 = time.process_time()
            facts = build_facts(record, lib.valuesets, lib.params, AS_OF, evaluator._reads)
            t2 = time.process_time()
            fired = evaluator.engine.fire(facts)
            t3 = time.process_time()
            build_findings(lib, facts, fired)
            t4 = time.process_time()
            for stage, value in zip(
                STAGES, (t1 - t0, t2 - t1, clock.spent, t3 - t2, t4 - t3, t4 - t0), strict=True
            ):
                out[stage].append(value * 1000)
    return out


def decode_floor(data: bytes, reps: int = 200) -> float:
    out = []
    for _ in range(reps):
        started = time.process_time()
        orjson.loads(data)
        out.append(time.process_time() - started)
    return statistics.median(out) * 1000


def show(name: str, situation: str, times: dict[str, list[float]]) -> None:
    med = {s: statistics.median(v) for s, v in times.items()}
    print(
        f"{name:34} {situation:12} "
        + " ".join(f"{med[s]:8.2f}" for s in STAGES)
        + f" {pct(times['total'], 0.99):8.2f}   rules {med['rules'] / med['total']:5.1%}"
    )


# -- the same three decisions in plain Python, for the engine-overhead ratio ---------------------------
def plain_python(f: PatientFacts) -> list[str]:
    fired = []
    p = f.labs.platelets.value
    on_tdm1 = f.therapy.on.get("tdm1", False)
    if f.setting == "metastatic" and on_tdm1 and p is not None and 25 <= p < 50:
        fired.append("alert.tdm1.platelets-grade3")
    if (
        f.her2.category == "positive"
        and f.setting == "metastatic"
        and f.lines.known
        and f.lines.effective == 1
        and f.lines.last_her2_directed
        and f.progression in ("yes", "unknown")
        and not f.exposure.agent("tdxd").ever
        and not f.conditions.ild_history
    ):
        fired.append("rec.mbc2.tdxd")
    labs = (f.labs.platelets, f.labs.ast, f.labs.alt, f.labs.bilirubin)
    if on_tdm1 and any(lab.age_days is None or lab.age_days > 3 for lab in labs):
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
    started = time.process_time()
    for _ in range(reps):
        for f in facts_list:
            runner.fire("bench-three@1.0.0", project(tuple(paths), getter(f)))
    t_engine = time.process_time() - started
    started = time.process_time()
    for _ in range(reps):
        for f in facts_list:
            plain_python(f)
    t_python = time.process_time() - started
    n = reps * len(facts_list)
    return t_engine / n * 1e6, t_python / n * 1e6, t_engine / t_python


def per_resource(lab: bytes) -> None:
    """CPU per resource of the chart's Observations and administrations: plain model_validate,
    the composed validation and the screen, with nothing remembered and for a new patient."""
    from cds.fhir.screen import proven_valid
    from cds.fhir.validate import plain_validation_error, validation_error

    def resources(data: bytes) -> list[dict[str, Any]]:
        entries = orjson.loads(data)["entry"]
        kinds = ("Observation", "MedicationAdministration")
        return [e["resource"] for e in entries if e["resource"]["resourceType"] in kinds]

    def us(fn: Callable[[dict[str, Any]], object], items: list[dict[str, Any]]) -> float:
        started = time.process_time()
        for item in items:
            fn(item)
        return (time.process_time() - started) / len(items) * 1e6

    charts = [resources(lab_history_patient(300, v)) for v in range(100, 120)]
    figures: dict[str, list[float]] = {}
    for number, items in enumerate(charts):
        figures.setdefault("plain model_validate", []).append(us(plain_validation_error, items))
        for name, fn in (("composed validation", validation_error), ("screen", proven_valid)):
            forget_everything()
            figures.setdefault(f"{name}, nothing remembered", []).append(us(fn, items))
            following = charts[(number + 1) % len(charts)]  # another patient, memories warm
            figures.setdefault(f"{name}, a new patient", []).append(us(fn, following))
    print(
        f"\nper resource of the chart's {len(charts[0])} Observations and administrations (CPU us, medians):"
    )
    for name, values in figures.items():
        print(f"  {name:40} {statistics.median(values):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=5_000, help="evaluations for throughput and RSS")
    parser.add_argument("--reps", type=int, default=60, help="repetitions per patient and situation")
    args = parser.parse_args()

    library = load_library(ROOT / "rules")
    config.tune_gc()  # as `cds evaluate` over many files, cohort workers and `cds serve` workers do
    modes: dict[ValidateMode, Evaluator] = {m: Evaluator(library, validate=m) for m in ("selected", "all")}
    evaluator = modes["selected"]
    service = Evaluator(library, remember_verdicts=True)
    load = os.getloadavg()
    print(
        f"python bench/evaluate.py --patients {args.patients} --reps {args.reps}   ({os.cpu_count()} cores, "
        f"load average {load[0]:.2f} {load[1]:.2f}); CPU ms, medians\n"
    )
    lab = lab_history_patient()
    floor = decode_floor(lab)
    print(f"300-lab T-DM1 chart: {len(orjson.loads(lab)['entry'])} resources, {len(lab) / 1024:.0f} KiB")
    print(f"orjson decode floor: {floor:.3f} ms\n")

    header = f"{'patient':34} {'situation':12} " + " ".join(f"{s:>8}" for s in STAGES) + f" {'p99':>8}"
    print(header)
    variants = [lab_history_patient(300, v) for v in range(1, args.reps + 1)]
    results: dict[str, dict[str, list[float]]] = {}
    stages(evaluator, lambda i: variants[i % 5], 5, True)  # warm up imports and models
    results["cold"] = stages(evaluator, lambda i: lab, args.reps, True)
    results["new patient"] = stages(evaluator, lambda i: variants[i], args.reps, False, new_facts=True)
    stages(service, lambda i: lab, 3, False)
    results["repeat"] = stages(service, lambda i: lab, args.reps, False)
    for situation, times in results.items():
        show("300-lab T-DM1 (selected)", situation, times)
    results["all, cold"] = stages(modes["all"], lambda i: lab, max(10, args.reps // 3), True)
    show("300-lab T-DM1 (validate=all)", "cold", results["all, cold"])
    for situation in ("cold", "new patient"):
        total = statistics.median(results[situation]["total"])
        print(f"  -> {situation}: {total:.2f} ms = {total / floor:.1f}x the decode floor")

    per_resource(lab)

    others = {
        "small (mbc-second-line, 47 res.)": (ROOT / "fhir_samples" / "mbc-second-line.json").read_bytes(),
        "Synthea T0 (330 res., 1.1 MB)": external("mcode-pathways/T0_patient.json"),
        "Synthea Kathy_Walker (424 res.)": external(
            "smart-generated-r4-synthea/Kathy_Walker_59885d16-d333-481e-8edb-422fa047d6b6.json"
        ),
    }
    for name, data in others.items():
        if data is None:
            continue
        show(name, "cold", stages(evaluator, lambda i, d=data: d, args.reps, True))  # type: ignore[misc]
        stages(service, lambda i, d=data: d, 3, False)  # type: ignore[misc]
        show(name, "repeat", stages(service, lambda i, d=data: d, args.reps, False))  # type: ignore[misc]

    cohort = [
        orjson.dumps(make_patient(7, i, date(2026, 11, 1), library.catalogue)[1])
        for i in range(args.patients)
    ]
    for data in cohort[:50]:
        evaluator.evaluate(raw_patient_from_bytes(data), as_of=AS_OF)
    reps = min(len(cohort), 20 * args.reps)
    show(
        "synthetic cohort patient (~45 res.)",
        "new patient",
        stages(evaluator, lambda i: cohort[i], reps, False),
    )
    gc.collect()
    before = rss_mb()
    started = time.process_time()
    for data in cohort:
        evaluator.evaluate(raw_patient_from_resources(orjson.loads(data), "synth"), as_of=AS_OF)
    elapsed = time.process_time() - started
    gc.collect()
    after = rss_mb()
    print(
        f"\nthroughput: {args.patients} synthetic patients (cds cohort synth --seed 7, ~45 resources) in "
        f"{elapsed:.1f} CPU s = {args.patients / elapsed:,.0f} patients per CPU-second "
        f"({elapsed / args.patients * 1000:.2f} ms each; decode + read + facts + rules + findings)"
    )
    print(f"RSS: {before:.1f} MiB before, {after:.1f} MiB after (growth {after - before:+.1f} MiB)")

    facts_list = [
        evaluator.evaluate(raw_patient_from_path_bytes, as_of=AS_OF).facts
        for raw_patient_from_path_bytes in (
            raw_patient_from_bytes(p.read_bytes()) for p in sorted((ROOT / "fhir_samples").glob("*.json"))
        )
    ]
    engine_us, python_us, ratio = engine_ratio(evaluator, facts_list, 30)
    print(
        "\nthree rules (platelets grade 3, rec.mbc2.tdxd, gap.labs-missing): "
        f"durable_rules {engine_us:.1f} us vs plain Python {python_us:.1f} us per patient -> "
        f"engine/Python = {ratio:.0f}x (same decisions, checked on all {len(facts_list)} samples)"
    )


if __name__ == "__main__":
    main()

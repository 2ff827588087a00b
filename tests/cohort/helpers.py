"""Helpers for the cohort tests: turn sample bundles into a Bulk export, run, read outputs."""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from cds import Evaluator, parse_as_of, raw_patient_from_path
from cds.cohort.outputs import read_table
from cds.cohort.runner import RunOptions, Summary, run_cohort

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "fhir_samples"
RULES = ROOT / "rules"
AS_OF = parse_as_of("2026-11-01")


def bundles_to_bulk(bundles: list[Path], out: Path, seed: int = 3) -> dict[str, int]:
    """Write the bundles' resources as a Bulk export: per type, lines shuffled across two files
    (the second gzipped), so grouping cannot rely on file order. Returns resources per type."""
    by_type: dict[str, list[bytes]] = {}
    for path in bundles:
        doc = orjson.loads(path.read_bytes())
        for entry in doc["entry"]:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                continue  # a malformed entry has no type file in a Bulk export
            by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for rtype, lines in by_type.items():
        rng.shuffle(lines)
        half = len(lines) // 2
        (out / f"{rtype}.000.ndjson").write_bytes(b"".join(x + b"\n" for x in lines[:half]))
        with gzip.open(out / f"{rtype}.001.ndjson.gz", "wb") as handle:
            handle.write(b"".join(x + b"\n" for x in lines[half:]))
    return {k: len(v) for k, v in by_type.items()}


def run(source: Path, out: Path, **kwargs: Any) -> Summary:
    """Run a cohort with the bundled rules as of 2026-11-01 (no report unless asked)."""
    options: dict[str, Any] = {"processes": 1, "report": False, **kwargs}
    return run_cohort(RunOptions(input=source, out=out, as_of=AS_OF, rules_dir=RULES, **options))


def direct_digests(evaluator: Evaluator, bundles: list[Path]) -> dict[str, str]:
    """Patient id -> sha256 of ``Evaluation.to_json()`` from per-patient evaluation of each bundle."""
    digests = {}
    for path in bundles:
        result = evaluator.evaluate(raw_patient_from_path(path), as_of=AS_OF)
        digests[result.evaluation.patient.removeprefix("Patient/")] = hashlib.sha256(
            result.evaluation.to_json()
        ).hexdigest()
    return digests


def table(out: Path, name: str) -> pa.Table:
    """An output table sorted deterministically (patient, then code for findings)."""
    t = read_table(out, name)
    keys = [("patient", "ascending")] + (
        [("code", "ascending"), ("rule_id", "ascending")] if name == "findings" else []
    )
    return t.sort_by(keys)


def errors(out: Path) -> list[dict[str, Any]]:
    """The records of errors.jsonl."""
    return [orjson.loads(line) for line in (out / "errors.jsonl").read_bytes().splitlines()]

"""Cohort outputs: the row schemas, per-partition files, and the final merged tables.

Each partition writes ``parts/part-NNNNN.{findings,patients}.parquet`` and ``.errors.jsonl``, then a
``.done.json`` marker last; ``--resume`` trusts only partitions with a marker. The final tables are
a streaming concatenation of the parts (one part in memory at a time) in partition order, so the
output is the same whatever order the partitions finished in.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from cds.errors import CdsError, InputFileError, outcome_of

OutputFormat = Literal["parquet", "csv"]
ERROR_FIELDS = ("stage", "kind", "file", "line", "patient", "resource", "reason")


def error_record(
    exc: CdsError, stage: str, *, patient: str | None = None, resource: str | None = None
) -> dict[str, Any]:
    """The ``errors.jsonl`` record of an error of the tree: its kind is the error's cohort kind
    (``cds.errors.OUTCOMES``), its file the error's origin, its line where it happened."""
    return {
        "stage": stage,
        "kind": outcome_of(exc).cohort_kind,
        "file": exc.origin,
        "line": exc.line if isinstance(exc, InputFileError) else None,
        "patient": patient,
        "resource": resource,
        "reason": exc.reason,
    }


FINDINGS_SCHEMA = pa.schema(
    [
        ("patient", pa.string()),
        ("code", pa.string()),
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("strength", pa.string()),
        ("regimen", pa.string()),
        ("action", pa.string()),
        ("review_required", pa.bool_()),
        ("rule_id", pa.string()),
        ("rule_version", pa.string()),
        ("ruleset", pa.string()),
        ("evidence_status", pa.string()),
        ("summary", pa.string()),
        ("title", pa.string()),  # the rule's title: the same for every patient with this finding
        ("drug", pa.string()),  # alerts: the drug (or class) the rule applies to, by its display name
        ("action_text", pa.string()),  # the worklist line: action, values and their dates in words
        ("value_date", pa.string()),  # the latest date of the values the finding rests on
        ("key_facts", pa.string()),
        ("resources", pa.string()),
    ]
)

PATIENTS_SCHEMA = pa.schema(
    [
        ("patient", pa.string()),
        ("identifier", pa.string()),  # Patient.identifier value: the MRN-typed one first
        ("origin", pa.string()),
        ("gender", pa.string()),
        ("age_years", pa.int32()),
        ("her2_category", pa.string()),
        ("her2_ihc_score", pa.string()),
        ("hr_status", pa.string()),
        ("setting", pa.string()),
        ("metastatic_since", pa.string()),
        ("line", pa.int32()),
        ("progression", pa.string()),
        ("current_regimen", pa.string()),
        ("on_drug", pa.string()),
        ("on_agents", pa.string()),  # catalogue agent ids, space-separated (any agent, no fixed list)
        ("dose_levels", pa.string()),  # "<agent>=<level>" of the last dose given, space-separated
        ("on_her2_directed", pa.bool_()),
        ("platelets", pa.float64()),
        ("platelets_date", pa.string()),
        ("anc", pa.float64()),
        ("ast_x_uln", pa.float64()),
        ("alt_x_uln", pa.float64()),
        ("bilirubin_x_uln", pa.float64()),
        ("labs_date", pa.string()),
        ("lvef", pa.float64()),
        ("lvef_date", pa.string()),
        ("lvef_baseline", pa.float64()),
        ("lvef_drop", pa.float64()),
        ("lvef_series", pa.string()),  # every LVEF reading up to as-of: JSON [["YYYY-MM-DD", %], ...]
        ("weight_kg", pa.float64()),
        ("findings", pa.int32()),
        ("critical", pa.int32()),
        ("warning", pa.int32()),
        ("worst_severity", pa.string()),
        ("needs_action", pa.bool_()),
        ("action_codes", pa.string()),
        ("recommendation_codes", pa.string()),
        ("codes", pa.string()),
        ("skipped_resources", pa.int32()),
        ("evaluation_sha256", pa.string()),
    ]
)


def part_stem(out: Path, index: int) -> Path:
    """``out/parts/part-00012`` (suffixes added per file)."""
    return out / "parts" / f"part-{index:05d}"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_part(
    out: Path,
    index: int,
    findings: pa.Table,
    patients: pa.Table,
    errors: list[dict[str, Any]],
    counts: dict[str, int],
    fhir: dict[str, list[bytes]] | None = None,
) -> None:
    """Write one partition's results; the ``.done.json`` marker goes last so a crash leaves no marker."""
    stem = part_stem(out, index)
    stem.parent.mkdir(parents=True, exist_ok=True)
    for table, name in ((findings, "findings"), (patients, "patients")):
        tmp = stem.with_name(f"{stem.name}.{name}.parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, stem.with_name(f"{stem.name}.{name}.parquet"))
    _atomic_write(
        stem.with_name(stem.name + ".errors.jsonl"), b"".join(orjson.dumps(e) + b"\n" for e in errors)
    )
    for rtype, lines in sorted((fhir or {}).items()):
        _atomic_write(stem.with_name(f"{stem.name}.{rtype}.ndjson"), b"".join(line + b"\n" for line in lines))
    _atomic_write(stem.with_name(stem.name + ".done.json"), orjson.dumps(counts))


def part_done(out: Path, index: int) -> dict[str, int] | None:
    """The counts of a finished partition, or None when it has not finished."""
    marker = part_stem(out, index).with_name(f"part-{index:05d}.done.json")
    if not marker.exists():
        return None
    counts: dict[str, int] = orjson.loads(marker.read_bytes())
    return counts


def merge_tables(out: Path, indexes: Iterable[int], name: str, schema: pa.Schema, fmt: OutputFormat) -> int:
    """Concatenate the parts of ``name`` into ``out/<name>.<fmt>``; returns the row count."""
    target = out / f"{name}.{fmt}"
    tmp = target.with_name(target.name + ".tmp")
    rows = 0
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, schema) as writer:
            for index in indexes:
                table = pq.read_table(part_stem(out, index).with_name(f"part-{index:05d}.{name}.parquet"))
                rows += table.num_rows
                writer.write_table(table.cast(schema))
    else:
        with pacsv.CSVWriter(tmp, schema) as csv_writer:
            for index in indexes:
                table = pq.read_table(part_stem(out, index).with_name(f"part-{index:05d}.{name}.parquet"))
                rows += table.num_rows
                csv_writer.write_table(table.cast(schema))
    os.replace(tmp, target)
    return rows


def merge_errors(out: Path, ingest_errors: Path | None, indexes: Iterable[int]) -> Counter[str]:
    """``errors.jsonl``: the ingest errors, then each partition's, in partition order; returns the
    records per kind."""
    target = out / "errors.jsonl"
    tmp = target.with_name(target.name + ".tmp")
    kinds: Counter[str] = Counter()
    with tmp.open("wb") as sink:
        sources = [ingest_errors] if ingest_errors is not None and ingest_errors.exists() else []
        sources += [part_stem(out, i).with_name(f"part-{i:05d}.errors.jsonl") for i in indexes]
        for source in sources:
            with source.open("rb") as handle:
                for line in handle:
                    sink.write(line)
                    kinds[str(orjson.loads(line).get("kind"))] += 1
    os.replace(tmp, target)
    return kinds


def merge_fhir(out: Path, indexes: Iterable[int], types: Iterable[str]) -> dict[str, int]:
    """``out/fhir/<Type>.ndjson`` (Bulk Data layout: one resource per line) in partition order;
    returns the resources per type."""
    target = out / "fhir"
    target.mkdir(exist_ok=True)
    order = list(indexes)
    counts: dict[str, int] = {}
    for rtype in types:
        final = target / f"{rtype}.ndjson"
        tmp = final.with_name(final.name + ".tmp")
        counts[rtype] = 0
        with tmp.open("wb") as sink:
            for index in order:
                part = part_stem(out, index).with_name(f"part-{index:05d}.{rtype}.ndjson")
                if part.exists():
                    data = part.read_bytes()
                    counts[rtype] += data.count(b"\n")
                    sink.write(data)
        os.replace(tmp, final)
    return counts


def read_table(out: Path, name: str) -> pa.Table:
    """Read a merged output table back, whichever format it was written in."""
    parquet = out / f"{name}.parquet"
    if parquet.exists():
        return pq.read_table(parquet)
    schema = FINDINGS_SCHEMA if name == "findings" else PATIENTS_SCHEMA
    options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True)
    return pacsv.read_csv(out / f"{name}.csv", convert_options=options)

"""Streaming group-by of Bulk NDJSON lines on the patient reference, spilled to a SQLite file.

A Bulk export is written per resource type, so one patient's resources are spread over every
file. Each line is decoded once to find its patient, then stored as raw bytes in an on-disk
SQLite table ``lines(pid, seq, data)``; an index on ``(pid, seq)`` then yields each patient's
lines together, in file order. Memory stays bounded by the insert batch, whatever the export
size: the group-by lives on disk (SQLite sorts larger-than-memory indexes with its own spill).

Partitions are contiguous ranges of sorted patient ids, so a partition is one indexed range scan
and the same export always yields the same partitions (which ``--resume`` relies on).
"""

from __future__ import annotations

import gzip
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from cds.cohort.outputs import error_record
from cds.cohort.sources import (
    NON_PATIENT_TYPES,
    CohortInput,
    damaged,
    lines_until_break,
    medication_refs,
    patient_key,
)
from cds.errors import DamagedFile, ExportReported
from cds.fhir.source import is_r4_resource_type

ErrorSink = Callable[[dict[str, Any]], None]
ProgressSink = Callable[[int], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (pid TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meds (ref TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
BATCH = 20_000


@dataclass
class IngestStats:
    """What the ingest pass saw (every line is counted in exactly one bucket)."""

    lines: int = 0
    grouped: int = 0  # stored under a patient (including flagged lines of non-R4 types)
    medications: int = 0  # shared Medication resources, resolved per patient
    unlinked: int = 0  # resources outside the Patient compartment (Practitioner, Organization...)
    dropped: int = 0  # lines that could not be used at all: each has an errors.jsonl record
    flagged: int = 0  # grouped lines of a non-R4 type: their patient is rejected
    files_not_read: int = 0  # files that are not resource files (the export log, a manifest)
    damaged_files: int = 0  # files that broke off (truncated or not gzip): lines after the break unread
    export_errors: int = 0  # lines of the export's own error files (OperationOutcome), each reported

    def reconciles(self) -> bool:
        """Every non-blank line is in exactly one bucket."""
        return self.lines == self.grouped + self.medications + self.unlinked + self.dropped


@dataclass(frozen=True)
class Partition:
    """A contiguous range of sorted patient ids (both ends inclusive)."""

    index: int
    first: str
    last: str
    patients: int


def fingerprint(inp: CohortInput) -> str:
    """Identity of the input files (path, size, mtime): a spill or a resume is reused only on a match."""
    parts = [f"{f.path}:{f.path.stat().st_size}:{f.path.stat().st_mtime_ns}" for f in inp.files]
    return orjson.dumps(parts).decode()


def connect(path: Path) -> sqlite3.Connection:
    """A connection tuned for a scratch file: no journal, no fsync (a crash just redoes the ingest)."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA temp_store=FILE")
    con.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache, the bulk of the ingest's memory
    return con


def is_complete(path: Path, print_: str) -> bool:
    """Whether ``path`` holds a finished ingest of the input with fingerprint ``print_``."""
    if not path.exists():
        return False
    try:
        con = sqlite3.connect(path)
        try:
            row = con.execute("SELECT value FROM meta WHERE key='complete'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == print_


class _Counting:
    """Wraps a raw file to report bytes read (the compressed position, for gzip files)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def position(self) -> int:
        return self.raw.tell()


def _open(path: Path) -> tuple[BinaryIO, _Counting]:
    raw = path.open("rb")
    handle: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if path.name.endswith(".gz") else raw  # type: ignore[assignment]
    return handle, _Counting(raw)


def ingest_ndjson(
    inp: CohortInput, db_path: Path, on_error: ErrorSink, on_progress: ProgressSink | None = None
) -> IngestStats:
    """Read every NDJSON line once, store it under its patient id; report every unusable line."""
    if db_path.exists():
        db_path.unlink()
    con = connect(db_path)
    con.executescript(SCHEMA)
    stats = IngestStats()
    for name in inp.not_resource_files:
        stats.files_not_read += 1
        on_error(
            {
                "stage": "ingest",
                "kind": "not-a-resource-file",
                "file": str(name),
                "line": None,
                "patient": None,
                "resource": None,
                "reason": "file name does not start with an R4 resource type (e.g. the export log): not read",
            }
        )
    for problem in inp.problems:
        on_error(error_record(problem, "ingest"))
    for path in inp.unlisted:
        stats.files_not_read += 1
        on_error(
            {
                "stage": "ingest",
                "kind": "not-in-manifest",
                "file": str(path),
                "line": None,
                "patient": None,
                "resource": None,
                "reason": "not listed in manifest.json: not read",
            }
        )

    def broke_off(problem: DamagedFile) -> None:
        stats.damaged_files += 1
        on_error(error_record(problem, "ingest"))

    for path in inp.error_files:
        stats.export_errors += _report_export_errors(path, on_error, broke_off)
    batch: list[tuple[str, int, bytes]] = []
    meds: list[tuple[str, bytes]] = []
    seq = 0
    done_bytes = 0

    def error(
        kind: str, file: str, line: int, reason: str, patient: str | None = None, resource: str | None = None
    ) -> None:
        stats.dropped += 1
        on_error(
            {
                "stage": "ingest",
                "kind": kind,
                "file": file,
                "line": line,
                "patient": patient,
                "resource": resource,
                "reason": reason,
            }
        )

    con.execute("BEGIN")
    for item in inp.files:
        fname = str(item.path)
        unlinked: Counter[str] = Counter()
        try:
            handle, counter = _open(item.path)
        except OSError as exc:
            broke_off(damaged(fname, 1, 0, exc))
            continue
        with handle:
            for number, raw_line in lines_until_break(handle, broke_off, fname):
                line = raw_line.strip()
                if not line:
                    continue
                stats.lines += 1
                seq += 1
                if on_progress is not None and stats.lines % 10_000 == 0:
                    on_progress(done_bytes + counter.position())
                try:
                    resource = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    error("bad-json", fname, number, f"not JSON: {exc}")
                    continue
                if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                    error("not-a-resource", fname, number, "a JSON line without resourceType: not FHIR")
                    continue
                rtype: str = resource["resourceType"]
                rid = resource.get("id")
                ref = f"{rtype}/{rid}" if isinstance(rid, str) else f"{rtype}/<no id>"
                pid = patient_key(resource)
                if not is_r4_resource_type(rtype):
                    if pid is None:
                        error(
                            "unknown-type",
                            fname,
                            number,
                            f"resource type {rtype!r} does not exist in "
                            "FHIR R4 and names no patient: not used",
                            resource=ref,
                        )
                        continue
                    # Kept in the patient's group: the one-patient contract then rejects that patient
                    # (clinical-spec §1), exactly as `cds evaluate` would on a bundle holding it.
                    stats.flagged += 1
                    on_error(
                        {
                            "stage": "ingest",
                            "kind": "unknown-type",
                            "file": fname,
                            "line": number,
                            "patient": f"Patient/{pid}",
                            "resource": ref,
                            "reason": f"resource type {rtype!r} does not exist in FHIR R4: "
                            "its patient is rejected",
                        }
                    )
                elif rtype in NON_PATIENT_TYPES and pid is None:
                    if rtype == "Medication" and isinstance(rid, str):
                        meds.append((ref, line))
                        stats.medications += 1
                    else:
                        unlinked[rtype] += 1
                        stats.unlinked += 1
                    continue
                if pid is None:
                    what = "Patient without an id" if rtype == "Patient" else "no subject/patient reference"
                    error("no-patient-reference", fname, number, f"{what}: cannot be grouped", resource=ref)
                    continue
                batch.append((pid, seq, line))
                stats.grouped += 1
                if len(batch) >= BATCH:
                    con.executemany("INSERT INTO lines VALUES (?,?,?)", batch)
                    batch.clear()
                if len(meds) >= BATCH:
                    con.executemany("INSERT OR REPLACE INTO meds VALUES (?,?)", meds)
                    meds.clear()
        done_bytes += item.path.stat().st_size
        if on_progress is not None:
            on_progress(done_bytes)
        for rtype, count in sorted(unlinked.items()):
            on_error(
                {
                    "stage": "ingest",
                    "kind": "not-patient-data",
                    "file": fname,
                    "line": None,
                    "patient": None,
                    "resource": rtype,
                    "reason": f"{count} {rtype} resource(s) outside the Patient compartment: not used",
                }
            )
    con.executemany("INSERT INTO lines VALUES (?,?,?)", batch)
    con.executemany("INSERT OR REPLACE INTO meds VALUES (?,?)", meds)
    con.execute("COMMIT")
    con.execute("CREATE INDEX IF NOT EXISTS lines_pid ON lines(pid, seq)")
    con.execute(
        "INSERT OR REPLACE INTO meta VALUES ('stats', ?)",
        (orjson.dumps(stats.__dict__).decode(),),
    )
    con.execute("INSERT OR REPLACE INTO meta VALUES ('complete', ?)", (fingerprint(inp),))
    con.close()
    return stats


def _report_export_errors(path: Path, on_error: ErrorSink, on_break: Callable[[DamagedFile], None]) -> int:
    """The export's own error file (OperationOutcome NDJSON): one record per line; returns how many."""
    fname = str(path)
    count = 0
    try:
        handle, _ = _open(path)
    except OSError as exc:
        on_break(damaged(fname, 1, 0, exc))
        return 0
    with handle:
        for number, raw_line in lines_until_break(handle, on_break, fname):
            if not raw_line.strip():
                continue
            try:
                outcome = orjson.loads(raw_line)
            except orjson.JSONDecodeError:
                outcome = None
            issues = outcome.get("issue") if isinstance(outcome, dict) else None
            texts = [
                str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code") or "")
                for i in (issues if isinstance(issues, list) else [])
                if isinstance(i, dict)
            ]
            said = "; ".join(t for t in texts if t) or "an error without text"
            count += 1
            reported = ExportReported(f"the server reported: {said}", origin=fname, line=number)
            on_error(error_record(reported, "ingest"))
    return count


def stored_stats(db_path: Path) -> IngestStats:
    """The ingest statistics recorded in a finished spill file (used on --resume)."""
    con = sqlite3.connect(db_path)
    try:
        row = con.execute("SELECT value FROM meta WHERE key='stats'").fetchone()
    finally:
        con.close()
    return IngestStats(**orjson.loads(row[0]))


def plan_partitions(db_path: Path, size: int) -> list[Partition]:
    """Cut the sorted distinct patient ids into ranges of ``size`` patients (streamed, not held)."""
    con = connect(db_path)
    parts: list[Partition] = []
    first: str | None = None
    previous = ""
    count = 0
    for (pid,) in con.execute("SELECT DISTINCT pid FROM lines ORDER BY pid"):
        if first is None:
            first = pid
        count += 1
        previous = pid
        if count == size:
            parts.append(Partition(len(parts), first, previous, count))
            first, count = None, 0
    if first is not None:
        parts.append(Partition(len(parts), first, previous, count))
    con.close()
    return parts


def read_partition(db_path: Path, part: Partition) -> Iterator[tuple[str, list[bytes]]]:
    """(patient id, its raw lines + the Medication resources they reference) for one partition."""
    con = connect(db_path)
    con.execute("PRAGMA query_only=ON")
    try:
        current: str | None = None
        lines: list[bytes] = []
        rows = con.execute(
            "SELECT pid, data FROM lines WHERE pid BETWEEN ? AND ? ORDER BY pid, seq", (part.first, part.last)
        )
        for pid, data in rows:
            if pid != current:
                if current is not None:
                    yield current, _with_medications(con, lines)
                current, lines = pid, []
            lines.append(bytes(data))
        if current is not None:
            yield current, _with_medications(con, lines)
    finally:
        con.close()


def _with_medications(con: sqlite3.Connection, lines: list[bytes]) -> list[bytes]:
    """Append the shared Medication resources a patient's lines reference (cheap byte test first)."""
    refs: set[str] = set()
    for line in lines:
        if b'"medicationReference"' in line:
            refs.update(medication_refs(orjson.loads(line)))
    if not refs:
        return lines
    marks = ",".join("?" for _ in refs)
    found = con.execute(f"SELECT data FROM meds WHERE ref IN ({marks}) ORDER BY ref", sorted(refs)).fetchall()
    return lines + [bytes(row[0]) for row in found]


def spill_size(db_path: Path) -> int:
    """Bytes on disk of the spill file."""
    return os.path.getsize(db_path) if db_path.exists() else 0

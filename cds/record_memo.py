"""Parsed patient records by content, for a service that is sent the same patient again.

An EHR calls the CDS Hooks service again and again for the chart that is open (patient-view,
then order-select, then order-sign), each time with the same prefetched resources. Parsing and
settling them is a pure function of their content (and the draft order): the settled record is
the same whatever instant it was first evaluated at, because settling judges every resource of
interest (cds/fhir/settle.py). So the service keeps the last few records by that content and
derives facts, rules and findings from the kept record: the part that depends on the instant.

A kept record is still settled further when another instant selects a resource only screened so
far, so each entry carries a lock: one evaluation of a record at a time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import orjson

from cds.fhir.records import PatientRecord
from cds.fhir.source import JSON, RawPatient

RECORDS_MAX = 32
# The kept records hold their decoded resources (about ten times the JSON text in memory), so the
# memo is bounded by the total text too: a 300-result chart is ~250 KiB, a request may be 5 MiB.
CONTENT_BYTES_MAX = 8 * 1024 * 1024


def content_key(raw: RawPatient, order: JSON | None) -> bytes | None:
    """Everything parsing reads (not the origin label) as JSON text; None if not JSON-encodable.

    The text itself is the key, not a digest of it: the dictionary hashes it faster than a
    cryptographic digest would, and a hit compares the whole text, so no two contents can share
    a record. (A few dozen keys of a few hundred KiB each.)"""
    try:
        parts = [raw.patient, raw.resources, raw.unreadable, raw.medications, raw.patient_urls]
        return orjson.dumps([*parts, raw.full_urls, order])
    except (TypeError, orjson.JSONEncodeError):
        return None


_NO_ORDER = b",null]"


def with_order(plain: bytes, order: JSON | None) -> bytes | None:
    """``content_key(raw, order)`` from ``plain = content_key(raw, None)``, without serialising the
    record again: orjson writes a list as ``[`` + its items joined by ``,`` + ``]`` (no whitespace),
    so the two texts differ only in the last item, ``null`` in ``plain``."""
    if order is None:
        return plain
    try:
        return plain[: -len(_NO_ORDER)] + b"," + orjson.dumps(order) + b"]"
    except (TypeError, orjson.JSONEncodeError):
        return None


class RecordMemo:
    """The most recently used parsed records (at most ``size``, their contents at most
    ``content_bytes`` of JSON text in all), each with its evaluation lock."""

    def __init__(self, size: int = RECORDS_MAX, content_bytes: int = CONTENT_BYTES_MAX) -> None:
        self.size, self.content_bytes = size, content_bytes
        self._entries: OrderedDict[bytes, tuple[PatientRecord, threading.Lock]] = OrderedDict()
        self._bytes = 0  # total length of the kept keys
        self._lock = threading.Lock()

    def record(
        self,
        raw: RawPatient,
        order: JSON | None,
        parse: Callable[[], PatientRecord],
        key: bytes | None = None,
    ) -> tuple[PatientRecord, threading.Lock]:
        """The kept record for this content, or a newly parsed one (kept when the content has a key).

        ``key``: ``content_key(raw, order)`` when the caller has it already (the CDS Hooks service
        keeps it with the prefetch it came from, cds/api/prefetched.py); None: computed here."""
        key = content_key(raw, order) if key is None else key
        if key is None or len(key) > self.content_bytes:
            return parse(), threading.Lock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = (parse(), threading.Lock())  # parse outside the lock; a parse error keeps nothing
        with self._lock:
            kept = self._entries.get(key)
            if kept is None:
                kept = self._entries[key] = entry
                self._bytes += len(key)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size or self._bytes > self.content_bytes:
                old, _ = self._entries.popitem(last=False)
                self._bytes -= len(old)
        return kept

    def clear(self) -> None:
        """Forget every kept record (benchmarks, tests)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

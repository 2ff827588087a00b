"""A patient's data by prefetch text, for an EHR that sends the same prefetch again.

An EHR calls the service again and again for the chart that is open, each time with the same
prefetch. When a call's data came from its prefetch alone (``FhirFetcher.gather_noting_source``:
no key fetched, no page followed, no Medication read and none left to read), the gathered
resources, the raw patient built from them and its content key (cds/record_memo.py) are a function
of the prefetch's value, given the worker's fixed templates. The value is named exactly by its
text as orjson writes it again after decoding: equal texts decode to equal values (same keys in
the same order, same types, same numbers), different values never write the same text. So the
service keeps those three by that text, and a later call whose prefetch writes the same text
reuses them instead of gathering, checking and serialising the record again.

What depends on the call is still done for every call: the Patient must be context.patientId, the
raw patient takes the call's origin label. Nothing is kept from a call that fetched or failed, and
the kept resources are never changed by evaluation (the record memo already shares them across
calls the same way).

An EHR that writes JSON as orjson does (compact, as JavaScript's ``JSON.stringify``) sends the
kept text itself. ``recognise`` finds it in the request's bytes as the value of the top-level
``prefetch`` and reads only the rest of the request (``strictjson.loads_with_value``): the
prefetch is neither decoded, nor written again, nor freed after the call.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cds.api import strictjson
from cds.fhir.source import RawPatient
from cds.record_memo import CONTENT_BYTES_MAX, RECORDS_MAX

JSON = dict[str, Any]
HEAD = 64  # bytes of a kept text that index it, for finding it in a request
CANDIDATES = 4  # "prefetch" keys in a request tried as the member (a resource may hold the word)
_MEMBER = re.compile(rb'"prefetch"\s*:\s*')


@dataclass(frozen=True)
class Prefetched:
    """What a prefetch came to: the Patient of its patient key, the gathered resources, the raw
    patient (origin of the first call) and ``content_key(raw, None)``; and the decoded prefetch."""

    prefetch: JSON
    patient: JSON
    resources: list[JSON]
    raw: RawPatient
    content: bytes


class PrefetchMemo:
    """The most recently used prefetch texts (at most ``size``, at most ``text_bytes`` of text in
    all) with what they came to; safe to use from several threads."""

    def __init__(self, size: int = RECORDS_MAX, text_bytes: int = CONTENT_BYTES_MAX) -> None:
        self.size, self.text_bytes = size, text_bytes
        self._entries: OrderedDict[bytes, Prefetched] = OrderedDict()
        self._heads: dict[bytes, list[bytes]] = {}  # first HEAD bytes -> kept texts
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, text: bytes) -> Prefetched | None:
        """What this prefetch text came to, if it is kept."""
        with self._lock:
            entry = self._entries.get(text)
            if entry is not None:
                self._entries.move_to_end(text)
            return entry

    def put(self, text: bytes, entry: Prefetched) -> None:
        """Keep ``entry`` for ``text`` (a text above the byte bound is not kept)."""
        if len(text) > self.text_bytes:
            return
        with self._lock:
            if text not in self._entries:
                self._bytes += len(text)
                if len(text) > HEAD:  # a shorter one is read in full: it costs next to nothing
                    self._heads.setdefault(text[:HEAD], []).append(text)
            self._entries[text] = entry
            self._entries.move_to_end(text)
            while len(self._entries) > self.size or self._bytes > self.text_bytes:
                old, _ = self._entries.popitem(last=False)
                self._bytes -= len(old)
                same_head = self._heads.get(old[:HEAD])
                if same_head is not None and old in same_head:
                    same_head.remove(old)
                    if not same_head:
                        del self._heads[old[:HEAD]]

    def recognise(self, body: bytes) -> tuple[bytes, JSON] | None:
        """A kept text that is, byte for byte, the top-level ``prefetch`` of the request ``body``,
        and the request read around it (its ``prefetch`` the kept decoded value); else None.
        Only the part of the body where the shortest kept text still fits is searched: a request
        for a chart not kept is then not scanned to its end."""
        with self._lock:
            shortest = min(map(len, self._entries), default=0)
        if not shortest:
            return None
        for number, found in enumerate(_MEMBER.finditer(body, 0, max(0, len(body) - shortest))):
            if number == CANDIDATES:
                break
            start = found.end()
            with self._lock:
                texts = list(self._heads.get(body[start : start + HEAD], ()))
            for text in texts:
                if not body.startswith(text, start):
                    continue
                entry = self.get(text)
                if entry is None:
                    continue
                request = strictjson.loads_with_value(
                    body, "prefetch", start, start + len(text), entry.prefetch
                )
                if request is not None:
                    return text, request
        return None

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every kept prefetch (benchmarks, tests)."""
        with self._lock:
            self._entries.clear()
            self._heads.clear()
            self._bytes = 0

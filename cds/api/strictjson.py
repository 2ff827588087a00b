"""Request JSON that means one thing: duplicate object keys are refused.

orjson keeps the last of two equal keys, while another reader on the way (a proxy, an audit log,
the EHR itself) may keep the first: ``{"patientId": "A", "patientId": "B"}`` could then be checked
as one patient and evaluated as another. A second pass with the standard library's C scanner and
an ``object_pairs_hook`` that builds nothing (it returns None) finds duplicates at any depth for
about the cost of the orjson parse itself.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class DuplicateKey(orjson.JSONDecodeError):
    """A JSON object holds the same key twice (HTTP 400, like any other invalid JSON)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        raise DuplicateKey("a JSON object holds the same key twice", "", 0)


def loads(data: bytes) -> Any:
    """orjson.loads, plus DuplicateKey (an orjson.JSONDecodeError) when any object repeats a key."""
    value = orjson.loads(data)
    if isinstance(value, dict | list):
        try:
            json.loads(data, object_pairs_hook=_no_duplicates)
        except RecursionError as exc:  # orjson allows deeper nesting than the stdlib scanner
            raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from exc
    return value

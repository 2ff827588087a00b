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

from cds.errors import NotJson


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        raise NotJson("request body is not JSON: an object holds the same key twice")


def loads(data: bytes) -> Any:
    """orjson.loads, plus NotJson (HTTP 400) when any object repeats a key."""
    value = orjson.loads(data)
    if isinstance(value, dict | list):
        try:
            json.loads(data, object_pairs_hook=_no_duplicates)
        except RecursionError as exc:  # orjson allows deeper nesting than the stdlib scanner
            raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from exc
    return value

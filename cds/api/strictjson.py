"""Request JSON that means one thing: duplicate object keys are refused.

orjson keeps the last of two equal keys, while another reader on the way (a proxy, an audit log,
the EHR itself) may keep the first: ``{"patientId": "A", "patientId": "B"}`` could then be checked
as one patient and evaluated as another. Duplicates at any depth are refused.

The check costs a fraction of the parse: every object member is written ``"key":value`` with one
colon outside strings, and a colon inside a string appears literally both in the request and in
orjson's re-serialisation of what it parsed (orjson never escapes one), unless the request escapes
it as ``\u003a``. So when the request holds no such escape, its colon count equals the
re-serialisation's exactly when no member was dropped. Anything else (an escaped colon, nesting
orjson will not re-serialise, unequal counts) runs the exact second pass with the standard
library's scanner, which names the duplicate or finds there is none.
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
    if isinstance(value, dict | list) and not _no_member_dropped(data, value):
        try:
            json.loads(data, object_pairs_hook=_no_duplicates)
        except RecursionError as exc:  # orjson allows deeper nesting than the stdlib scanner
            raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from exc
    return value


def _no_member_dropped(data: bytes, value: Any) -> bool:
    """True only if parsing kept every member (see the module docstring); False means "check"."""
    if b"\\u003a" in data or b"\\u003A" in data:
        return False
    try:
        again = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested more than 254 levels: the exact pass decides
        return False
    return data.count(b":") == again.count(b":")

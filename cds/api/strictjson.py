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

``loads_with`` re-serialises one top-level member on its own (and the object without it), so a
caller that needs that member's text anyway (the CDS Hooks service keys kept prefetches by it,
cds/api/prefetched.py) gets it from the check: orjson writes an object as ``{`` + ``"key":value``
members joined by ``,`` + ``}``, so the colons of the whole are those of the rest, plus the
member's own colon, plus those of its key and of its value: the same count, the same proof.

``loads_with_value`` reads a request whose ``member`` is, byte for byte, a JSON object text the
caller already holds the value of (cds/api/prefetched.py): it parses the request with that span
replaced by a one-off string. If that string is then exactly the top-level ``member``, the span
was that member's whole value: the text before the span is unchanged, so the reader stood at the
same place there, and an object text ends where it closes. Keys repeated outside the span are
found as above; the caller vouches for the span (orjson wrote it, and orjson never writes a key
twice). Anything else answers None, and the caller reads the request in full.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import orjson

from cds.errors import NotJson


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        raise NotJson("request body is not JSON: an object holds the same key twice")


def loads(data: bytes) -> Any:
    """orjson.loads, plus NotJson (HTTP 400) when any object repeats a key."""
    return loads_with(data, None)[0]


def loads_with(data: bytes, member: str | None) -> tuple[Any, bytes | None]:
    """``loads``, and ``orjson.dumps(value[member])`` when the value is an object holding ``member``
    and orjson can write it (None otherwise)."""
    value = orjson.loads(data)
    if not isinstance(value, dict | list):
        return value, None
    kept, text = _no_member_dropped(data, value, member)
    if not kept:
        try:
            json.loads(data, object_pairs_hook=_no_duplicates)
        except RecursionError as exc:  # orjson allows deeper nesting than the stdlib scanner
            raise orjson.JSONDecodeError("JSON nested too deeply", "", 0) from exc
    return value, text


def _no_member_dropped(data: bytes, value: Any, member: str | None) -> tuple[bool, bytes | None]:
    """True only if parsing kept every member (see the module docstring); False means "check".
    Also the text of ``value[member]``, if there is one."""
    try:
        if member is not None and isinstance(value, dict) and member in value:
            text = orjson.dumps(value[member])
            rest = orjson.dumps({k: v for k, v in value.items() if k != member})
            colons = rest.count(b":") + 1 + orjson.dumps(member).count(b":") + text.count(b":")
        else:
            text, colons = None, orjson.dumps(value).count(b":")
    except orjson.JSONEncodeError:  # nested more than 254 levels: the exact pass decides
        return False, None
    if b"\\u003" in data and (b"\\u003a" in data or b"\\u003A" in data):  # one search when there is none
        return False, text
    return data.count(b":") == colons, text


# a string no request holds by chance (a NUL and 128 random bits), standing in for a member's value
_STAND_IN = "\u0000cds-kept-member-" + secrets.token_hex(16)
_STAND_IN_TEXT = orjson.dumps(_STAND_IN)


def loads_with_value(data: bytes, member: str, start: int, end: int, value: Any) -> dict[str, Any] | None:
    """The request as ``loads`` reads it, when ``data[start:end]`` is an object text decoding to
    ``value`` and is the value of the top-level ``member``; else None (see the module docstring).
    The answer holds ``value`` itself as ``member``."""
    if not (0 < start < end <= len(data)) or data[start : start + 1] != b"{" or data[end - 1 : end] != b"}":
        return None
    rest = b"".join((data[:start], _STAND_IN_TEXT, data[end:]))
    if rest.count(_STAND_IN_TEXT) != 1:
        return None
    try:
        outer = loads(rest)
    except (orjson.JSONDecodeError, NotJson):
        return None
    if not isinstance(outer, dict) or outer.get(member) != _STAND_IN:
        return None
    outer[member] = value
    return outer

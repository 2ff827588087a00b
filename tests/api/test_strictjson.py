"""A repeated key anywhere in a request body is refused, exactly when the full stdlib pass says so."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.api.strictjson import loads, loads_with, loads_with_value
from cds.errors import NotJson

KEYS = st.sampled_from(["a", "b", "subject", "patientId", "k:1", "x"])
TEXT = st.text(alphabet=st.sampled_from(list('ab: "\\/é\n')), max_size=8)


def _string(text: str, escape_colons: bool, spaced: bool) -> str:
    out = json.dumps(text, ensure_ascii=spaced)
    return out.replace(":", "\\u003a") if escape_colons else out


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> str:
    """JSON text of a random tree; objects may repeat a key; colons may be escaped or spaced."""
    if depth > 3 or draw(st.integers(0, 3)) == 0:
        return draw(
            st.one_of(
                st.builds(_string, TEXT, st.booleans(), st.booleans()),
                st.integers(-5, 10**6).map(str),
                st.sampled_from(["true", "null", "1.5e3"]),
            )
        )
    if draw(st.booleans()):
        return "[" + ",".join(draw(st.lists(documents(depth + 1), max_size=3))) + "]"
    keys = draw(st.lists(KEYS, max_size=4))
    sep = draw(st.sampled_from([":", " : ", ":\n"]))
    members = [_string(k, draw(st.booleans()), False) + sep + draw(documents(depth + 1)) for k in keys]
    return "{" + ",".join(members) + "}"


def _has_duplicates(text: str) -> bool:
    found = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            found.append(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return bool(found)


@settings(max_examples=400, deadline=None)
@given(documents())
def test_refused_exactly_when_some_object_repeats_a_key(text: str) -> None:
    data = text.encode()
    if _has_duplicates(text):
        with pytest.raises(NotJson):
            loads(data)
    else:
        assert loads(data) == json.loads(text)


@settings(max_examples=400, deadline=None)
@given(documents(), KEYS)
def test_with_a_member_written_out_refused_exactly_when_some_object_repeats_a_key(
    text: str, member: str
) -> None:
    """The same check when one top-level member is written on its own (its text is returned)."""
    data = text.encode()
    if _has_duplicates(text):
        with pytest.raises(NotJson):
            loads_with(data, member)
        return
    value, written = loads_with(data, member)
    assert value == json.loads(text)
    if isinstance(value, dict) and member in value:
        assert written == orjson.dumps(value[member])
    else:
        assert written is None


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": "x\\u003ay", "a": 1}',  # an escaped colon cannot hide the dropped member
        b'{"x": {"k": 1, "k": {"z": "a:b"}}}',
        b'{"a": "\\u0061", "\\u0061": 2}',  # equal once unescaped
        b"[" * 300 + b'{"a": 1, "a": 2}' + b"]" * 300,  # deeper than orjson re-serialises
    ],
)
def test_hidden_repeats_are_found(data: bytes) -> None:
    with pytest.raises(NotJson):
        loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"prefetch": {"p": {"id": "A"}, "p": {"id": "B"}}}',  # inside the member: fast path
        b'{"prefetch": {"p": 1}, "prefetch": {"p": 2}}',  # the member itself repeated
        b'{"hook": "a", "prefetch": {}, "hook": "b"}',  # in the rest
        b'{"prefetch": {"a": "x\\u003ay", "a": 1}}',  # an escaped colon: the exact pass finds it
        b'{"prefetch": ' + b"[" * 300 + b'{"a": 1, "a": 2}' + b"]" * 300 + b"}",  # too deep to write
    ],
)
def test_repeats_are_found_when_the_prefetch_is_written_out(data: bytes) -> None:
    with pytest.raises(NotJson):
        loads_with(data, "prefetch")


KEPT = {"patient": {"resourceType": "Patient", "id": "p1"}, "labs": [1, 2.5, "x:y"]}
KEPT_TEXT = orjson.dumps(KEPT)


@st.composite
def requests_around_a_kept_text(draw: st.DrawFn) -> bytes:
    """A request-like object whose members (some "prefetch", repeated or nested) may hold the
    kept text anywhere a value goes; or a body cut short or run on."""
    members = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(["prefetch", "prefetch", "context", "hook"]))
        if draw(st.booleans()):
            value = KEPT_TEXT.decode()
        elif draw(st.booleans()):
            value = '{"prefetch":' + KEPT_TEXT.decode() + "}"
        else:
            value = draw(documents(1))
        members.append(json.dumps(key) + draw(st.sampled_from([":", " : "])) + value)
    body = ("{" + ",".join(members) + "}").encode()
    return draw(st.sampled_from([body, body[:-1], body + b"]", body + b" "]))


@settings(max_examples=400, deadline=None)
@given(requests_around_a_kept_text())
def test_a_request_read_around_a_kept_value_is_exactly_the_request_read_in_full(body: bytes) -> None:
    try:
        whole: Any = loads(body)
    except (orjson.JSONDecodeError, NotJson):
        whole = None
    start = body.find(KEPT_TEXT)
    while start >= 0:
        around = loads_with_value(body, "prefetch", start, start + len(KEPT_TEXT), KEPT)
        if around is not None:  # never an answer the full reading would not give
            assert isinstance(whole, dict) and around == whole
            assert list(around) == list(whole)
        start = body.find(KEPT_TEXT, start + 1)


def test_a_kept_value_is_read_around_only_as_the_top_level_member() -> None:
    body = b'{"context":{"prefetch":' + KEPT_TEXT + b'},"prefetch":' + KEPT_TEXT + b"}"
    first, last = body.find(KEPT_TEXT), body.rfind(KEPT_TEXT)
    assert loads_with_value(body, "prefetch", first, first + len(KEPT_TEXT), KEPT) is None
    around = loads_with_value(body, "prefetch", last, last + len(KEPT_TEXT), KEPT)
    assert around is not None and around["prefetch"] is KEPT and around == loads(body)
    assert loads_with_value(body, "prefetch", last + 1, last + len(KEPT_TEXT), KEPT) is None
    assert loads_with_value(body, "prefetch", last, last + len(KEPT_TEXT) - 1, KEPT) is None
    repeated = body[:-1] + b',"prefetch":{}}'
    assert loads_with_value(repeated, "prefetch", last, last + len(KEPT_TEXT), KEPT) is None

"""durable_rules is driven the same way with its remembered asserts and its faster JSON
(cds/engine/durable.py): the same rules fire, a repeated fact is not asserted again, and the
JSON the engine's Python loop reads and writes means the same values as the standard module's."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from cds.engine import durable
from cds.engine.durable import MEMO_MAX, DurableRunner, _Json

RULES = {
    "low": {"all": [{"m": {"$lt": {"labs.platelets": 50}}}], "run": "low"},
    "metastatic": {"all": [{"m": {"setting": "metastatic"}}], "run": "metastatic"},
    "both": {
        "all": [{"m": {"$and": [{"$lt": {"labs.platelets": 100}}, {"setting": "metastatic"}]}}],
        "run": "both",
    },
}
FACTS: list[dict[str, Any]] = [
    {"labs.platelets": 40.0, "setting": "metastatic"},
    {"labs.platelets": 80, "setting": "metastatic"},
    {"labs.platelets": 80, "setting": "early"},
    {"labs.platelets": 250.5, "setting": "early", "note": "pâle"},
    {"labs.platelets": 1e16, "setting": "metastatic"},
    {"setting": "metastatic"},
    {},
]


def _count_asserts(runner: DurableRunner, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = runner._fire

    def counting(ruleset: str, fact: dict[str, Any], text: str) -> list[str]:
        calls[0] += 1
        return real(ruleset, fact, text)

    monkeypatch.setattr(runner, "_fire", counting)
    return calls


def test_a_repeated_fact_gets_the_rules_a_fresh_engine_fires_without_a_second_assert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = DurableRunner({"memo@1": RULES})
    calls = _count_asserts(runner, monkeypatch)
    first = [sorted(runner.fire("memo@1", fact)) for fact in FACTS]
    again = [sorted(runner.fire("memo@1", dict(fact))) for fact in FACTS]
    fresh = [sorted(DurableRunner({"memo@1": RULES}).fire("memo@1", fact)) for fact in FACTS]
    assert first == again == fresh
    assert first[:4] == [["both", "low", "metastatic"], ["both", "metastatic"], [], []]
    assert calls[0] == len(FACTS)


def test_facts_that_differ_only_in_a_number_type_are_asserted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = DurableRunner({"memo@1": RULES})
    calls = _count_asserts(runner, monkeypatch)
    for value in (50, 50.0, 49.99, -0.0, 0.0):
        runner.fire("memo@1", {"labs.platelets": value, "setting": "metastatic"})
    assert calls[0] == 5


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = DurableRunner({"memo@1": RULES})
    monkeypatch.setattr(durable, "MEMO_MAX", 3)
    for value in range(10):
        runner.fire("memo@1", {"labs.platelets": value})
    assert len(runner._fired) <= 3
    assert MEMO_MAX >= 1000


def test_a_fact_holding_the_session_keys_is_asserted_as_before() -> None:
    runner = DurableRunner({"memo@1": RULES})
    assert sorted(runner.fire("memo@1", {"labs.platelets": 10, "sid": "x", "cds_fact": 5})) == ["low"]


@pytest.mark.parametrize(
    "value",
    [
        {"sid": "1", "fired": ["a", "b"], "$s": 1},
        {"x": 1.5, "y": -0.0, "z": 10**15 - 1, "t": True, "n": 'é\u2028"\\'},
        {"nested": {"list": [1, 2.5, "three", False]}},
        {"huge": 1e16, "tiny": 1e-5},
        {"nan": math.nan, "inf": -math.inf},
        {"int64": [2**63 - 1, -(2**63)], "double": [1.7976931348623157e308, 5e-324]},
        [1, 2],
    ],
)
def test_the_engine_json_writes_and_reads_the_same_values_as_the_standard_module(value: Any) -> None:
    """Every number durable's C engine can write (64-bit integers, doubles, NaN and infinities)."""
    written = _Json.dumps(value, ensure_ascii=False)
    standard = json.dumps(value, ensure_ascii=False)
    assert json.dumps(json.loads(written)) == json.dumps(json.loads(standard))
    assert json.dumps(_Json.loads(standard)) == json.dumps(json.loads(standard))
    assert json.dumps(_Json.loads(standard.encode())) == json.dumps(json.loads(standard))
    assert _Json.dumps(value) == json.dumps(value) or json.loads(_Json.dumps(value)) == json.loads(
        json.dumps(value)
    )


def test_an_integer_beyond_64_bits_is_written_as_the_standard_module_writes_it() -> None:
    assert _Json.dumps({"big": 2**70}, ensure_ascii=False) == json.dumps({"big": 2**70})


def test_the_engine_module_uses_that_json() -> None:
    assert durable._engine.json is _Json

"""The only module that touches durable_rules (rules-engine-and-authoring.md §1, §3.5).

Safe use, as measured in the reference: one flat fact per patient (projected to the paths the
ruleset reads: a fact may hold at most ~250 properties), no ``$not``, background threads off,
one process-wide lock (the C extension is not thread-safe), version-suffixed ruleset names,
``delete_state`` in ``finally`` (more than 1,024 live sessions crash the process), a no-match is
not an error, and exceptions the engine stores in the session state are raised.

Measured here beyond the reference: when a ruleset has an ``$or`` rule, ``delete_state`` after a
fact that matched no rule segfaults (double free). Every ruleset therefore gets a sentinel rule
that matches every fact, so each assert creates a session and ``delete_state`` is always valid.

Numbers: durable's C JSON reader rejects an exponent without fraction digits (``1e+16``,
``1e-05``, ``5e-324``: "error code 204") although it reads ``1.0e+16`` exactly, and Python's
``json.dumps`` writes floats of magnitude >= 1e16 or < 1e-4 that way whenever one significant digit
suffices. Infinity fails too (202/204), NaN silently never matches, integers beyond 2**63 silently
never match. So facts are encoded here (``encode_fact``): every finite float exactly, with a
fraction before any exponent; a non-finite float or an out-of-range integer is refused with an
``EvaluationError`` naming the fact path before anything reaches durable (the FHIR readers keep
such values out of the facts, so this is a guard, not a path data can take).

Speed, same decisions: durable's Python action loop reads and writes its session state and each
fired action's message (the whole fact) with the standard ``json`` module; ``_Json`` gives that
loop orjson wherever orjson reads and writes the same values (``_plain``), and the standard
module otherwise. And an assert is a pure function of the fact's text (a fresh session per fact,
deleted after), so the rules that fired are remembered by that text (``MEMO_MAX`` facts per
runner): the CDS Hooks service sees the same chart's facts call after call.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from durable import engine as _engine

from cds.errors import EvaluationError

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
SENTINEL = "cds-sentinel"
_MARK = "cds_fact"
MEMO_MAX = 2048  # remembered facts per runner (each about 2 KB of text)


class _Json:
    """The ``json`` that durable's engine module calls: orjson when it writes the same values as
    the standard module (``_plain``) or can read the text, else the standard module itself."""

    @staticmethod
    def loads(text: str | bytes) -> Any:
        # The texts are durable's C engine's, which holds numbers as 64-bit integers or doubles:
        # orjson reads those exactly (it would read an integer beyond 64 bits as a float).
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # what orjson refuses (NaN, Infinity): as before
            return json.loads(text)

    @staticmethod
    def dumps(value: Any, **options: Any) -> str:
        if options in ({}, {"ensure_ascii": False}) and type(value) is dict and _plain(value):
            return orjson.dumps(value).decode()
        return json.dumps(value, **options)


_engine.json = _Json


class _Host(_engine.Host):  # type: ignore[misc]
    """A Host with the background dispatch/timer threads disabled and actions resolved by name."""

    def _run(self) -> None:  # no timers, no background dispatch (segfaults under concurrency)
        return None

    def get_action(self, action_name: str) -> Any:
        def record(c: Any) -> None:
            if action_name != SENTINEL:
                c.s.fired = [*list(c.s.fired or []), action_name]

        return record


class DurableRunner:
    """Evaluates one flat fact against compiled rulesets held by a private durable Host."""

    def __init__(self, definitions: Mapping[str, dict[str, Any]]) -> None:
        self._host = _Host()
        try:
            guarded = {name: _with_sentinel(rules) for name, rules in definitions.items()}
            self._host.set_rulesets(guarded)
        except Exception as exc:  # durable raises bare Exception for bad definitions
            raise EvaluationError(f"durable_rules rejected the compiled rulesets: {exc}") from exc
        self.names = tuple(definitions)
        self._fired: dict[tuple[str, str], tuple[str, ...]] = {}

    def fire(self, ruleset: str, fact: dict[str, Any]) -> list[str]:
        """Rule ids that fired for ``fact``, in firing order (callers sort; never rely on it)."""
        if ruleset not in self.names:
            raise EvaluationError(f"ruleset {ruleset} is not loaded")
        text = encode_fact(fact)
        key = (ruleset, text)
        known = self._fired.get(key)
        if known is not None:
            return list(known)
        fired = self._fire(ruleset, fact, text)
        with _LOCK:
            if len(self._fired) >= MEMO_MAX:
                self._fired.clear()
            self._fired[key] = tuple(fired)
        return fired

    def forget(self) -> None:
        """Forget the remembered asserts (a benchmark of new patients asserts every fact)."""
        with _LOCK:
            self._fired.clear()

    def _fire(self, ruleset: str, fact: dict[str, Any], text: str) -> list[str]:
        """One assert in a session of its own (deleted after); ``text`` is ``encode_fact(fact)``."""
        with _LOCK:
            sid = str(next(_SIDS))
            message = dict(fact)
            message["sid"] = sid
            message[_MARK] = 1
            if "sid" in fact or _MARK in fact:  # overwritten, as the dict above does
                message_text = encode_fact(message)
            else:  # the fact's text with the two keys added (both plain: the same encoding)
                tail = f'"sid":"{sid}","{_MARK}":1}}'
                message_text = f"{text[:-1]},{tail}" if fact else "{" + tail
            try:
                try:
                    self._assert(ruleset, message, message_text)
                except _engine.MessageNotHandledException as exc:  # the sentinel always matches
                    raise EvaluationError(f"{ruleset}: fact not handled despite the sentinel rule") from exc
                state = self._host.get_state(ruleset, sid)
                if state.get("exception"):
                    raise EvaluationError(f"{ruleset}: rule action failed: {state['exception']}")
                return [str(x) for x in state.get("fired") or []]
            except EvaluationError:
                raise
            except Exception as exc:
                raise EvaluationError(f"{ruleset}: durable_rules failed: {exc}") from exc
            finally:
                with contextlib.suppress(Exception):  # error 309: no session; nothing to free
                    self._host.delete_state(ruleset, sid)

    def _assert(self, ruleset: str, message: dict[str, Any], text: str) -> None:
        """``Host.assert_fact`` with our own encoding of the fact (see the module docstring)."""
        rules = self._host.get_ruleset(ruleset)

        def assert_text(fact: dict[str, Any]) -> Any:
            return rules._handle_result(_engine.durable_rules_engine.assert_fact(rules._handle, text), fact)

        self._host._handle_function(rules, assert_text, message, None)


INT64 = 2**63


def _number(value: float, path: str) -> str:
    if not math.isfinite(value):
        raise EvaluationError(f"fact {path} is not a finite number; durable_rules cannot represent it")
    text = repr(value)
    mantissa, exp, power = text.partition("e")
    return f"{mantissa}.0e{power}" if exp and "." not in mantissa else text


def _plain(value: Any) -> bool:
    """Whether orjson writes every value as durable reads it: strings, booleans, integers well
    inside int64, and floats that orjson (like ``repr``) writes without an exponent (zero, or
    1e-4 <= |x| < 1e15; NaN fails the comparison). Anything else takes the per-value encoder."""
    kind = type(value)
    if kind is str or kind is bool:
        return True
    if kind is float:
        return bool(value == 0.0 or 1e-4 <= abs(value) < 1e15)
    if kind is int:
        return bool(-(2**53) < value < 2**53)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False


def encode_fact(value: Any, path: str = "") -> str:
    """JSON text of a fact that durable's reader parses to exactly these values: orjson's text when
    every value is plain (see ``_plain``), else the per-value encoding (exact floats, refused NaN)."""
    if _plain(value):
        return orjson.dumps(value).decode()
    return _encode(value, path)


def _encode(value: Any, path: str = "") -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise EvaluationError(
                f"fact {path} is an integer beyond 64 bits; durable_rules cannot compare it"
            )
        return str(value)
    if isinstance(value, float):
        return _number(value, path)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v, f'{path}.{k}' if path else str(k))}"
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    raise EvaluationError(f"fact {path} has type {type(value).__name__}, not JSON")


def _with_sentinel(rules: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a ruleset definition plus the always-matching sentinel rule.

    durable mutates definitions (it deletes 'run'), hence the copy.
    """
    guarded = copy.deepcopy(rules)
    guarded[SENTINEL] = {"all": [{"m": {_MARK: 1}}], "run": SENTINEL, "pri": 1000}
    return guarded

"""The only module that touches durable_rules (rules-engine-and-authoring.md §1, §3.5).

Safe use, as measured in the reference: one flat fact per patient (projected to the paths the
ruleset reads: a fact may hold at most ~250 properties), no ``$not``, background threads off,
one process-wide lock (the C extension is not thread-safe), version-suffixed ruleset names,
``delete_state`` in ``finally`` (more than 1,024 live sessions crash the process), a no-match is
not an error, and exceptions the engine stores in the session state are raised.

Measured here beyond the reference: when a ruleset has an ``$or`` rule, ``delete_state`` after a
fact that matched no rule segfaults (double free). Every ruleset therefore gets a sentinel rule
that matches every fact, so each assert creates a session and ``delete_state`` is always valid.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from collections.abc import Mapping
from typing import Any

from durable import engine as _engine

from cds.errors import EvaluationError

_LOCK = threading.Lock()
_SIDS = itertools.count(1)
SENTINEL = "cds-sentinel"
_MARK = "cds_fact"


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

    def fire(self, ruleset: str, fact: dict[str, Any]) -> list[str]:
        """Rule ids that fired for ``fact``, in firing order (callers sort; never rely on it)."""
        if ruleset not in self.names:
            raise EvaluationError(f"ruleset {ruleset} is not loaded")
        with _LOCK:
            sid = str(next(_SIDS))
            message = dict(fact)
            message["sid"] = sid
            message[_MARK] = 1
            try:
                try:
                    self._host.assert_fact(ruleset, message)
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


def _with_sentinel(rules: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a ruleset definition plus the always-matching sentinel rule.

    durable mutates definitions (it deletes 'run'), hence the copy.
    """
    guarded = copy.deepcopy(rules)
    guarded[SENTINEL] = {"all": [{"m": {_MARK: 1}}], "run": SENTINEL, "pri": 1000}
    return guarded

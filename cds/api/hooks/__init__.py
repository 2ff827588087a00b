"""Hook handlers, one module per hook: how to read a call's context and what to evaluate.

A handler turns the validated context into a ``Plan``: the patient, and the draft orders to
check (``None`` on patient-level hooks). Adding a hook is one module that defines a ``Hook``
and calls ``register``; the service pipeline (``cds.api.call``) does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from cds.api import wire
from cds.engine.library import RuleLibrary
from cds.errors import BadContext

JSON = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What one call evaluates: the patient, and the drafts to check one by one (None: the patient alone).

    ``answer`` short-cuts the call: an empty list means "nothing for us here" (200 with no cards
    and no data fetch); ``unreadable`` drafts each get a "could not check this order" card.
    """

    patient_id: str
    drafts: tuple[JSON, ...] | None = None
    ignored: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()

    @property
    def nothing_to_check(self) -> bool:
        """An order hook with no covered draft: answer ``{"cards": []}`` without touching patient data."""
        return self.drafts is not None and not self.drafts and not self.unreadable


@dataclass(frozen=True)
class Hook:
    """One CDS Hooks hook: its context model and how a validated context becomes a ``Plan``."""

    name: str
    context: type[BaseModel]
    plan: Callable[[Any, RuleLibrary], Plan]

    def read(self, context: JSON, library: RuleLibrary) -> Plan:
        """Validate the context (400 ``bad-context`` naming fields, never values) and plan the call."""
        try:
            parsed = self.context.model_validate(context)
        except ValidationError as exc:
            raise BadContext(wire.describe(exc, "context")) from exc
        return self.plan(parsed, library)


HOOKS: dict[str, Hook] = {}


def register(hook: Hook) -> Hook:
    """Make ``hook`` callable on every service that lists it."""
    HOOKS[hook.name] = hook
    return hook


from cds.api.hooks import order_select, order_sign, patient_view  # noqa: E402  (modules register themselves)

__all__ = ["HOOKS", "Hook", "Plan", "order_select", "order_sign", "patient_view", "register"]

"""What raw input the readers can represent faithfully: nesting depth and numbers.

Both are data problems, never errors: a resource outside these limits is skipped with its reason
(``skipped``), so one absurd value or a deeply nested extension cannot sink the patient.

* Nesting: FHIR resources are shallow (a dozen levels with contained resources and nested
  extensions). The R4 model validator recurses per level and exhausts Python's stack near 250
  levels; anything deeper than ``MAX_DEPTH`` containers is refused before validation.
* Numbers: a value must be finite and at most ``MAX_MAGNITUDE`` in magnitude. Beyond 1e15 a double
  no longer holds every integer and decimal digits are lost (2**53 ~ 9.007e15), so the number is
  not the one recorded; unit conversions of larger values can also overflow to infinity. Small
  values need no bound: results are kept to 6 decimals, like every converted value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from cds.fhir.records import MedicationEvent

MAX_DEPTH = 64
MAX_MAGNITUDE = 1e15


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels deep (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def number_problem(value: float | None) -> str | None:
    """Why a number cannot be used faithfully, or None when it can (None itself is fine)."""
    if value is None:
        return None
    if not math.isfinite(value):
        return "value is not a finite number"
    if abs(value) > MAX_MAGNITUDE:
        return f"value {value:g} is above {MAX_MAGNITUDE:g} in magnitude"
    return None


def first_number_problem(values: Iterable[float | None]) -> str | None:
    """The first problem among several numbers of one record."""
    for value in values:
        problem = number_problem(value)
        if problem:
            return problem
    return None


def medication_number_problem(med: MedicationEvent | None) -> str | None:
    """Why a medication record's dose or period cannot be used (a draft order is then rejected)."""
    if med is None:
        return None
    problem = first_number_problem((med.dose_value, med.period_weeks))
    return f"dose or period {problem}" if problem else None

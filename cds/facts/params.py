"""Typed read access to the rule-file parameters that fact derivations need.

Derivation windows (regimen window, active-therapy days, ISH cut-offs, dose tolerance...) are
parameters declared in the rule files, never constants in Python (clinical-spec §8). The facts
layer receives them as an input, like cql-execution's ``parameters``. Dose levels are drug
knowledge and live in the drug catalogue (``rules/catalogue/``), one source per drug.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds.errors import ConfigurationError

# The parameters the fact derivations read; the rule loader checks they are all declared.
DERIVATION_PARAMETERS = (
    "active_therapy_days",
    "regimen_window_days",
    "early_relapse_months",
    "early_relapse_months_pertuzumab",
    "adjuvant_chemo_relapse_months",
    "her2_episode_days",
    "ish_ratio_cutoff",
    "ish_copies_low",
    "ish_copies_high",
    "lvef_interval_days",
    "lvef_lower_limit_normal",
    "weight_recency_days",
    "pregnancy_test_days",
    "hcg_negative_below",
    "hcg_positive_at_least",
    "pregnancy_positive_days",
    "febrile_pairing_days",
    "febrile_neutropenia_days",
    "reproductive_age",
    "dose_tolerance_pct",
)


@dataclass(frozen=True)
class Params:
    """Parameter values by name, with typed getters that fail loudly on a missing name."""

    values: Mapping[str, Any]

    def _get(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError as exc:
            raise ConfigurationError(f"parameter {name!r} is not declared in any rule file") from exc

    def num(self, name: str) -> float:
        """A numeric parameter."""
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)

    def days(self, name: str) -> int:
        """A whole-number parameter (days, months)."""
        return int(self.num(name))

    def nums(self, name: str) -> list[float]:
        """A list-of-numbers parameter (dose levels, an age range)."""
        value = self._get(name)
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise ConfigurationError(f"parameter {name!r} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]

"""Unit normalisation: one canonical unit per analyte, unknown units rejected (clinical-spec §1, §9).

A value whose unit is missing or not listed is *unusable*: the caller records a
``gap.unit-unrecognized`` for it. Nothing is ever guessed from the magnitude.
"""

from __future__ import annotations

from cds.errors import UnitUnrecognized
from cds.fhir.valuesets import Analyte

__all__ = ["UnitUnrecognized", "conversion_factor", "to_canonical"]


def _fold(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").lower()


def conversion_factor(analyte: Analyte, unit: str | None) -> float:
    """The factor that converts ``unit`` to the analyte's canonical unit, or UnitUnrecognized."""
    if unit is None:
        if "" in analyte.units:
            return analyte.units[""]
        raise UnitUnrecognized(analyte.key, None)
    if unit in analyte.units:
        return analyte.units[unit]
    folded = _fold(unit)
    for spelling, factor in analyte.units.items():
        if _fold(spelling) == folded:
            return factor
    raise UnitUnrecognized(analyte.key, unit)


def to_canonical(analyte: Analyte, value: float, unit: str | None) -> float:
    """Convert ``value`` in ``unit`` to the canonical unit (rounded to 6 significant decimals)."""
    return round(value * conversion_factor(analyte, unit), 6)


def fraction_value(analyte: Analyte, value: float, unit: str | None) -> float | None:
    """A unitless fraction read as the canonical percentage (LVEF 0.58 -> 58), per the analyte's
    ``fraction`` entry; None if the rule does not apply; UnitUnrecognized if implausible (1 < x < 10)."""
    spec = analyte.fraction
    if not spec or (unit or "").strip() not in [str(u) for u in spec.get("units", [])]:
        return None
    if value <= float(spec.get("max", 1.0)):
        return round(value * float(spec.get("factor", 100)), 6)
    if value < float(spec.get("implausible_below", 0)):
        raise UnitUnrecognized(analyte.key, f"{unit or 'no unit'} with value {value:g} (fraction or %?)")
    return None


def affine_value(analyte: Analyte, value: float, unit: str | None) -> float | None:
    """A value in a unit with an offset (Fahrenheit) in the canonical unit, or None if not such a unit."""
    affine = affine_of(analyte, unit)
    if affine is None:
        return None
    scale, offset = affine
    return round(value * scale + offset, 6)


def affine_of(analyte: Analyte, unit: str | None) -> tuple[float, float] | None:
    """(scale, offset) of a unit with an offset (Fahrenheit), or None if not such a unit."""
    if unit is None:
        return None
    folded = _fold(unit)
    for spelling, (scale, offset) in analyte.affine.items():
        if spelling == unit or _fold(spelling) == folded:
            return scale, offset
    return None

"""The quick ``__init__`` of the frozen records behaves as the dataclass's own (cds/quick.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from cds.facts.therapy import Dose
from cds.fhir.records import (
    ConditionRecord,
    MedicationEvent,
    ObservationRecord,
    ProcedureRecord,
    Skipped,
    When,
)
from cds.quick import quick_init

QUICK = [When, ObservationRecord, ConditionRecord, ProcedureRecord, MedicationEvent, Skipped, Dose]


def _generated(cls: type) -> type:
    """The same class as dataclasses itself would build it (its generated ``__init__``)."""
    fields = [(f.name, f.type, f) for f in dataclasses.fields(cls)]
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, order=params.order)


def _values(cls: type, fill_defaults: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, f in enumerate(dataclasses.fields(cls)):
        if f.default is not dataclasses.MISSING and not fill_defaults:
            continue
        out[f.name] = f"value-{number}"
    return out


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_the_quick_records_hold_what_the_generated_init_holds(cls: type) -> None:
    reference = _generated(cls)
    for fill in (False, True):
        values = _values(cls, fill)
        by_keyword = cls(**values)
        by_position = cls(*values.values())
        expected = reference(**values)
        assert dataclasses.asdict(by_keyword) == dataclasses.asdict(expected)
        assert dataclasses.asdict(by_position) == dataclasses.asdict(expected)
        assert by_keyword == by_position
        assert hash(by_keyword) == hash(by_position)
        assert repr(by_keyword) == repr(expected)


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_the_quick_records_stay_frozen_and_refuse_wrong_arguments(cls: type) -> None:
    record = cls(**_values(cls, False))
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, first, "changed")
    with pytest.raises(TypeError):
        cls(**_values(cls, False), not_a_field=1)
    with pytest.raises(TypeError):
        cls()


def test_when_keeps_its_order_and_the_defaults_are_the_declared_ones() -> None:
    early = When(datetime(2026, 1, 1, tzinfo=UTC))
    late = When(datetime(2026, 1, 2, tzinfo=UTC), True)
    assert early < late and not early.date_only and late.date_only
    record = ObservationRecord("Observation/1", "platelets", "777-3", early)
    assert (record.value, record.focus, record.quantity_unit) == (None, (), None)


def test_classes_it_cannot_serve_are_refused() -> None:
    @dataclasses.dataclass
    class Plain:
        a: int

    @dataclasses.dataclass(frozen=True)
    class WithFactory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (Plain, WithFactory, WithPostInit):
        with pytest.raises(TypeError):
            quick_init(cls)

"""A cheap, conservative proof that a raw resource is valid FHIR R4 (what fhir.resources accepts).

``proven_valid(resource)`` answers True only when every key of the resource, at every level, is
an element the R4B model declares (its JSON name), every value has the declared shape (object,
non-empty array, primitive), every primitive passes a check that is *stricter* than the model's
(an ASCII code, an id of at most 64 characters, a calendar-valid dateTime with seconds and a
time zone...), required elements are present and no choice element ``value[x]`` appears twice.
Anything else (a primitive extension ``_status``, a contained resource, a null, an empty object,
a non-ASCII code, a url/oid/base64 value, nesting deeper than ``MAX_LEVELS``) answers False,
which only means "not proven": the caller then validates with fhir.resources.

The element table is read from the fhir.resources R4B models themselves (their fields, JSON
names, types, required and choice markers), so the screen checks the same structure the models
do. Soundness (True implies the model accepts the resource) is tested against the models on
every sample, every external file and mutated variants of them (tests/core/test_validation_modes.py).
A screened resource that turns out invalid could at worst miss its ``skipped`` line: a resource
whose record the facts use is always validated with fhir.resources (cds/fhir/settle.py).
"""

from __future__ import annotations

import calendar
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_LEVELS = 40  # deeper nesting is not proven (validation refuses more than 64 levels)
_CACHE_MAX = 20_000

Check = Callable[[Any], bool]


# -- primitives: each check implies what the fhir_core type accepts ----------------------------
_ASCII_GRAPHIC = re.compile(r"[!-~]")
_CODE = re.compile(r"[!-~]+(?: [!-~]+)*")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_URI = re.compile(r"[!-~]+")
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_DATETIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:Z|[+-](\d{2}):(\d{2})))?)?)?"
)
_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:Z|[+-](\d{2}):(\d{2}))"
)
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?")


def _string(value: Any) -> bool:
    return type(value) is str and _ASCII_GRAPHIC.search(value) is not None


def _code(value: Any) -> bool:
    return type(value) is str and _CODE.fullmatch(value) is not None


def _id(value: Any) -> bool:
    return type(value) is str and _ID.fullmatch(value) is not None


def _uri(value: Any) -> bool:
    return type(value) is str and _URI.fullmatch(value) is not None


def _boolean(value: Any) -> bool:
    return type(value) is bool


def _fhir_decimal_pattern() -> re.Pattern[str]:
    from fhir_core.types import Decimal

    pattern: re.Pattern[str] = Decimal.pattern
    return pattern


_DECIMAL = _fhir_decimal_pattern()


def _decimal(value: Any) -> bool:
    return type(value) in (int, float) and _DECIMAL.fullmatch(str(value)) is not None


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> bool:
        return type(value) is int and low <= value <= high

    return check


def _calendar(match: re.Match[str]) -> bool:
    """Year 2..9998 (the extremes can leave the range once a time zone applies), a real month and
    day, a time of day without leap second, and a time-zone offset FHIR allows (up to 14:00)."""
    year, month, day, hour, minute, second, tz_hour, tz_minute = (match.groups() + (None,) * 8)[:8]
    if not 2 <= int(year) <= 9998:
        return False
    if month is not None:
        if not 1 <= int(month) <= 12:
            return False
        if day is not None and not 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]:
            return False
    if hour is not None and not (int(hour) <= 23 and int(minute) <= 59 and int(second) <= 59):
        return False
    if tz_hour is not None:
        offset = int(tz_hour) * 60 + int(tz_minute or 0)
        if not (int(tz_minute or 0) <= 59 and (int(tz_hour) <= 13 or offset == 14 * 60)):
            return False
    return True


_DATE_MEMOS: list[dict[str, bool]] = []


def _dated(pattern: re.Pattern[str], time_only: bool = False) -> Check:
    """A memoised check of date-like strings (the same dates recur across a patient's records)."""
    known: dict[str, bool] = {}
    _DATE_MEMOS.append(known)

    def check(value: Any) -> bool:
        if type(value) is not str:
            return False
        verdict = known.get(value)
        if verdict is None:
            match = pattern.fullmatch(value)
            if match is None:
                verdict = False
            elif time_only:
                hour, minute, second = match.groups()
                verdict = int(hour) <= 23 and int(minute) <= 59 and int(second) <= 59
            else:
                verdict = _calendar(match)
            if len(known) >= _CACHE_MAX:
                known.clear()
            known[value] = verdict
        return verdict

    return check


_INT32 = (-(2**31), 2**31 - 1)
# fhir_core metadata class name -> check (types not listed, e.g. url, oid, xhtml: never proven)
PRIMITIVES: dict[str, Check] = {
    "String": _string,
    "Markdown": _string,
    "Code": _code,
    "Id": _id,
    "Uri": _uri,
    "Canonical": _uri,
    "Decimal": _decimal,
    "Integer": _integer(*_INT32),
    "UnsignedInt": _integer(0, _INT32[1]),
    "PositiveInt": _integer(1, _INT32[1]),
    "Integer64": _integer(-(2**63) + 1, 2**63 - 1),
    "Date": _dated(_DATE),
    "DateTime": _dated(_DATETIME),
    "Instant": _dated(_INSTANT),
    "Time": _dated(_TIME, time_only=True),
}


def _never(_value: Any) -> bool:
    return False


# -- the element table, read from the models ------------------------------------------------------
@dataclass
class Element:
    """One FHIR element of a model: its check (primitive) or its model (complex), and cardinality."""

    many: bool
    check: Check | None = None
    model: type | None = None
    choice: int | None = None  # index of its value[x] group in the owning Spec


@dataclass
class Spec:
    """What one model (resource or complex type) allows."""

    elements: dict[str, Element] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    required_choices: tuple[tuple[str, ...], ...] = ()
    resource_type: str | None = None


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is a list) of an Optional[...] / X | None / List[...] annotation."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None, many
            annotation = args[0]
        elif origin is list:
            if many:
                return None, many
            many = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, many


def _element(annotation: Any) -> Element:
    inner, many = _unwrap(annotation)
    if inner is bool:
        return Element(many, check=_boolean)
    if typing.get_origin(inner) is typing.Annotated:
        for meta in typing.get_args(inner)[1:]:
            check = PRIMITIVES.get(type(meta).__name__)
            if check is not None:
                return Element(many, check=check)
        return Element(many, check=_never)
    from fhir_core.types import FhirBase, FhirElementOrResourceBase

    if isinstance(inner, type) and issubclass(inner, FhirBase):
        if issubclass(inner, FhirElementOrResourceBase):
            return Element(many, check=_never)  # contained resources: validated, never screened
        return Element(many, model=inner.get_model_klass())
    return Element(many, check=_never)


_SPECS: dict[type, Spec] = {}


def spec_of(model: type) -> Spec:
    """The element table of a fhir.resources model class (built once per class)."""
    known = _SPECS.get(model)
    if known is not None:
        return known
    spec = Spec()
    _SPECS[model] = spec  # before recursing: element types refer back to themselves (Extension)
    groups: dict[str, list[str]] = {}
    group_required: dict[str, bool] = {}
    required: list[str] = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue  # fhir_comments, the _field primitive extensions: never proven
        key = info.alias or name
        element = _element(info.annotation)
        if isinstance(extra.get("one_of_many"), str):
            group = str(extra["one_of_many"])
            groups.setdefault(group, []).append(key)
            required_group = extra.get("one_of_many_required") is True
            group_required[group] = group_required.get(group, False) or required_group
            element.choice = list(groups).index(group)
        if info.is_required() or extra.get("element_required") is True:
            required.append(key)
        spec.elements[key] = element
    spec.required = tuple(required)
    spec.required_choices = tuple(tuple(keys) for g, keys in groups.items() if group_required[g])
    resource_type = getattr(model, "__resource_type__", None)
    spec.resource_type = resource_type if isinstance(resource_type, str) else None
    return spec


# -- the walk -----------------------------------------------------------------------------------------
def _object(spec: Spec, node: Any, level: int) -> bool:
    if type(node) is not dict or not node or level > MAX_LEVELS:
        return False
    elements = spec.elements
    chosen: set[int] = set()
    for key, value in node.items():
        element = elements.get(key)
        if element is None:
            return False
        if element.choice is not None:
            if element.choice in chosen:
                return False
            chosen.add(element.choice)
        if element.many:
            if type(value) is not list or not value:
                return False
            for item in value:
                if not _value(element, item, level):
                    return False
        elif not _value(element, value, level):
            return False
    for key in spec.required:
        if key not in node:
            return False
    return all(any(k in node for k in group) for group in spec.required_choices)


def _value(element: Element, value: Any, level: int) -> bool:
    if element.check is not None:
        return element.check(value)
    assert element.model is not None
    return _object(spec_of(element.model), value, level + 1)


_PROVEN: dict[tuple[int, bytes], bool] = {}


def proven_valid(resource: Any) -> bool:
    """True only if the resource is certainly valid FHIR R4 (see the module docstring)."""
    if type(resource) is not dict:
        return False
    rtype = resource.get("resourceType")
    if type(rtype) is not str:
        return False
    model = model_class(rtype)
    if model is None:
        return False
    spec = spec_of(model)
    if spec.resource_type != rtype:
        return False
    elements = spec.elements
    chosen = 0  # bit per value[x] group seen
    for key, value in resource.items():
        element = elements.get(key)
        if element is None:
            if key == "resourceType":
                continue
            return False
        choice = element.choice
        if choice is not None:
            if chosen >> choice & 1:
                return False
            chosen |= 1 << choice
        check = element.check
        if check is not None and not element.many:
            if not check(value):
                return False
        elif not _memo(element, value):
            return False
    for key in spec.required:
        if key not in resource:
            return False
    return all(any(k in resource for k in group) for group in spec.required_choices)


def _memo(element: Element, value: Any) -> bool:
    """A top-level complex element, remembered by its exact content: a patient's results repeat
    the same code, category, subject and reference range."""
    try:
        key = (id(element), orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return False
    verdict = _PROVEN.get(key)
    if verdict is None:
        if element.many:
            verdict = type(value) is list and bool(value) and all(_value(element, v, 1) for v in value)
        else:
            verdict = _value(element, value, 1)
        if len(_PROVEN) >= _CACHE_MAX:
            _PROVEN.clear()
        _PROVEN[key] = verdict
    return verdict


def forget() -> None:
    """Forget remembered verdicts (benchmarks measure a fresh process with this)."""
    _PROVEN.clear()
    for memo in _DATE_MEMOS:
        memo.clear()


_MODELS: dict[str, type | None] = {}


def model_class(resource_type: str) -> type | None:
    """The fhir.resources R4B model of a resource type, or None if there is none."""
    if resource_type not in _MODELS:
        from fhir.resources.R4B import get_fhir_model_class

        try:
            _MODELS[resource_type] = get_fhir_model_class(resource_type)
        except (ValueError, KeyError, AttributeError, ImportError):
            _MODELS[resource_type] = None
    return _MODELS[resource_type]

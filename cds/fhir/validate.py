"""fhir.resources R4B validation of one raw resource: the verdict, fast and identical every time.

``validation_error(resource)`` is the first error the R4B model reports, or None. A pydantic
model's verdict is compositional: the model accepts an object when it has no unknown key, every
element value passes its own field validator (a primitive type of fhir_core, or a complex type's
model), and its model validators pass, which look only at *which* elements are present (one
``value[x]``, required elements, no null inside a list). So the verdict is computed from parts,
each decided by fhir.resources itself and remembered:

* a primitive value, by the field's own pydantic validator (``TypeAdapter`` of the field's
  annotation: fhir_core's id, code, dateTime... checks), per distinct value;
* a complex element (CodeableConcept, Reference, Quantity, Dosage...), recursively, per distinct
  JSON content: a patient's results repeat the same code, category, subject and reference range;
* the structure (model, which elements are present, object or array), by running the model on
  the first object of that structure, per distinct structure.

Anything off the common path (an unknown key, a null, an empty array, a contained resource, a
value a part rejects) goes to the plain ``model_validate`` of the whole resource, which decides
and words the first error: the reported verdict is always the plain one.
tests/core/test_validation_modes.py checks both agree, word for word, on every resource of the
samples, the external files, synthetic patients and thousands of mutated variants.

``remember=True`` (what the CDS Hooks service uses) also keeps whole verdicts by content hash: an
EHR sends the same patient's resources again on every chart open, order-select and order-sign.
A resource nested more than ``MAX_DEPTH`` levels is refused before any model sees it (the R4
validator recurses per level and would exhaust the stack).
"""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass
from typing import Any

import orjson

from cds.fhir.limits import MAX_DEPTH, depth_exceeds
from cds.fhir.screen import model_class

JSON = dict[str, Any]

VALIDATION_CACHE_MAX = 200_000  # whole verdicts (16-byte keys)
PART_CACHE_MAX = 20_000  # each of: primitive values, element contents, structures
_VERDICTS: dict[bytes, str | None] = {}
_PRIMITIVES: dict[tuple[int, type, Any], bool] = {}
_ELEMENTS: dict[tuple[type, bytes], int | None] = {}  # content -> nesting height, None if invalid
_STRUCTURES: dict[tuple[type, tuple[Any, ...]], bool] = {}
_MISS = object()
PRIMITIVE, ELEMENT, ELEMENTS, PRIMITIVES = range(4)


class _Plain(Exception):
    """The parts cannot vouch for this object: the plain model_validate decides."""


def clear_validation_cache() -> None:
    """Forget remembered verdicts and parts (benchmarks measure the cold path with this)."""
    for memo in (_VERDICTS, _PRIMITIVES, _ELEMENTS, _STRUCTURES):
        memo.clear()


def validation_error(resource: JSON, remember: bool = False) -> str | None:
    """Validate one resource with the fhir.resources R4B model; the first error, or None."""
    if not remember:
        return _verdict(resource)
    try:
        key = hashlib.blake2b(orjson.dumps(resource), digest_size=16).digest()
    except (TypeError, orjson.JSONEncodeError):
        return _verdict(resource)
    verdict = _VERDICTS.get(key, _MISS)
    if verdict is _MISS:
        verdict = _verdict(resource)
        _bounded(_VERDICTS, VALIDATION_CACHE_MAX)[key] = verdict
    return verdict  # type: ignore[return-value]


def _verdict(resource: JSON) -> str | None:
    model = model_class(resource["resourceType"])
    if model is not None:
        try:
            if _valid(model, resource, 1, root=True) <= MAX_DEPTH:
                return None
        except _Plain:
            pass
        except RecursionError:
            pass
    return plain_validation_error(resource)


def plain_validation_error(resource: JSON) -> str | None:
    """The plain path: depth limit, then ``model_validate`` of the whole resource."""
    if depth_exceeds(resource):
        return f"invalid FHIR R4 {resource['resourceType']}: nested more than {MAX_DEPTH} levels deep"
    from pydantic import ValidationError

    try:
        model = model_class(resource["resourceType"])
        if model is None:
            raise ValueError(f"no R4 model for {resource['resourceType']!r}")
        model.model_validate(resource)  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
        msg = str(first.get("msg", "invalid")).replace("\n", " ")
        return f"invalid FHIR R4 {resource['resourceType']}: {loc + ': ' if loc else ''}{msg}"[:300]
    except (TypeError, ValueError) as exc:
        return f"invalid FHIR R4 {resource['resourceType']}: {exc}"[:300]
    return None


# -- the parts -----------------------------------------------------------------------------------------
@dataclass
class _Field:
    """How one JSON key of a model is validated: a primitive (by its pydantic validator) or an
    element model, single or repeated."""

    kind: int
    annotation: Any = None  # a primitive's field annotation
    model: type | None = None
    adapter: Any = None  # the field's own TypeAdapter, built on first use

    def validate(self, value: Any) -> None:
        if self.adapter is None:
            from pydantic import TypeAdapter

            self.adapter = TypeAdapter(self.annotation)
        self.adapter.validate_python(value)


_TABLES: dict[type, dict[str, _Field]] = {}


def _table(model: type) -> dict[str, _Field]:
    table = _TABLES.get(model)
    if table is None:
        table = {}
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            field = _field(info.annotation)
            if field is not None and name != "fhir_comments":
                table[info.alias or name] = field
        _TABLES[model] = table
    return table


def _field(annotation: Any) -> _Field | None:
    """The part validator of a field annotation; None for shapes left to the plain path."""
    from fhir_core.types import FhirBase, FhirElementOrResourceBase

    inner, many = annotation, False
    while True:
        origin = typing.get_origin(inner)
        if origin in (typing.Union, typing.get_origin(int | None)):
            args = [a for a in typing.get_args(inner) if a is not type(None)]
            if len(args) != 1:
                return None
            inner = args[0]
        elif origin is list and not many:
            many, inner = True, typing.get_args(inner)[0]
        else:
            break
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        if issubclass(inner, FhirElementOrResourceBase):
            return None  # contained resources: the plain path
        return _Field(ELEMENTS if many else ELEMENT, model=inner.get_model_klass())
    if inner is bool or typing.get_origin(inner) is typing.Annotated:
        return _Field(PRIMITIVES if many else PRIMITIVE, annotation=annotation)
    return None


def _valid(model: type, node: Any, level: int, root: bool = False) -> int:
    """The nesting height of ``node`` if the model certainly accepts it, else raise _Plain."""
    if type(node) is not dict or level > MAX_DEPTH:
        raise _Plain
    table = _table(model)
    shape: list[Any] = []
    height = 1
    for key, value in node.items():
        field = table.get(key)
        if field is None:
            if root and key == "resourceType":
                shape.append((key, value))
                continue
            raise _Plain
        kind = field.kind
        if kind == PRIMITIVE:
            if value is None or not _primitive(field, value):
                raise _Plain
        elif kind == ELEMENT:
            assert field.model is not None
            height = max(height, 1 + _element(field.model, value, level + 1))
        elif type(value) is not list or not value:
            raise _Plain
        elif kind == ELEMENTS:
            assert field.model is not None
            below = max(_element(field.model, item, level + 2) for item in value)
            height = max(height, 2 + below)
        elif None in value or not _primitive(field, value):
            raise _Plain
        else:
            height = max(height, 2)
        shape.append((key, kind))
    key = (model, tuple(shape))
    known = _STRUCTURES.get(key)
    if known is None:
        # first object of this structure: the model itself decides (its parts are known valid,
        # so its verdict is the structure's verdict)
        try:
            model.model_validate(node)  # type: ignore[attr-defined]
            known = True
        except Exception:  # invalid (or an exception the plain path will report)
            known = False
        _bounded(_STRUCTURES, PART_CACHE_MAX)[key] = known
    if not known:
        raise _Plain
    return height


def _element(model: type, value: Any, level: int) -> int:
    """The nesting height of an element the model accepts, remembered by exact content."""
    if type(value) is not dict:
        raise _Plain
    try:
        key = (model, orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise _Plain from exc
    known = _ELEMENTS.get(key, _MISS)
    if known is _MISS:
        try:
            known = _valid(model, value, level)
        except _Plain:
            known = None
        _bounded(_ELEMENTS, PART_CACHE_MAX)[key] = known
    if known is None:
        raise _Plain
    return known  # type: ignore[return-value]


def _primitive(field: _Field, value: Any) -> bool:
    """Whether the field's own validator accepts the value (remembered per distinct value)."""
    try:
        content = tuple((type(v), v) for v in value) if type(value) is list else value
        key = (id(field), type(value), content)
        known = _PRIMITIVES.get(key)
    except TypeError:  # an unhashable value: a list holding objects, not a primitive
        return False
    if known is None:
        try:
            field.validate(value)
            known = True
        except Exception:
            known = False
        _bounded(_PRIMITIVES, PART_CACHE_MAX)[key] = known
    return known


def _bounded(memo: dict[Any, Any], limit: int) -> dict[Any, Any]:
    if len(memo) >= limit:
        memo.clear()  # bounded memory; a plain dict stays safe under concurrent threads
    return memo

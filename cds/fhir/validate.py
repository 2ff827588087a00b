"""fhir.resources R4B validation of one raw resource: the verdict, fast and identical every time.

``validation_error(resource)`` is the first error the R4B model reports, or None. Two memories
make it cheap without changing a verdict:

* **Elements by content.** A resource is validated with its complex elements (CodeableConcept,
  Reference, Quantity, Dosage...) replaced by model instances that were validated on their own
  and remembered by their exact JSON content; the model accepts an instance of the element type
  as it is (pydantic does not revalidate instances), and runs its own checks (unknown keys,
  primitives, required elements, one ``value[x]``) on the rest. The same code, category, subject,
  route or reference range is therefore validated once per process, not once per result.
  Validation of a model is compositional (an element's verdict does not depend on where it
  stands), so the verdict is the plain ``model_validate``'s; whenever this path reports a
  problem, the plain path runs and its first error is the one reported, word for word.
  tests/core/test_validation_modes.py checks both paths agree on every resource of the samples,
  the external files and mutated variants.
* **Verdicts by content hash** (``remember=True``, what the CDS Hooks service uses): an EHR sends
  the same patient's resources again on every chart open, order-select and order-sign.

A resource nested more than ``MAX_DEPTH`` levels is refused before any model sees it (the R4
validator recurses per level and would exhaust the stack).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from cds.fhir.limits import MAX_DEPTH, depth_exceeds
from cds.fhir.screen import Spec, model_class, spec_of

JSON = dict[str, Any]

VALIDATION_CACHE_MAX = 200_000  # verdicts (16-byte keys)
ELEMENT_CACHE_MAX = 20_000  # validated element instances (a few KB each)
_VERDICTS: dict[bytes, str | None] = {}
_ELEMENTS: dict[tuple[type, bytes], tuple[Any, int] | None] = {}
_MISS = object()


class _Plain(Exception):
    """The element path cannot vouch for the resource: ask the plain model_validate."""


def clear_validation_cache() -> None:
    """Forget remembered verdicts and elements (benchmarks measure the cold path with this)."""
    _VERDICTS.clear()
    _ELEMENTS.clear()


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
        if len(_VERDICTS) >= VALIDATION_CACHE_MAX:
            _VERDICTS.clear()  # bounded memory; a plain dict stays safe under concurrent threads
        _VERDICTS[key] = verdict
    return verdict  # type: ignore[return-value]


def _verdict(resource: JSON) -> str | None:
    model = model_class(resource["resourceType"])
    if model is not None:
        try:
            data, height = _children(spec_of(model), resource)
            if height <= MAX_DEPTH:
                model.model_validate(data)  # type: ignore[attr-defined]
                return None
        except Exception:
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


def _children(spec: Spec, node: JSON, level: int = 1) -> tuple[JSON, int]:
    """The object with its complex elements replaced by validated instances, and its nesting height
    (containers, as ``depth_exceeds`` counts them)."""
    if level > MAX_DEPTH:
        raise _Plain
    data: JSON = {}
    height = 1
    for key, value in node.items():
        element = spec.elements.get(key)
        if element is not None and element.model is not None:
            if not element.many and type(value) is dict:
                instance, below = _element(element.model, value, level + 1)
                data[key] = instance
                height = max(height, 1 + below)
                continue
            if element.many and type(value) is list and value and all(type(v) is dict for v in value):
                items = [_element(element.model, v, level + 2) for v in value]
                data[key] = [instance for instance, _below in items]
                height = max(height, 2 + max(below for _instance, below in items))
                continue
        data[key] = value
        if type(value) is dict or type(value) is list:
            height = max(height, 1 + _height(value))
    return data, height


def _element(model: type, value: JSON, level: int) -> tuple[Any, int]:
    """A validated instance of ``model`` for this exact content (remembered), and its height."""
    try:
        key = (model, orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise _Plain from exc
    known = _ELEMENTS.get(key, _MISS)
    if known is _MISS:
        try:
            data, height = _children(spec_of(model), value, level)
            valid = model.model_validate(data) if height <= MAX_DEPTH else None  # type: ignore[attr-defined]
            known = None if valid is None else (valid, height)
        except Exception:
            known = None
        if len(_ELEMENTS) >= ELEMENT_CACHE_MAX:
            _ELEMENTS.clear()
        _ELEMENTS[key] = known
    if known is None:
        raise _Plain
    return known  # type: ignore[return-value]


def _height(value: Any) -> int:
    """Nesting height of a raw JSON value (1 for an object or array of scalars), iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            children: Any = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH + 1:
            return depth
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return deepest

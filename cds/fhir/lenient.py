"""Which top-level fields of a resource are invalid FHIR R4, so a caller can ignore the ones it never reads.

EHRs send drafts with harmless mistakes in fields no rule looks at (the reference sandbox sends
``MedicationRequest.category`` as an object, not an array). Rejecting the whole order for that
would silence every check on it; reading the fields the rules need, and saying which others were
ignored, keeps the checks running and the clinician informed.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cds.fhir.screen import model_class

JSON = dict[str, Any]


def invalid_fields(resource: JSON) -> tuple[str, ...]:
    """The top-level fields that fail R4 validation, sorted ("" for a resource-level error); () if valid."""
    try:
        model = model_class(str(resource["resourceType"]))
        if model is None:
            raise ValueError(f"{resource['resourceType']} is not a valid FHIR Model")
        model.model_validate(resource)  # type: ignore[attr-defined]
    except ValidationError as exc:
        fields = {str(err["loc"][0]) if err.get("loc") else "" for err in exc.errors()}
        return tuple(sorted(f.replace("__root__", "") for f in fields))
    except (TypeError, ValueError, KeyError) as exc:  # the model itself refused the shape
        return (f"({type(exc).__name__})",)
    return ()


def without(resource: JSON, fields: tuple[str, ...]) -> JSON:
    """A copy of ``resource`` without ``fields``."""
    return {k: v for k, v in resource.items() if k not in fields}


# What the engine reads of a draft MedicationRequest (cds.fhir.parse): an invalid value in any of
# these makes the draft unreadable; an invalid value anywhere else can be ignored.
DRAFT_FIELDS_READ = frozenset(
    {
        "",
        "resourceType",
        "id",
        "status",
        "intent",
        "medicationCodeableConcept",
        "medicationReference",
        "contained",
        "subject",
        "authoredOn",
        "dosageInstruction",
    }
)

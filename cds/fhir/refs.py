"""Whether a resource's patient reference names the patient being evaluated.

Another patient's data must never drive a finding, so every reference a resource makes to "its"
patient (``subject`` or ``patient``) is judged against the one Patient of the evaluation:

* names this patient: ``Patient/<id>``, ``Patient/<id>/_history/<n>``, an absolute URL ending in
  ``Patient/<id>`` (optionally ``/_history/<n>``), or the Patient entry's ``fullUrl`` (including
  ``urn:uuid:``/``urn:oid:``);
* names another patient: any other ``Patient/...`` reference (relative, absolute or versioned),
  any other ``urn:`` reference (it is not this patient's entry, so it cannot be shown to be this
  patient), and a ``#contained`` reference (a contained Patient is not the evaluated one);
* not judged: no literal ``reference`` (identifier or display only) and references to other
  resource types (``Group/...``): those are not patient references.

One module so the CLI, CDS Hooks (prefetch and fallback) and cohorts decide identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cds.fhir.source import RawPatient

PATIENT_KEYS = ("subject", "patient")

_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
# relative, or absolute (scheme://host/...), optionally versioned; nothing after it
_PATIENT_REF = re.compile(
    rf"^(?:[A-Za-z][A-Za-z0-9+.\-]*://[^?#\s]*/)?Patient/(?P<id>{_FHIR_ID})(?:/_history/{_FHIR_ID})?$"
)
_MENTIONS_PATIENT = re.compile(r"(?:^|/)Patient(?:/|$)")


@dataclass(frozen=True)
class PatientIdentity:
    """The evaluated patient: its resource id and the ``fullUrl`` values of its entries."""

    id: str | None
    urls: frozenset[str] = frozenset()

    def names(self, reference: str) -> bool:
        """True if ``reference`` names this patient (see the module docstring)."""
        if reference in self.urls:
            return True
        match = _PATIENT_REF.match(reference)
        return bool(match and self.id is not None and match.group("id") == self.id)


def is_patient_reference(reference: str) -> bool:
    """Whether a reference points at a patient or cannot be shown not to (urn, contained)."""
    return (
        reference.startswith(("urn:", "#"))
        or _PATIENT_REF.match(reference) is not None
        or _MENTIONS_PATIENT.search(reference.split("?", 1)[0]) is not None
    )


def other_patient_reference(
    resource: dict[str, Any], patient: PatientIdentity, judged: dict[str, bool] | None = None
) -> str | None:
    """The element (``subject``/``patient``) naming another patient, or None if none does.
    ``judged`` remembers the answer per reference for one patient's resources."""
    for key in PATIENT_KEYS:
        ref = resource.get(key)
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            continue
        target = ref["reference"].strip()
        other = judged.get(target) if judged is not None else None
        if other is None:
            other = is_patient_reference(target) and not patient.names(target)
            if judged is not None:
                judged[target] = other
        if other:
            return key
    return None


def identity_of(raw: RawPatient) -> PatientIdentity:
    """The identity of a raw patient: its id and its entries' fullUrl values."""
    rid = raw.patient.get("id")
    return PatientIdentity(rid if isinstance(rid, str) and rid else None, frozenset(raw.patient_urls))

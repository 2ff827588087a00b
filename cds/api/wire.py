"""CDS Hooks 2.0 wire schemas: lenient on input (unknown keys ignored), exact on output.

Requests are validated here and every failure becomes a 400 with a JSON body naming the field,
never the value (values may be patient data). Response models exist for the OpenAPI document and
for the tests; responses themselves are built by ``cds.findings.cards`` and pruned of empty values.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
TYPED_REF = re.compile(r"^([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
UUID_RE = re.compile(r"^(urn:uuid:)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
PATIENT_VIEW_USERS = {"Practitioner", "PractitionerRole", "Patient", "RelatedPerson"}
ORDER_USERS = {"Practitioner", "PractitionerRole"}
ORDER_TYPES = {"MedicationRequest", "ServiceRequest", "NutritionOrder", "VisionPrescription", "DeviceRequest"}


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FhirAuthorization(_In):
    """The OAuth token the client lends us for its FHIR server (never stored or logged)."""

    access_token: str = Field(min_length=1)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be Bearer")
        return "Bearer"


class HookRequest(_In):
    """The body of ``POST /cds-services/{id}`` (SPEC §Calling a CDS Service)."""

    hook: str = Field(min_length=1)
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not UUID_RE.match(value):
            raise ValueError("hookInstance must be a UUID")
        return value

    @field_validator("fhirServer")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/?#]+", value):
            raise ValueError("fhirServer must be an absolute http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _auth_needs_server(self) -> HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization requires fhirServer (cds-r-1)")
        return self


def _ref(value: Any, types: set[str], name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    m = TYPED_REF.match(value)
    if not m or m.group(1) not in types:
        raise ValueError(f"{name} must be a reference {'|'.join(sorted(types))}/<id>")
    return value


def _fhir_id(value: Any) -> str:
    if not isinstance(value, str) or not FHIR_ID.match(value):
        raise ValueError("patientId must be a FHIR id")
    return value


class _PatientContext(_In):
    """What every hook context here carries: who asks, about which patient (and encounter)."""

    userId: str
    patientId: str
    encounterId: str | None = None

    @field_validator("patientId")
    @classmethod
    def _patient(cls, value: Any) -> str:
        return _fhir_id(value)


class PatientViewContext(_PatientContext):
    """patient-view context: who is looking at which patient."""

    @field_validator("userId")
    @classmethod
    def _user(cls, value: Any) -> str:
        return _ref(value, PATIENT_VIEW_USERS, "userId")


class DraftOrders(_In):
    """A Bundle of draft orders; ``type`` is optional because the reference sandbox omits it."""

    resourceType: Literal["Bundle"]
    type: str | None = None
    entry: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("entry")
    @classmethod
    def _resources(cls, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, entry in enumerate(entries):
            resource = entry.get("resource")
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise ValueError(f"entry[{index}].resource must be a FHIR resource")
        return entries

    def resources(self) -> list[dict[str, Any]]:
        """The draft resources in bundle order."""
        return [e["resource"] for e in self.entry]


class OrderSignContext(_PatientContext):
    """order-sign context: the draft orders about to be signed."""

    draftOrders: DraftOrders

    @field_validator("userId")
    @classmethod
    def _user(cls, value: Any) -> str:
        return _ref(value, ORDER_USERS, "userId")


class OrderSelectContext(OrderSignContext):
    """order-select context: the drafts plus which of them were just selected."""

    selections: list[str] = Field(min_length=1)

    @field_validator("selections")
    @classmethod
    def _selections(cls, values: list[Any]) -> list[str]:
        return [_ref(v, ORDER_TYPES, "selections[]") for v in values]

    @model_validator(mode="after")
    def _selected_exist(self) -> OrderSelectContext:
        present = {f"{r['resourceType']}/{r.get('id')}" for r in self.draftOrders.resources()}
        missing = [s for s in self.selections if s not in present]
        if missing:
            raise ValueError(f"{len(missing)} selection(s) not found in draftOrders")
        return self


CONTEXTS: dict[str, type[PatientViewContext] | type[OrderSignContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


def describe(error: ValidationError, prefix: str = "") -> str:
    """A one-line summary of a validation error: locations and messages, never the input values."""
    parts = []
    for err in error.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc or 'body'}: {msg}")
    return "; ".join(parts)


class Feedback(_In):
    """One feedback entry (SPEC §Feedback; SPEC-3 cds-fb-1..3)."""

    class Reason(_In):
        class Coding(_In):
            system: str = Field(min_length=1)
            code: str = Field(min_length=1)
            display: str | None = None

        reason: Coding | None = None
        userComment: str | None = None

        @model_validator(mode="after")
        def _one(self) -> Feedback.Reason:
            if self.reason is None and not self.userComment:
                raise ValueError("overrideReason needs reason or userComment (cds-fb-3)")
            return self

    class Accepted(_In):
        id: str = Field(min_length=1)

    card: str = Field(min_length=1, max_length=100)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[Accepted] | None = None
    overrideReason: Reason | None = None
    outcomeTimestamp: str

    @field_validator("outcomeTimestamp")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        if not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", value):
            raise ValueError("outcomeTimestamp must be an RFC 3339 date-time")
        return value

    @model_validator(mode="after")
    def _accepted_needs_suggestions(self) -> Feedback:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("accepted feedback needs acceptedSuggestions (cds-fb-2)")
        return self


class FeedbackRequest(_In):
    """``{"feedback": [...]}``: always an array, possibly covering several cards."""

    feedback: list[Feedback] = Field(min_length=1, max_length=500)


# ---- response models (OpenAPI and tests) ---------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Coding(_Out):
    system: str
    code: str
    display: str | None = None


class Source(_Out):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Out):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Out):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Out):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Out):
    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: dict[str, Any] | None = None


class CardsResponse(_Out):
    cards: list[Card]
    systemActions: list[Action] | None = None


class ServiceDescription(_Out):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None
    extension: dict[str, Any] | None = None


class Discovery(_Out):
    services: list[ServiceDescription]


class ErrorBody(_Out):
    error: str
    message: str


class FeedbackAck(_Out):
    stored: int
    duplicates: int

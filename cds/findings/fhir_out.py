"""Findings as FHIR R4 resources a FHIR server or an EHR can store.

One evaluation becomes:

* a ``GuidanceResponse``: the evaluation itself. ``moduleCanonical`` names the rule library with a
  version derived from the rule sets and their versions; ``outputParameters`` points at a contained
  ``Parameters`` holding every finding (code, kind, severity, summary, detail, rule and version,
  basis); ``status`` is ``data-required`` when a data gap is open; ``result`` points at the
  ``RequestGroup`` when there are recommendations;
* a ``DetectedIssue`` per alert: severity, ``detail``, the ``implicated`` resources, and one
  ``evidence`` entry per basis fact (the fact in words, the resources it came from);
* a ``RequestGroup`` (intent ``proposal``) with one action per recommended regimen.

Ids are deterministic (a hash of patient, as-of instant and rule set versions, plus the finding
code), so the same evaluation gives byte-identical resources and a PUT is idempotent. Every
resource is validated with the same fhir.resources models the input is validated with.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import orjson

from cds.errors import CdsError
from cds.fhir.parse import validation_error
from cds.findings.actions import Getter, Wording, describe_basis
from cds.findings.model import Evaluation, Finding

# Our own code systems: finding codes, basis fact paths and the rule library are this project's.
SYSTEM = "urn:her2-cds"
FINDING_SYSTEM = f"{SYSTEM}:finding"
FACT_SYSTEM = f"{SYSTEM}:fact"
STRENGTH_SYSTEM = f"{SYSTEM}:recommendation-strength"
REGIMEN_SYSTEM = f"{SYSTEM}:regimen"
LIBRARY = f"{SYSTEM}:library:rules"
# DetectedIssue.severity (http://hl7.org/fhir/detectedissue-severity)
SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}
JSON = dict[str, Any]


class FhirOutputInvalid(CdsError):
    """A resource this module built does not validate (a bug here, never a patient problem)."""

    code = "fhir-output-invalid"


def rules_version(evaluation: Evaluation) -> str:
    """A version of the rule library: a short hash of every rule set's name and version."""
    text = ",".join(f"{r.name}@{r.version}" for r in evaluation.rulesets)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluation_id(evaluation: Evaluation) -> str:
    """Deterministic id of one evaluation: patient + as-of + rule set versions."""
    text = "|".join([evaluation.patient, evaluation.as_of, rules_version(evaluation)])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _id(base: str, *parts: str) -> str:
    return hashlib.sha256("|".join([base, *parts]).encode()).hexdigest()[:40]


def _ref(reference: str) -> JSON:
    return {"reference": reference}


def _value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _finding_parameter(f: Finding) -> JSON:
    parts: list[JSON] = [
        {"name": "code", "valueCode": f.code},
        {"name": "kind", "valueCode": f.kind},
        {"name": "severity", "valueCode": f.severity},
        *({"name": n, "valueString": v} for n, v in (("summary", f.summary), ("detail", f.detail)) if v),
        {"name": "reviewRequired", "valueBoolean": f.review_required},
        {"name": "rule", "valueString": f.rule.id},
        {"name": "ruleVersion", "valueString": f.rule.version},
        {"name": "ruleset", "valueString": f.rule.ruleset},
        {"name": "evidenceStatus", "valueCode": f.rule.evidence_status},
    ]
    for name, value in (("strength", f.strength), ("regimen", f.regimen), ("action", f.action)):
        if value:
            parts.append({"name": name, "valueCode": value})
    for b in f.basis:
        basis: list[JSON] = [
            {"name": "fact", "valueString": b.fact},
            {"name": "value", "valueString": _value(b.value)},
        ]
        basis += [{"name": "resource", "valueReference": _ref(r)} for r in b.resources]
        parts.append({"name": "basis", "part": basis})
    return {"name": "finding", "part": parts}


def _coding(f: Finding) -> JSON:
    return {"coding": [{"system": FINDING_SYSTEM, "code": f.code}], "text": f.summary}


def _detected_issue(
    evaluation: Evaluation, base: str, f: Finding, wording: Wording, get: Getter | None
) -> JSON:
    implicated: list[str] = []
    for b in f.basis:
        implicated.extend(r for r in b.resources if r not in implicated)
    evidence = []
    for b in f.basis:
        as_of = date.fromisoformat(evaluation.as_of[:10])
        words = describe_basis(b, wording, get, as_of) or f"{b.fact} = {_value(b.value)}"
        item: JSON = {"code": [{"coding": [{"system": FACT_SYSTEM, "code": b.fact}], "text": words}]}
        if b.resources:
            item["detail"] = [_ref(r) for r in b.resources]
        evidence.append(item)
    issue: JSON = {
        "resourceType": "DetectedIssue",
        "id": _id(base, "DetectedIssue", f.code),
        "status": "preliminary" if f.review_required else "final",
        "code": _coding(f),
        "severity": SEVERITY[f.severity],
        "patient": _ref(evaluation.patient),
        "identifiedDateTime": evaluation.as_of,
    }
    if f.detail:
        issue["detail"] = f.detail
    if implicated:
        issue["implicated"] = [_ref(r) for r in implicated]
    if evidence:
        issue["evidence"] = evidence
    if f.evidence:
        issue["reference"] = f.evidence[0].url
    return issue


def _request_group(evaluation: Evaluation, base: str, recommendations: list[Finding]) -> JSON:
    actions = []
    for f in recommendations:
        code = [_coding(f)]
        if f.strength:
            code.append({"coding": [{"system": STRENGTH_SYSTEM, "code": f.strength}]})
        if f.regimen:
            code.append({"coding": [{"system": REGIMEN_SYSTEM, "code": f.regimen}]})
        action: JSON = {"title": f.summary, "code": code}
        if f.detail:
            action["description"] = f.detail
        if f.evidence:
            action["documentation"] = [
                {"type": "citation", "label": e.label, "citation": e.citation, "url": e.url}
                for e in f.evidence
            ]
        actions.append(action)
    return {
        "resourceType": "RequestGroup",
        "id": _id(base, "RequestGroup"),
        "status": "draft",
        "intent": "proposal",
        "subject": _ref(evaluation.patient),
        "authoredOn": evaluation.as_of,
        "action": actions,
    }


def to_resources(
    evaluation: Evaluation, wording: Wording | None = None, get: Getter | None = None
) -> list[JSON]:
    """GuidanceResponse, then a DetectedIssue per alert, then the RequestGroup (if any), validated.

    ``get`` reads the patient's facts (for the result dates in the evidence wording)."""
    wording = wording or Wording()
    base = evaluation_id(evaluation)
    recommendations = [f for f in evaluation.findings if f.kind == "recommendation"]
    group = _request_group(evaluation, base, recommendations) if recommendations else None
    guidance: JSON = {
        "resourceType": "GuidanceResponse",
        "id": base,
        "contained": [
            {
                "resourceType": "Parameters",
                "id": "findings",
                "parameter": [
                    *(
                        {"name": "ruleset", "valueString": f"{r.name}|{r.version}"}
                        for r in evaluation.rulesets
                    ),
                    *(_finding_parameter(f) for f in evaluation.findings),
                ],
            }
        ],
        "requestIdentifier": {"system": f"{SYSTEM}:evaluation", "value": base},
        "moduleCanonical": f"{LIBRARY}|{rules_version(evaluation)}",
        "status": "data-required" if any(f.kind == "data-gap" for f in evaluation.findings) else "success",
        "subject": _ref(evaluation.patient),
        "occurrenceDateTime": evaluation.as_of,
        "outputParameters": _ref("#findings"),
    }
    if group is not None:
        guidance["result"] = _ref(f"RequestGroup/{group['id']}")
    resources = [guidance]
    resources += [
        _detected_issue(evaluation, base, f, wording, get) for f in evaluation.findings if f.kind == "alert"
    ]
    if group is not None:
        resources.append(group)
    for resource in resources:
        problem = validation_error(resource)
        if problem is not None:
            raise FhirOutputInvalid(f"{resource['resourceType']}/{resource['id']}: {problem}")
    return resources


def transaction_bundle(resources: list[JSON]) -> JSON:
    """A transaction Bundle that stores ``resources`` with PUT (idempotent: the ids are deterministic)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def findings_from_guidance(guidance: JSON) -> list[str]:
    """The finding codes a GuidanceResponse carries (reads back what ``to_resources`` wrote)."""
    params = next(c for c in guidance.get("contained", []) if c.get("resourceType") == "Parameters")
    return [
        part["valueCode"]
        for p in params.get("parameter", [])
        if p.get("name") == "finding"
        for part in p.get("part", [])
        if part.get("name") == "code"
    ]

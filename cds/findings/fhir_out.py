"""Findings as FHIR R4 resources a FHIR server or an EHR can store.

One evaluation becomes:

* a ``GuidanceResponse``: the evaluation itself. ``moduleCanonical`` names the rule library with its
  version (a short digest of every rule set's name and version; each rule set is listed in the
  output parameters as its own canonical with its version); ``outputParameters`` points at a
  contained ``Parameters`` holding every finding (code, kind, severity, summary, the worklist line,
  rule and version, basis facts with their values and resources, evidence); ``status`` is
  ``data-required`` when a data gap is open; ``evaluationMessage`` lists the resources the engine
  skipped; ``result`` points at the ``RequestGroup`` when something is recommended;
* a ``DetectedIssue`` per alert: severity, ``detail``, the ``implicated`` resources, and one
  ``evidence`` entry per basis fact (the fact in words, the resources it came from);
* a ``RequestGroup`` (intent ``proposal``) with one action per recommended regimen, each drug of the
  regimen a proposed ``MedicationRequest`` (the same one a CDS Hooks card suggests).

Ids are derived from content (a digest of the resource without its id), so the same evaluation
gives byte-identical resources, a PUT is idempotent, and a changed result gets a new id. Every
resource is validated with the fhir.resources models the input is validated with; a resource that
does not validate is a bug here (``FhirOutputInvalid``), never a patient problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from cds.errors import FhirOutputInvalid
from cds.fhir.validate import plain_validation_error as validation_error
from cds.findings.cards import FINDING_CODE_SYSTEM, CardContext, medication_request, regimen_drugs
from cds.findings.model import Basis, Evaluation, Finding
from cds.findings.wording import Wording, capitalised, clinical_text
from cds.knowledge.catalogue import Catalogue

JSON = dict[str, Any]
Getter = Callable[[str], Any]

BASE = "https://her2-cds.org/fhir"
FACT_SYSTEM = f"{BASE}/CodeSystem/fact"
REGIMEN_SYSTEM = f"{BASE}/CodeSystem/regimen"
STRENGTH_SYSTEM = f"{BASE}/CodeSystem/recommendation-strength"
EVALUATION_SYSTEM = f"{BASE}/evaluation"
LIBRARY = f"{BASE}/Library/her2-cds"
RULESET_LIBRARY = f"{BASE}/Library"
# DetectedIssue.severity (http://hl7.org/fhir/detectedissue-severity)
SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}
TYPES = ("GuidanceResponse", "DetectedIssue", "RequestGroup")


def library_version(evaluation: Evaluation) -> str:
    """The rule library's version: a short digest of every rule set's name and version."""
    text = ",".join(f"{r.name}@{r.version}" for r in sorted(evaluation.rulesets, key=lambda r: r.name))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def evaluation_key(evaluation: Evaluation) -> str:
    """What identifies one evaluation request: patient, as-of instant and rule library version."""
    text = "|".join([evaluation.patient, evaluation.as_of, library_version(evaluation)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_content_id(resource: JSON) -> JSON:
    """The resource with ``id`` = a digest of its content (ids never depend on run order)."""
    body = {k: v for k, v in resource.items() if k != "id"}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    rest = {k: v for k, v in body.items() if k != "resourceType"}
    return {"resourceType": resource["resourceType"], "id": digest, **rest}


def _ref(reference: str) -> JSON:
    return {"reference": reference}


def _typed(value: Any) -> JSON:
    """A basis value as a Parameters value[x]."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int | float):
        return {"valueDecimal": value}
    if isinstance(value, str):
        return {"valueString": value}
    return {"valueString": orjson.dumps(value).decode()}


def _finding_coding(f: Finding) -> JSON:
    return {"coding": [{"system": FINDING_CODE_SYSTEM, "code": f.code}], "text": f.summary}


def _basis_words(b: Basis, wording: Wording, get: Getter | None) -> str:
    return wording.basis_line(b, get) or b.fact


def _finding_parameter(f: Finding, wording: Wording, get: Getter | None, issue: str | None) -> JSON:
    parts: list[JSON] = [
        {"name": "code", "valueCoding": {"system": FINDING_CODE_SYSTEM, "code": f.code}},
        {"name": "kind", "valueCode": f.kind},
        {"name": "severity", "valueCode": f.severity},
        {"name": "summary", "valueString": f.summary},
        {"name": "action", "valueString": wording.action_line(f, get)},
        {"name": "detail", "valueString": capitalised(clinical_text(f.detail.strip()))},
        {"name": "reviewRequired", "valueBoolean": f.review_required},
        {"name": "rule", "valueString": f.rule.id},
        {"name": "ruleVersion", "valueString": f.rule.version},
        {"name": "ruleset", "valueCanonical": f"{RULESET_LIBRARY}/{f.rule.ruleset}|{f.rule.version}"},
        {"name": "evidenceStatus", "valueCode": f.rule.evidence_status},
    ]
    for name, value in (("strength", f.strength), ("regimen", f.regimen), ("actionCode", f.action)):
        if value:
            parts.append({"name": name, "valueCode": value})
    if issue is not None:
        parts.append({"name": "detectedIssue", "valueReference": _ref(issue)})
    for b in f.basis:
        basis: list[JSON] = [
            {"name": "fact", "valueCoding": {"system": FACT_SYSTEM, "code": b.fact}},
            {"name": "words", "valueString": _basis_words(b, wording, get)},
        ]
        if b.value is not None:
            basis.append({"name": "value", **_typed(b.value)})
        basis += [{"name": "resource", "valueReference": _ref(r)} for r in b.resources]
        parts.append({"name": "basis", "part": basis})
    for e in f.evidence:
        parts.append(
            {
                "name": "evidence",
                "part": [
                    {"name": "label", "valueString": e.label},
                    {"name": "citation", "valueString": e.citation},
                    {"name": "url", "valueUri": e.url},
                ],
            }
        )
    return {"name": "finding", "part": parts}


def detected_issue(evaluation: Evaluation, f: Finding, wording: Wording, get: Getter | None) -> JSON:
    """A DetectedIssue for one alert: severity, detail, implicated resources, the basis as evidence."""
    implicated: list[str] = []
    for b in f.basis:
        implicated.extend(r for r in b.resources if r not in implicated)
    evidence = []
    for b in f.basis:
        words = _basis_words(b, wording, get)
        item: JSON = {"code": [{"coding": [{"system": FACT_SYSTEM, "code": b.fact}], "text": words}]}
        if b.resources:
            item["detail"] = [_ref(r) for r in b.resources]
        evidence.append(item)
    issue: JSON = {
        "resourceType": "DetectedIssue",
        "status": "preliminary" if f.review_required else "final",
        "code": {
            "coding": [{"system": FINDING_CODE_SYSTEM, "code": f.code}],
            "text": wording.action_line(f, get),
        },
        "severity": SEVERITY[f.severity],
        "patient": _ref(evaluation.patient),
        "identifiedDateTime": evaluation.as_of,
        "detail": capitalised(clinical_text(f.detail.strip())),
    }
    if implicated:
        issue["implicated"] = [_ref(r) for r in implicated]
    if evidence:
        issue["evidence"] = evidence
    if f.evidence:
        issue["reference"] = f.evidence[0].url
    return with_content_id(issue)


def request_group(
    evaluation: Evaluation, recommendations: Sequence[Finding], catalogue: Catalogue | None
) -> JSON:
    """A RequestGroup proposing each recommended regimen; each drug a contained MedicationRequest."""
    ctx = CardContext(service_id="", patient_ref=evaluation.patient, parameters={}, catalogue=catalogue)
    contained: list[JSON] = []
    actions: list[JSON] = []
    for i, f in enumerate(recommendations):
        code = [_finding_coding(f)]
        if f.regimen:
            code.append({"coding": [{"system": REGIMEN_SYSTEM, "code": f.regimen}]})
        if f.strength:
            code.append({"coding": [{"system": STRENGTH_SYSTEM, "code": f.strength}]})
        action: JSON = {
            "title": f.summary,
            "description": capitalised(clinical_text(f.detail.strip())),
            "code": code,
        }
        if f.evidence:
            action["documentation"] = [
                {"type": "citation", "label": e.label, "citation": e.citation, "url": e.url}
                for e in f.evidence
            ]
        found = regimen_drugs(catalogue, f.regimen) if catalogue is not None and f.regimen else None
        if found is not None and f.regimen:
            _, drugs = found
            steps = []
            for j, drug in enumerate(drugs):
                local = f"mr-{i}-{j}"
                contained.append(
                    {
                        "resourceType": "MedicationRequest",
                        "id": local,
                        **medication_request(drug, ctx, f.regimen),
                    }
                )
                steps.append({"title": drug.display, "resource": _ref(f"#{local}")})
            action["action"] = steps
        actions.append(action)
    group: JSON = {"resourceType": "RequestGroup"}
    if contained:
        group["contained"] = contained
    group.update(
        {
            "status": "draft",
            "intent": "proposal",
            "subject": _ref(evaluation.patient),
            "authoredOn": evaluation.as_of,
            "action": actions,
        }
    )
    return with_content_id(group)


def _skipped(evaluation: Evaluation) -> JSON:
    return {
        "resourceType": "OperationOutcome",
        "id": "skipped",
        "issue": [
            {
                "severity": "warning",
                "code": "processing",
                "diagnostics": f"{s.resource}: {s.reason}",
            }
            for s in evaluation.skipped
        ],
    }


def to_resources(
    evaluation: Evaluation,
    wording: Wording | None = None,
    get: Getter | None = None,
    catalogue: Catalogue | None = None,
) -> list[JSON]:
    """GuidanceResponse, a DetectedIssue per alert, then the RequestGroup (if any), each validated.

    ``get`` reads the patient's facts (the dates in the words); ``catalogue`` turns a recommended
    regimen into proposed MedicationRequests."""
    wording = wording or Wording()
    issues = {
        id(f): detected_issue(evaluation, f, wording, get) for f in evaluation.findings if f.kind == "alert"
    }
    recommendations = [f for f in evaluation.findings if f.kind == "recommendation"]
    group = request_group(evaluation, recommendations, catalogue) if recommendations else None
    parameters: JSON = {
        "resourceType": "Parameters",
        "id": "findings",
        "parameter": [
            *(
                {"name": "ruleset", "valueCanonical": f"{RULESET_LIBRARY}/{r.name}|{r.version}"}
                for r in evaluation.rulesets
            ),
            *(
                _finding_parameter(
                    f, wording, get, f"DetectedIssue/{issues[id(f)]['id']}" if id(f) in issues else None
                )
                for f in evaluation.findings
            ),
        ],
    }
    contained = [parameters, *([_skipped(evaluation)] if evaluation.skipped else [])]
    guidance: JSON = {
        "resourceType": "GuidanceResponse",
        "contained": contained,
        "requestIdentifier": {"system": EVALUATION_SYSTEM, "value": evaluation_key(evaluation)},
        "moduleCanonical": f"{LIBRARY}|{library_version(evaluation)}",
        "status": "data-required" if any(f.kind == "data-gap" for f in evaluation.findings) else "success",
        "subject": _ref(evaluation.patient),
        "occurrenceDateTime": evaluation.as_of,
    }
    if evaluation.skipped:
        guidance["evaluationMessage"] = [_ref("#skipped")]
    guidance["outputParameters"] = _ref("#findings")
    if group is not None:
        guidance["result"] = _ref(f"RequestGroup/{group['id']}")
    resources = [with_content_id(guidance), *issues.values(), *([group] if group is not None else [])]
    for resource in resources:
        problem = validation_error(resource)
        if problem is not None:
            raise FhirOutputInvalid(f"{resource['resourceType']}/{resource['id']}: {problem}")
    return resources


def transaction_bundle(resources: Iterable[JSON]) -> JSON:
    """A transaction Bundle that stores ``resources`` with PUT (idempotent: ids come from content)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def finding_codes(guidance: JSON) -> list[str]:
    """The finding codes a GuidanceResponse carries, in order (reads back what ``to_resources`` wrote)."""
    reference = guidance["outputParameters"]["reference"].removeprefix("#")
    params = next(c for c in guidance.get("contained", []) if c.get("id") == reference)
    return [
        part["valueCoding"]["code"]
        for p in params.get("parameter", [])
        if p.get("name") == "finding"
        for part in p.get("part", [])
        if part.get("name") == "code"
    ]

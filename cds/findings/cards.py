"""Finding -> CDS Hooks 2.0 card: pure functions, no I/O, so the same findings give the same cards.

A card carries everything a clinician and an integrator need without calling back: the summary
(<= 139 characters, the Inferno limit), an indicator from the finding severity, markdown detail
with the basis facts and evidence, a source naming the ruleset, and under ``extension`` (key
``CARD_EXTENSION``) the finding code and rule id/version so cards can be filtered and audited by
code. Recommendations with a regimen get a "create MedicationRequest" suggestion; order findings
get a "remove this draft" suggestion; alerts get override reasons. Optional elements that would be
empty are omitted (CDS Hooks "no null or empty values").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cds.findings.model import Finding
from cds.findings.wording import Wording, capitalised, clinical_text
from cds.knowledge.catalogue import Catalogue

JSON = dict[str, Any]

CARD_EXTENSION = "org.her2-cds.finding"
FINDING_CODE_SYSTEM = "https://her2-cds.org/fhir/CodeSystem/finding-code"
OVERRIDE_REASON_SYSTEM = "https://her2-cds.org/fhir/CodeSystem/override-reason"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SOURCE_URL = "https://her2-cds.org/rules"
SUMMARY_MAX = 139
_CARD_NAMESPACE = uuid.UUID("6f0c9a4e-2f5b-4d8e-9a51-3c1f1f0d2b7e")

ROUTES = {"iv": "IV", "sc": "SC", "oral": "oral"}
INDICATOR = {"critical": "critical", "warning": "warning", "info": "info"}

# Reasons offered when a clinician dismisses an alert; the feedback report counts them per rule.
OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("benefit-outweighs-risk", "Benefit outweighs the risk for this patient"),
    ("already-addressed", "Already addressed (dose held or reduced, test repeated)"),
    ("data-incorrect", "The data behind this alert is wrong or outdated"),
    ("oncologist-confirmed", "Confirmed with the treating oncologist"),
)


@dataclass(frozen=True)
class Drug:
    """One drug of a regimen, from the catalogue: RxNorm code, name, route and starting dose."""

    display: str
    rxnorm: str | None
    dose: float | None  # the label starting dose (per kg or fixed), None = per protocol
    unit: str = "mg/kg"
    route: str = "IV"
    every_weeks: int = 3


def regimen_drugs(catalogue: Catalogue, regimen: str) -> tuple[str, tuple[Drug, ...]] | None:
    """(display name, drugs) of a catalogue regimen; each drug's code is its ingredient code (else
    the first product code), its dose the first level of a per-kg or fixed-dose schedule."""
    spec = catalogue.regimens.get(regimen)
    if spec is None:
        return None
    drugs: list[Drug] = []
    for key in spec.agents:
        agent = catalogue.agents[key]
        product_codes = [c for p in catalogue.products.values() if p.agents == [key] for c in p.rxnorm]
        code = next(iter(agent.rxnorm or product_codes), None)
        dose = agent.dose
        start: float | None = None
        every = 3
        if dose is not None:
            schedule = next((s for s in dose.schedules if s.every_weeks == 3), None)
            start = (schedule.levels if schedule else dose.levels or dose.all_levels())[0]
        name = agent.name if agent.display == agent.name else f"{agent.display} ({agent.name})"
        drugs.append(Drug(name, code, start, dose.basis if dose else "mg/kg", ROUTES[agent.route], every))
    return spec.display, tuple(drugs)


# Data gaps that name one concrete test: offered as a proposed (draft) ServiceRequest.
GAP_TESTS: Mapping[str, tuple[str, str]] = {
    "gap.her2-unknown": ("85319-2", "HER2 by immunohistochemistry (IHC)"),
    "gap.her2-ihc-score": ("85319-2", "HER2 by immunohistochemistry (IHC)"),
    "gap.her2-ish-required": ("85318-4", "HER2 by in situ hybridization (ISH)"),
    "gap.lvef-overdue": ("10230-1", "Left ventricular ejection fraction (echocardiogram or MUGA)"),
    "gap.weight-missing": ("29463-7", "Body weight"),
}

_ORDER_KILLERS = {
    "order.name-confusion",
    "order.dose-out-of-range",
    "order.dose-reescalation",
    "order.her2-not-positive",
}


@dataclass(frozen=True)
class CardContext:
    """What a card needs besides the finding: who it is for and which draft order is under review."""

    service_id: str
    patient_ref: str
    parameters: Mapping[str, Any]
    draft_order_ref: str | None = None
    ruleset_labels: Mapping[str, str] = field(default_factory=dict)
    # fields of the draft that were not valid FHIR R4 and that no rule reads: checked without them
    ignored_fields: tuple[str, ...] = ()
    wording: Wording = field(default_factory=Wording)
    # the evaluated facts by path (dates of the basis values); None: values without dates
    facts: Callable[[str], Any] | None = None
    catalogue: Catalogue | None = None


def _prune(value: Any) -> Any:
    """Drop None, "", [] and {} recursively (CDS Hooks: optional elements are omitted, not empty)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None and v != "" and v != [] and v != {}}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v is not None and v != "" and v != [] and v != {}]
    return value


def shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    """One line of at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def stable_uuid(*parts: Any) -> str:
    """A UUIDv5 of the parts: the same finding for the same patient and service gets the same id."""
    return str(uuid.uuid5(_CARD_NAMESPACE, orjson.dumps(parts, option=orjson.OPT_SORT_KEYS).decode()))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def detail_markdown(finding: Finding, ctx: CardContext | None = None) -> str:
    """The card detail in clinical words: the explanation, what it is based on (values and dates,
    no resource ids: those are in the extension), the evidence, and the rule that produced it."""
    wording = ctx.wording if ctx is not None else Wording()
    facts = ctx.facts if ctx is not None else None
    lines = [capitalised(clinical_text(finding.detail.strip()))]
    if finding.review_required:
        lines += ["", "**Review required:** verify against the current label before acting."]
    basis = [line for b in finding.basis if (line := wording.basis_line(b, facts))]
    if basis:
        lines += ["", "**Based on**", ""]
        lines += [f"- {_md_escape(line)}" for line in dict.fromkeys(basis)]
    if finding.evidence:
        lines += ["", "**Evidence**", ""]
        for e in finding.evidence:
            lines.append(f"- [{_md_escape(e.label)}]({e.url}): {_md_escape(e.citation)}")
    rule = finding.rule
    lines += [
        "",
        f"Rule `{rule.id}` v{rule.version} ({rule.ruleset}, evidence {rule.evidence_status}); "
        f"finding `{finding.code}`.",
    ]
    return "\n".join(lines).strip()


def medication_request(drug: Drug, ctx: CardContext, regimen: str) -> JSON:
    """A proposed MedicationRequest for one drug of a regimen, with the label starting dose."""
    dose = drug.dose
    timing = {"repeat": {"frequency": 1, "period": drug.every_weeks, "periodUnit": "wk"}}
    if dose is not None:
        text = f"{dose:g} {drug.unit} {drug.route} every {drug.every_weeks} weeks (label starting dose)"
        dosage: JSON = {
            "text": text,
            "timing": timing,
            "doseAndRate": [
                {"doseQuantity": {"value": dose, "unit": drug.unit, "system": UCUM, "code": drug.unit}}
            ],
        }
    else:
        dosage = {"text": f"{drug.display} {drug.route}: dose per protocol (not computed by this service)"}
    resource: JSON = _prune(
        {
            "resourceType": "MedicationRequest",
            "status": "draft",
            "intent": "proposal",
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": drug.rxnorm, "display": drug.display}]
                if drug.rxnorm
                else [],
                "text": drug.display,
            },
            "subject": {"reference": ctx.patient_ref},
            "note": [{"text": f"Proposed by HER2 CDS for regimen {regimen}"}],
            "dosageInstruction": [dosage],
        }
    )
    return resource


def _suggestions(finding: Finding, ctx: CardContext, card_id: str) -> list[JSON]:
    out: list[JSON] = []
    regimen = finding.regimen
    found = (
        regimen_drugs(ctx.catalogue, regimen)
        if finding.kind == "recommendation" and regimen is not None and ctx.catalogue is not None
        else None
    )
    if found is not None and regimen is not None:
        label, drugs = found
        out.append(
            {
                "label": shorten(f"Order {label}", 80),
                "uuid": stable_uuid(card_id, "order", regimen),
                "isRecommended": finding.strength == "preferred",
                "actions": [
                    {
                        "type": "create",
                        "description": f"Create a draft order for {drug.display}",
                        "resource": medication_request(drug, ctx, regimen),
                    }
                    for drug in drugs
                ],
            }
        )
    if finding.code in _ORDER_KILLERS and ctx.draft_order_ref:
        out.append(
            {
                "label": "Remove this draft order",
                "uuid": stable_uuid(card_id, "delete", ctx.draft_order_ref),
                "isRecommended": finding.severity == "critical",
                "actions": [
                    {
                        "type": "delete",
                        "description": f"Remove draft {ctx.draft_order_ref} ({finding.code})",
                        "resourceId": ctx.draft_order_ref,
                    }
                ],
            }
        )
    return out


def gap_test_suggestion(finding: Finding, ctx: CardContext, card_id: str) -> JSON | None:
    """For a data gap that names one test: a suggestion to order it (a proposed ServiceRequest).

    A suggestion, not a systemAction: the clinician chooses whether to order it (systemActions are
    applied without the clinician, so they are only for what needs no choice).
    """
    test = GAP_TESTS.get(finding.code)
    if test is None:
        return None
    loinc, display = test
    return {
        "label": shorten(f"Order {display}", 80),
        "uuid": stable_uuid(card_id, "order-test", loinc),
        "isRecommended": True,
        "actions": [
            {
                "type": "create",
                "description": f"Propose {display}",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "code": {
                        "coding": [{"system": LOINC, "code": loinc, "display": display}],
                        "text": display,
                    },
                    "subject": {"reference": ctx.patient_ref},
                    "reasonCode": [{"coding": [{"system": FINDING_CODE_SYSTEM, "code": finding.code}]}],
                },
            }
        ],
    }


def card_for(finding: Finding, ctx: CardContext) -> JSON:
    """Render one finding as a CDS Hooks 2.0 card (deterministic, pruned of empty elements)."""
    rule = finding.rule
    card_id = stable_uuid(
        ctx.service_id,
        ctx.patient_ref,
        finding.code,
        rule.id,
        rule.version,
        finding.summary,
        [b.model_dump(mode="json") for b in finding.basis],
    )
    suggestions = _suggestions(finding, ctx, card_id)
    test = gap_test_suggestion(finding, ctx, card_id)
    if test is not None:
        suggestions.append(test)
    links = [
        {"label": shorten(e.label, 80), "url": e.url, "type": "absolute"}
        for e in finding.evidence
        if e.url.startswith(("https://", "http://"))
    ]
    label = ctx.ruleset_labels.get(rule.ruleset, f"HER2 CDS: {rule.ruleset} {rule.version}")
    detail = detail_markdown(finding, ctx)
    if ctx.ignored_fields:
        named = ", ".join(f"`{f}`" for f in ctx.ignored_fields)
        detail += f"\n\nIgnored in the draft order (not valid FHIR R4, not read by these checks): {named}."
    card: JSON = {
        "uuid": card_id,
        "summary": shorten(finding.summary),
        "indicator": INDICATOR[finding.severity],
        "detail": detail,
        "source": {
            "label": label,
            "url": finding.evidence[0].url if finding.evidence else SOURCE_URL,
            "topic": {
                "system": FINDING_CODE_SYSTEM,
                "code": finding.code,
                "display": shorten(finding.summary),
            },
        },
        "suggestions": suggestions,
        "selectionBehavior": "at-most-one" if suggestions else None,
        "overrideReasons": (
            [{"system": OVERRIDE_REASON_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS]
            if finding.kind == "alert"
            else None
        ),
        "links": links,
        "extension": {
            CARD_EXTENSION: {
                "codes": [finding.code],
                "kind": finding.kind,
                "severity": finding.severity,
                "strength": finding.strength,
                "regimen": finding.regimen,
                "action": finding.action,
                "reviewRequired": finding.review_required,
                "rules": [
                    {
                        "id": rule.id,
                        "version": rule.version,
                        "ruleset": rule.ruleset,
                        "evidenceStatus": rule.evidence_status,
                    }
                ],
                "draftOrder": ctx.draft_order_ref,
                # the FHIR resources behind each basis fact (ids stay out of the card text)
                "basis": [{"fact": b.fact, "resources": list(b.resources)} for b in finding.basis],
                "ignoredFields": list(ctx.ignored_fields),
            }
        },
    }
    pruned: JSON = _prune(card)  # booleans such as reviewRequired=false are kept
    return pruned


@dataclass(frozen=True)
class Rendered:
    """Cards and system actions for one response, with the findings they came from."""

    cards: list[JSON]
    system_actions: list[JSON]
    codes: list[str]


_STRENGTH_ORDER = {"preferred": 0, "alternative": 1, "consider": 2, None: 3}


def card_order(finding: Finding) -> tuple[int, int, int, str, str]:
    """Cards: severity first, then kind, then preferred before alternative, then code."""
    severity, kind, code, rule = finding.sort_key()
    return (severity, kind, _STRENGTH_ORDER.get(finding.strength, 3), code, rule)


def render(groups: Iterable[tuple[Sequence[Finding], CardContext]]) -> Rendered:
    """Cards for several evaluations (one per draft order), de-duplicated by card uuid.

    A patient-level finding seen in two evaluations yields one card: its uuid does not depend on
    the draft order, while order findings carry the draft in their basis and stay distinct.
    """
    cards: list[JSON] = []
    seen: set[str] = set()
    ordered: list[tuple[Finding, CardContext]] = [(f, ctx) for findings, ctx in groups for f in findings]
    ordered.sort(key=lambda pair: card_order(pair[0]))
    for finding, ctx in ordered:
        card = card_for(finding, ctx)
        if card["uuid"] in seen:
            continue
        seen.add(card["uuid"])
        cards.append(card)
    codes = [c["extension"][CARD_EXTENSION]["codes"][0] for c in cards]
    return Rendered(cards=cards, system_actions=[], codes=codes)

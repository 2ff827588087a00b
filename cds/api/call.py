"""One service call from body to cards: parse, plan (per hook), gather data, evaluate, render.

Errors are raised as ``cds.errors`` classes; ``cds.api.handlers`` turns them into answers.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import orjson
from pydantic import ValidationError

from cds import config
from cds.api import notices, strictjson, wire
from cds.api.audit import CallRecord, issued_cards
from cds.api.fhir import FhirAccess, is_outcome
from cds.api.hooks import HOOKS, Hook, Plan
from cds.api.hooks.orders import draft_ref
from cds.api.prefetched import Prefetched, PrefetchMemo
from cds.api.runtime import Runtime
from cds.api.services import PATIENT_KEY, PREFETCH_DATA, Service
from cds.api.store import stamp
from cds.engine.runtime import getter
from cds.errors import BadPrefetch, DataUnavailable, InputRejected, NotJson, RequestRejected, WrongHook
from cds.fhir.parse import DRAFT_ORIGIN
from cds.fhir.source import RawPatient, raw_patient_from_resources
from cds.findings.cards import CARD_EXTENSION, CardContext, Rendered, render
from cds.findings.model import Finding
from cds.record_memo import content_key, with_order

JSON = dict[str, Any]
log = logging.getLogger("cds.api")


def parse_json(body: bytes) -> JSON:
    """The request body as a JSON object (400 otherwise)."""
    return _parse_json(body, None)[0]


def _parse_json(body: bytes, member: str | None) -> tuple[JSON, bytes | None]:
    try:
        value, text = strictjson.loads_with(body, member)
    except orjson.JSONDecodeError as exc:
        raise NotJson("request body is not JSON") from exc
    if not isinstance(value, dict):
        raise RequestRejected("request body must be a JSON object")
    return value, text


def read_request(
    body: bytes, service: Service, call: CallRecord, kept: PrefetchMemo | None = None
) -> tuple[wire.HookRequest, Hook, bytes | None]:
    """Validate the CDS Hooks request for ``service`` and plan it with the hook's handler; also
    orjson's text of ``request.prefetch``, when the duplicate-key check wrote it (else None).
    A prefetch ``kept`` whose text the request holds is not read again (cds/api/prefetched.py)."""
    recognised = kept.recognise(body) if kept is not None else None
    text: bytes | None
    if recognised is not None:
        text, value = recognised
    else:
        value, text = _parse_json(body, "prefetch")
    try:
        request = wire.HookRequest.model_validate(value)
    except ValidationError as exc:
        raise RequestRejected(wire.describe(exc)) from exc
    call.hook, call.hook_instance = request.hook, request.hookInstance
    hook = HOOKS.get(request.hook)
    if request.hook not in service.hooks or hook is None:
        raise WrongHook(f"service {service.id} answers {', '.join(service.hooks)}, not {request.hook}")
    return request, hook, text if _same_members(request.prefetch, value.get("prefetch")) else None


def _same_members(validated: dict[str, Any] | None, decoded: Any) -> bool:
    """Whether validation kept the decoded prefetch as it was (the same keys in the same order,
    the very same values), so the text written for one is the text of the other."""
    if validated is None or not isinstance(decoded, dict) or list(validated) != list(decoded):
        return False
    return all(validated[key] is item for key, item in decoded.items())


def _dedupe(resources: list[JSON]) -> list[JSON]:
    seen: set[tuple[str, str]] = set()
    out: list[JSON] = []
    for resource in resources:
        rid = resource.get("id")
        if isinstance(rid, str):
            key = (str(resource["resourceType"]), rid)
            if key in seen:
                continue
            seen.add(key)
        out.append(resource)
    return out


def _order_relevant(result_facts: Any) -> bool:
    order = result_facts.order
    return bool(order.present and (order.her2_directed or order.agent not in (None, "other")))


@dataclass(frozen=True)
class Gathered:
    """A call's patient data: the resources, and either what the same prefetch came to before
    (``kept``) or, when they came from the prefetch alone, its text to keep them by."""

    patient: JSON
    resources: list[JSON]
    text: bytes | None = None
    kept: Prefetched | None = None
    prefetch: JSON | None = None  # the decoded prefetch (kept with the rest)


def _check_patient(patient: JSON, patient_id: str) -> None:
    if patient.get("resourceType") != "Patient" or patient.get("id") != patient_id:
        raise BadPrefetch("the patient data is not the Patient of context.patientId")


def _prefetch_text(prefetch: dict[str, Any] | None) -> bytes | None:
    if prefetch is None:
        return None
    try:
        return orjson.dumps(prefetch)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: not kept
        return None


async def gather(
    rt: Runtime,
    request: wire.HookRequest,
    patient_id: str,
    issuer: str | None,
    prefetch_text: bytes | None = None,
) -> Gathered:
    """The patient's resources: prefetch first, the client's FHIR server for the rest (412 if neither);
    a prefetch seen before is not gathered again (cds/api/prefetched.py). ``prefetch_text``:
    ``orjson.dumps(request.prefetch)`` if the caller has it (``read_request``)."""
    text = prefetch_text if prefetch_text is not None else _prefetch_text(request.prefetch)
    kept = rt.prefetched.get(text) if text is not None else None
    if kept is not None:
        _check_patient(kept.patient, patient_id)
        return Gathered(kept.patient, kept.resources, text, kept, kept.prefetch)
    access = FhirAccess(
        request.fhirServer,
        request.fhirAuthorization.access_token if request.fhirAuthorization else None,
        issuer,
    )
    assert rt.fetcher is not None
    prefetch = request.prefetch or {}
    fetched = [k for k in rt.templates if k not in prefetch or is_outcome(prefetch[k])]
    try:
        data, alone = await rt.fetcher.gather_noting_source(
            rt.templates, request.prefetch, patient_id, access
        )
    except DataUnavailable:
        if fetched:
            rt.metrics.fhir_fallback.labels("failed").inc()
        raise
    if fetched:
        rt.metrics.fhir_fallback.labels("ok").inc()
    patient = data[PATIENT_KEY][0]
    _check_patient(patient, patient_id)
    # the templates' resources, then the Medications read for their medicationReference
    resources = _dedupe(
        [r for key in [*rt.templates, *(k for k in data if k not in rt.templates)] for r in data[key]]
    )
    return Gathered(patient, resources, text if alone else None, prefetch=request.prefetch)


def _raw_patient(rt: Runtime, gathered: Gathered, hook_instance: str) -> tuple[RawPatient, bytes | None]:
    """The raw patient (origin: this call) and ``content_key(raw, None)``; kept by prefetch text
    when the data came from the prefetch alone."""
    origin = f"hook {hook_instance}"
    if gathered.kept is not None:
        return dataclasses.replace(gathered.kept.raw, origin=origin), gathered.kept.content
    raw = raw_patient_from_resources(gathered.resources, origin)
    content = content_key(raw, None) if rt.evaluator.records is not None else None
    if gathered.text is not None and content is not None and gathered.prefetch is not None:
        kept = Prefetched(gathered.prefetch, gathered.patient, gathered.resources, raw, content)
        rt.prefetched.put(gathered.text, kept)
    return raw, content


def evaluate(rt: Runtime, service: Service, plan: Plan, gathered: Gathered, hook_instance: str) -> Rendered:
    """Run the engine (once, or once per draft order) and render the cards; called in a worker thread."""
    as_of = rt.as_of or config.now()
    raw, content = _raw_patient(rt, gathered, hook_instance)
    groups: list[tuple[list[Finding], CardContext]] = []
    if plan.drafts is None:
        result = rt.evaluator.evaluate(raw, as_of=as_of, content=content)
        base = CardContext(
            service.id,
            raw.patient_ref,
            rt.parameters,
            None,
            rt.ruleset_labels,
            wording=rt.wording,
            facts=getter(result.facts),
            catalogue=rt.library.catalogue,
        )
        groups.append((result.evaluation.findings, base))
    unreadable = [notices.order_unreadable(service.id, raw.patient_ref, ref, ()) for ref in plan.unreadable]
    for draft in plan.drafts or ():
        ref = draft_ref(draft)
        try:
            key = with_order(content, draft) if content is not None else None
            result = rt.evaluator.evaluate(raw, as_of=as_of, order=draft, content=key)
        except InputRejected as exc:
            if exc.origin != DRAFT_ORIGIN:
                raise
            unreadable.append(notices.order_unreadable(service.id, raw.patient_ref, ref, ()))
            continue
        if _order_relevant(result.facts):
            ignored = plan.ignored.get(ref, ())
            ctx = CardContext(
                service.id,
                raw.patient_ref,
                rt.parameters,
                ref,
                rt.ruleset_labels,
                ignored,
                wording=rt.wording,
                facts=getter(result.facts),
                catalogue=rt.library.catalogue,
            )
            groups.append((result.evaluation.findings, ctx))
    return with_notices(render(groups), unreadable)


def with_notices(rendered: Rendered, cards: list[JSON]) -> Rendered:
    """The service's own warning cards first, then the rules' cards."""
    if not cards:
        return rendered
    codes = [c["extension"][CARD_EXTENSION]["codes"][0] for c in cards]
    return Rendered(cards + rendered.cards, rendered.system_actions, codes + rendered.codes)


INFO_KIND = "info"


def _keep(rendered: Rendered, cards: list[JSON]) -> Rendered:
    codes = [c["extension"][CARD_EXTENSION]["codes"][0] for c in cards]
    return Rendered(cards, rendered.system_actions, codes)


def against_fatigue(rt: Runtime, service: Service, hook: str, rendered: Rendered) -> Rendered:
    """Hold back what the clinician need not see again (reads the database: call it in a worker thread).

    patient-view fires on every chart open: unless the service is configured for info cards, only
    actionable cards are shown. A card overridden with a coded reason stays quiet for the same
    patient, rule version and basis values (its uuid encodes them) for ``override_quiet_days``,
    unless its severity rose; quieted cards are counted (metrics, feedback report).
    """
    cards = rendered.cards
    if hook == "patient-view" and service.id not in rt.settings.info_cards:
        cards = [c for c in cards if c["extension"][CARD_EXTENSION]["kind"] != INFO_KIND]
    if rt.settings.override_quiet_days > 0 and cards:
        issued = issued_cards(cards)
        now = stamp(rt.clock())
        quiet = rt.store.quieted(service.id, issued, now)
        if quiet:
            held = [c for c in issued if c.uuid in quiet]
            rt.store.count_suppressed(service.id, held)
            for c in held:
                rt.metrics.suppressed.labels(service.id, c.code).inc()
            cards = [c for c in cards if c["uuid"] not in quiet]
    return rendered if cards is rendered.cards else _keep(rendered, cards)


async def answer(rt: Runtime, service: Service, body: bytes, call: CallRecord) -> Rendered:
    """The cards for one CDS Hooks call."""
    request, hook, prefetch_text = read_request(body, service, call, rt.prefetched)
    plan = hook.read(request.context, rt.library)
    call.patient_id = plan.patient_id
    log.debug("call %s %s patient %s", service.id, request.hookInstance, plan.patient_id)
    if plan.nothing_to_check:
        return Rendered([], [], [])
    patient_ref = f"Patient/{plan.patient_id}"
    if not plan.drafts and plan.unreadable:  # nothing checkable: no need for the patient's data
        cards = [notices.order_unreadable(service.id, patient_ref, ref, ()) for ref in plan.unreadable]
        return with_notices(Rendered([], [], []), cards)
    try:
        gathered = await gather(rt, request, plan.patient_id, call.issuer, prefetch_text)
    except DataUnavailable as exc:
        if service.id not in rt.settings.warn_on_missing_data:
            raise
        which = PREFETCH_DATA.get(exc.origin or "", "the patient's record")
        return with_notices(Rendered([], [], []), [notices.data_unavailable(service.id, patient_ref, which)])

    def checked() -> Rendered:  # one worker thread for the evaluation and the quieting read
        rendered = evaluate(rt, service, plan, gathered, request.hookInstance)
        return against_fatigue(rt, service, request.hook, rendered)

    return await anyio.to_thread.run_sync(checked)

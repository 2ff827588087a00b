"""One record per service call, filled as the call proceeds and written once, whatever the outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from cds.api.runtime import Runtime
from cds.api.store import IssuedCard
from cds.findings.cards import CARD_EXTENSION, Rendered

JSON = dict[str, Any]
log = logging.getLogger("cds.api")


@dataclass
class CallRecord:
    """What the audit row and metrics of one request need, learnt as the request is read."""

    endpoint: str  # "service" or "feedback"
    service_id: str
    known_service: bool = False
    started: float = field(default_factory=time.perf_counter)
    hook: str | None = None
    hook_instance: str | None = None
    patient_id: str | None = None
    issuer: str | None = None


def issued_cards(cards: list[JSON]) -> list[IssuedCard]:
    """What the store remembers of each card: uuid, finding code, rule id and version, severity."""
    out = []
    for c in cards:
        ext = c["extension"][CARD_EXTENSION]
        out.append(
            IssuedCard(
                c["uuid"], ext["codes"][0], ext["rules"][0]["id"], ext["rules"][0]["version"], ext["severity"]
            )
        )
    return out


async def finish(
    rt: Runtime, call: CallRecord, status: int, rendered: Rendered | None, reason: str | None
) -> None:
    """Count the request, log one line (no patient id) and, for service calls, write the audit row."""
    service = call.service_id if call.known_service else "unknown"
    if call.endpoint == "feedback":
        rt.metrics.requests.labels("feedback", service, "", str(status)).inc()
        return
    latency = (time.perf_counter() - call.started) * 1000
    issued = issued_cards(rendered.cards if rendered else [])
    rt.metrics.requests.labels("service", service, call.hook or "", str(status)).inc()
    if status == 200:
        rt.metrics.latency.labels(call.service_id, call.hook or "").observe(latency / 1000)
        for code in rendered.codes if rendered else []:
            rt.metrics.findings.labels(code).inc()
    log.info(
        "service=%s hook=%s hookInstance=%s status=%d cards=%d latency_ms=%.1f",
        call.service_id,
        call.hook,
        call.hook_instance,
        status,
        len(issued),
        latency,
    )
    if not call.known_service:
        return
    await anyio.to_thread.run_sync(
        lambda: rt.store.record_call(
            service=call.service_id,
            hook=call.hook,
            hook_instance=call.hook_instance,
            status=status,
            patient_id=call.patient_id,
            rulesets=rt.rulesets,
            codes=rendered.codes if rendered else [],
            cards=issued,
            latency_ms=latency,
            issuer=call.issuer,
            reason=reason,
        )
    )

"""order-select: the clinician selected new orders; check the selected MedicationRequests."""

from __future__ import annotations

from cds.api import wire
from cds.api.hooks import Hook, Plan, register
from cds.api.hooks.orders import medication_drafts, plan_drafts
from cds.engine.library import RuleLibrary


def _plan(context: wire.OrderSelectContext, library: RuleLibrary) -> Plan:
    chosen = set(context.selections)
    drafts = medication_drafts(context.draftOrders.resources(), context.patientId)
    selected = [d for d in drafts if f"MedicationRequest/{d.get('id')}" in chosen]
    return plan_drafts(selected, context.patientId, library)


HOOK = register(Hook("order-select", wire.OrderSelectContext, _plan))

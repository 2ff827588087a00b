"""order-sign: the clinician is about to sign; check every draft MedicationRequest."""

from __future__ import annotations

from cds.api import wire
from cds.api.hooks import Hook, Plan, register
from cds.api.hooks.orders import medication_drafts, plan_drafts
from cds.engine.library import RuleLibrary


def _plan(context: wire.OrderSignContext, library: RuleLibrary) -> Plan:
    drafts = medication_drafts(context.draftOrders.resources(), context.patientId)
    return plan_drafts(drafts, context.patientId, library)


HOOK = register(Hook("order-sign", wire.OrderSignContext, _plan))

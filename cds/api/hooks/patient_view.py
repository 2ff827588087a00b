"""patient-view: the patient's record was opened; evaluate the patient alone."""

from __future__ import annotations

from cds.api import wire
from cds.api.hooks import Hook, Plan, register
from cds.engine.library import RuleLibrary


def _plan(context: wire.PatientViewContext, _library: RuleLibrary) -> Plan:
    return Plan(patient_id=context.patientId)


HOOK = register(Hook("patient-view", wire.PatientViewContext, _plan))

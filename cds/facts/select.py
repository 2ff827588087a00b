"""Which records the facts read: the ones fhir.resources must validate before they are used.

A long on-treatment chart holds hundreds of laboratory results, but the facts read few of them:
the latest result of each analyte, every platelet count since the last dose (of the drugs whose
count a rule reads, see ``Reads``), the body weight closest to each dose and the latest one, the
temperatures near the latest ANC. Everything else is read whole: every medication, condition,
procedure and allergy, every LVEF (latest, baseline window, drop), every HER2, hormone-receptor,
staging, disease-status and pregnancy result, and every result whose unit could not be used (the
unit gap lists them all).

The list holds every record a finding can depend on, so a record not in it can be removed without
changing a finding (nor a fact, except the platelet count since the last dose of a drug no rule
reads); cds/fhir/settle.py validates the listed ones and screens the rest.
tests/core/test_validation_modes.py holds both modes to the same findings and facts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from cds.facts.params import Params
from cds.fhir.records import ObservationRecord, PatientRecord

# result kinds of which only some records are read; every other kind is read whole
HISTORY_KINDS = ("platelets", "anc", "ast", "alt", "bilirubin", "weight", "temperature")
PLATELETS_SINCE_DOSE = "labs.platelets_min_since_last_dose"  # keyed by agent


@dataclass(frozen=True)
class Reads:
    """Which agent-keyed facts the loaded rules read (None: every agent). The lowest platelet
    count since the last dose exists for every agent ever given, but only the agents whose count
    a rule reads (T-DM1 today) can change a finding, so only their platelet counts since the last
    dose need validating; the fact of the other agents is still derived, from screened records."""

    platelets_since_dose: frozenset[str] | None = None


def _latest(observations: list[ObservationRecord]) -> list[ObservationRecord]:
    """The latest result (and any other with the same date and resource id)."""
    top = max((o.when.instant, o.ref) for o in observations)
    return [o for o in observations if (o.when.instant, o.ref) == top]


def needed(
    record: PatientRecord, last_dose: dict[str, date], params: Params, reads: Reads | None = None
) -> Iterator[object]:
    """The records of ``record`` (already restricted to as-of) that the facts and findings read."""
    yield from record.conditions
    yield from record.procedures
    yield from record.allergies
    yield from record.medications
    history: dict[str, list[ObservationRecord]] = {kind: [] for kind in HISTORY_KINDS}
    for obs in record.observations:
        mine = history.get(obs.kind)
        if mine is None:
            yield obs
        else:
            mine.append(obs)
            if obs.unit_problem:
                yield obs
    for observations in history.values():
        if observations:
            yield from _latest(observations)
    agents = reads.platelets_since_dose if reads is not None else None
    doses = [day for agent, day in last_dose.items() if agents is None or agent in agents]
    if doses:  # labs.platelets_min_since_last_dose of the agents read
        since = min(doses)
        yield from (o for o in history["platelets"] if o.value is not None and o.when.day > since)
    if history["anc"] and history["temperature"]:  # labs.temperature_c_near_anc
        anc = _latest(history["anc"])[0].when.day
        days = params.days("febrile_pairing_days")
        yield from (o for o in history["temperature"] if abs((o.when.day - anc).days) <= days)
    weights = [w for w in history["weight"] if w.value is not None]
    if weights:  # the dose level reads the weight closest to a dose (therapy._weight_at)
        for day in {m.start.day for m in record.medications if m.start is not None}:
            closest = min((abs((w.when.day - day).days), w.ref) for w in weights)
            yield from (w for w in weights if (abs((w.when.day - day).days), w.ref) == closest)

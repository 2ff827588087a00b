"""Select, then validate: which resources fhir.resources validates, and what an invalid one undoes.

With ``validate="selected"`` (the default) the parser reads every resource of interest into its
record exactly as it would after a successful validation, and remembers, per resource, what that
reading added (its record, or its ``skipped`` line: another patient's data, no date, an unusable
number). Nothing is validated yet. Then, per evaluation (cds/facts/build.py):

1. the facts are derived from all records; cds/facts/select.py names the records the facts and
   findings read (the latest result per analyte, every platelet count since the last dose of a
   drug whose count a rule reads, every LVEF, medication, condition, procedure, allergy, HER2 and
   staging result...);
2. each named record whose resource is not yet validated is validated with fhir.resources;
3. every other resource is examined by the cheap screen (cds/fhir/screen.py); one the screen
   cannot prove valid is validated with fhir.resources too;
4. an invalid resource undoes what its reading added and is listed in ``skipped`` with the
   validator's reason, and, when its raw content names data the rules use, in
   ``gap.unreadable-data``, exactly as with ``validate="all"``; the facts are then derived again
   (selection re-runs on the remaining records).

So ``skipped`` lists every resource of interest that was examined and found unusable, the same
list as validating everything: a resource the screen passes is valid. Verdicts are kept on the
record, so evaluating it again (another as-of) only validates newly selected resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cds.fhir.records import PatientRecord, Skipped
from cds.fhir.screen import proven_valid

UNCHECKED, SCREENED, VALID, INVALID = range(4)
# verdicts of remembered contents (Pending.key): screened or valid; an invalid one is validated
# again (its verdict is remembered too) so that its outcome is applied in every evaluation
KNOWN_MAX = 100_000
_KNOWN: dict[bytes, int] = {}


def forget() -> None:
    """Forget remembered verdicts (benchmarks)."""
    _KNOWN.clear()


def _remember(pending: Pending) -> None:
    if pending.key is not None:
        if len(_KNOWN) >= KNOWN_MAX:
            _KNOWN.clear()
        _KNOWN[pending.key] = pending.state


class Pending:
    """One resource read without validation, and what its reading added to the record."""

    __slots__ = ("foreign", "key", "record", "ref", "resource", "skipped", "state", "unreadable")

    def __init__(
        self,
        resource: dict[str, Any],
        ref: str,
        record: tuple[str, object] | None = None,
        skipped: list[Skipped] | None = None,
        foreign: list[str] | None = None,
        unreadable: list[tuple[str, list[str]]] | None = None,
    ) -> None:
        self.resource = resource
        self.ref = ref
        self.record = record  # (record list name, the record it added), if any
        self.skipped = skipped or ()
        self.foreign = foreign or ()
        self.unreadable = unreadable or ()
        self.key: bytes | None = None  # its content key when verdicts are remembered
        self.state = UNCHECKED


@dataclass(eq=False)
class Settlement:
    """The pending resources of one parsed patient and how to judge them."""

    pendings: list[Pending]
    validate: Callable[[dict[str, Any]], str | None]  # fhir.resources: the first error, or None
    relevance: Callable[[Any], list[str]]  # what data the rules use a raw record names
    by_record: dict[int, Pending] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_record = {id(p.record[1]): p for p in self.pendings if p.record is not None}
        for pending in self.pendings:  # a content seen before: screened or valid already
            if pending.key is not None:
                pending.state = _KNOWN.get(pending.key, UNCHECKED)

    def settle(self, record: PatientRecord, selected: Iterable[object]) -> bool:
        """Validate the selected records' resources, screen the rest; True if any was invalid
        (the record changed: derive the facts and select again)."""
        changed = False
        for obj in selected:
            pending = self.by_record.get(id(obj))
            if pending is not None and pending.state < VALID:
                changed |= self._validate(record, pending)
        for pending in self.pendings:
            if pending.state == UNCHECKED:
                if proven_valid(pending.resource):
                    pending.state = SCREENED
                    _remember(pending)
                else:
                    changed |= self._validate(record, pending)
        return changed

    def _validate(self, record: PatientRecord, pending: Pending) -> bool:
        error = self.validate(pending.resource)
        if error is None:
            pending.state = VALID
            _remember(pending)
            return False
        pending.state = INVALID
        if pending.record is not None:
            name, obj = pending.record
            setattr(record, name, [r for r in getattr(record, name) if r is not obj])
        if pending.skipped:
            undo = {id(s) for s in pending.skipped}
            record.skipped[:] = [s for s in record.skipped if id(s) not in undo]
        for ref in pending.foreign:
            record.other_patient.remove(ref)
        for entry in pending.unreadable:
            record.unreadable.remove(entry)
        record.skipped.append(Skipped(pending.ref, error))
        names = self.relevance(pending.resource)
        if names:
            record.unreadable.append((pending.ref, names))
        return True

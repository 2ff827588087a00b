"""One error tree, one table: every error code maps to an HTTP status, a CLI exit code and a cohort kind."""

from __future__ import annotations

import importlib
import pkgutil

import cds
from cds import errors
from cds.errors import OUTCOMES, CdsError, Outcome

PINNED: dict[str, tuple[int, int, str]] = {
    "cds-error": (500, 1, "evaluation-failed"),
    "input-rejected": (400, 2, "rejected-patient"),
    "bad-request": (400, 2, "rejected-patient"),
    "bad-json": (400, 2, "rejected-patient"),
    "bad-context": (400, 2, "rejected-patient"),
    "wrong-hook": (400, 2, "rejected-patient"),
    "bad-prefetch": (400, 2, "rejected-patient"),
    "unknown-card": (400, 2, "rejected-patient"),
    "unauthorized": (401, 2, "rejected-patient"),
    "unknown-service": (404, 2, "rejected-patient"),
    "payload-too-large": (413, 2, "rejected-patient"),
    "data-unavailable": (412, 2, "rejected-patient"),
    "rule-definition": (500, 2, "evaluation-failed"),
    "rule-condition": (500, 2, "evaluation-failed"),
    "analysis-too-complex": (500, 2, "evaluation-failed"),
    "unit-unrecognized": (400, 2, "rejected-patient"),
    "evaluation-failed": (500, 1, "evaluation-failed"),
    "configuration": (500, 2, "evaluation-failed"),
    "cohort": (500, 2, "evaluation-failed"),
    "input-file": (400, 1, "input-file"),
    "damaged-file": (400, 1, "damaged-file"),
    "bad-manifest": (400, 1, "bad-manifest"),
    "export-error": (400, 1, "export-error"),
    "fhir-output-invalid": (500, 1, "evaluation-failed"),
    "edit-rejected": (400, 2, "rejected-patient"),
    "edit-conflict": (409, 2, "rejected-patient"),
    "forbidden": (403, 2, "rejected-patient"),
    "interrupted": (503, 130, "evaluation-failed"),
}


def _all_subclasses(root: type[CdsError]) -> set[type[CdsError]]:
    out: set[type[CdsError]] = set()
    for sub in root.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


def test_the_error_table_is_pinned() -> None:
    assert {code: (o.http_status, o.exit_code, o.cohort_kind) for code, o in OUTCOMES.items()} == PINNED


def _modules() -> list[pkgutil.ModuleInfo]:
    """Every module of the package, except Alembic's migration scripts (they run only inside Alembic)."""
    modules = pkgutil.walk_packages(cds.__path__, "cds.")
    return [m for m in modules if not m.name.startswith("cds.api.migrations")]


def test_every_exception_class_of_the_package_is_in_the_tree_and_the_table() -> None:
    for module in _modules():
        importlib.import_module(module.name)
    classes = _all_subclasses(CdsError) | {CdsError}
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), "two error classes share a code"
    assert set(codes) == set(OUTCOMES)
    for module in _modules():
        mod = importlib.import_module(module.name)
        for value in vars(mod).values():
            defined_here = isinstance(value, type) and value.__module__ == mod.__name__
            # a private class (cds.fhir.validate._Plain) is control flow caught inside its own
            # module, never an error a caller sees
            private = isinstance(value, type) and value.__name__.startswith("_")
            if defined_here and not private and issubclass(value, BaseException) and mod is not errors:
                raise AssertionError(f"{mod.__name__}.{value.__name__} is defined outside cds.errors")
    assert all(c.__module__ == errors.__name__ for c in classes)


def test_reason_is_the_message_without_its_origin() -> None:
    error = errors.InputRejected("no Patient resource", origin="hook 1234")
    assert str(error) == "hook 1234: no Patient resource"
    assert error.reason == "no Patient resource"
    assert errors.outcome_of(error) == Outcome(400, 2, "rejected-patient")

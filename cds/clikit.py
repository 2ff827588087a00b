"""What every command-line surface shares: one-line errors on stderr and loading rules or exiting.

Exit code 2 means bad input or invalid rules; each problem is one unwrapped line starting with
``error:`` (never a traceback).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console

from cds.engine.library import RuleLibrary, load_library
from cds.errors import ConfigurationError, RuleDefinitionError

err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``error:`` line and return the Exit to raise."""
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def rule_errors(exc: RuleDefinitionError) -> typer.Exit:
    """Print every diagnostic of invalid rules (file:line, rule, field) and return Exit(2)."""
    for diag in exc.diagnostics:
        err.print(f"error: {diag}", markup=False)
    return typer.Exit(2)


def load_rules_or_exit(directory: Path, statuses: Iterable[str]) -> RuleLibrary:
    """Load a rules directory; on invalid rules print every diagnostic and exit 2."""
    try:
        return load_library(directory, statuses=statuses)
    except RuleDefinitionError as exc:
        raise rule_errors(exc) from exc
    except ConfigurationError as exc:
        raise fail(str(exc)) from exc

"""What every command-line surface shares: one-line errors, the ``--format`` and ``--rules``
conventions, and loading rules or exiting.

Exit code 2 means bad input or invalid rules; each problem is one unwrapped line starting with
``error:`` (never a traceback).

The ``--format``/``-f`` convention: commands that print a report offer ``text`` (for people, the
default) and ``json`` (for programs), then their own extras (``markdown``, ``html``, ``fhir``...);
commands that write files name the file format instead (``cds cohort run``: parquet or csv, or
fhir for FHIR R4 NDJSON next to parquet tables).

Cheap to import (typer, rich and ``cds.config`` only): ``cds --help`` loads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from cds import config

if TYPE_CHECKING:
    from cds.engine.library import RuleLibrary
    from cds.errors import RuleDefinitionError

err = Console(stderr=True, highlight=False, soft_wrap=True)

RulesOpt = Annotated[Path | None, typer.Option("--rules", help=config.RULES_HELP, show_default=False)]
EditableRulesOpt = Annotated[
    Path | None, typer.Option("--rules", help=config.EDITABLE_RULES_HELP, show_default=False)
]
RulesArg = Annotated[Path | None, typer.Argument(help=config.RULES_HELP, show_default=False)]
DraftsOpt = Annotated[
    bool,
    typer.Option("--include-drafts", help="Also load draft and in-review rule sets (never in production)."),
]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help=config.AS_OF_HELP, show_default=False)]
VALIDATE_CHOICES = ("selected", "all")  # cds.fhir.parse.VALIDATE_MODES, without importing the engine


def _validate_mode(value: str) -> str:
    if value not in VALIDATE_CHOICES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(VALIDATE_CHOICES)}")
    return value


ValidateOpt = Annotated[
    str,
    typer.Option(
        "--validate",
        metavar="[selected|all]",
        callback=_validate_mode,
        help="Which resources fhir.resources validates: the records the findings read, every other one "
        "screened and validated when in doubt (selected), or every resource of interest (all). "
        "Both give the same findings and skipped list; all is slower on long histories.",
    ),
]


def format_option(*choices: str, help: str | None = None) -> Any:
    """The one ``--format``/``-f`` option: one of ``choices``, the first being the default.

    Shown as ``-f, --format [text|json]``; any other value is a usage error (exit 2).
    """
    text = help or (
        "Output: text (for people) or json (for programs)"
        + (f"; also {', '.join(choices[2:])}." if choices[2:] else ".")
        if choices[:2] == ("text", "json")
        else f"Output: {', '.join(choices[:-1])} or {choices[-1]}."
    )

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return typer.Option("--format", "-f", metavar=f"[{'|'.join(choices)}]", callback=check, help=text)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``error:`` line and return the Exit to raise."""
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def rule_errors(exc: RuleDefinitionError) -> typer.Exit:
    """Print every diagnostic of invalid rules (file:line, rule, field) and return Exit(2)."""
    for diag in exc.diagnostics:
        err.print(f"error: {diag}", markup=False)
    return typer.Exit(2)


def load_rules_or_exit(directory: Path | None, statuses: Iterable[str]) -> RuleLibrary:
    """Load a rules directory (None: the configured default); on invalid rules print every
    diagnostic and exit 2."""
    from cds.engine.library import load_library
    from cds.errors import ConfigurationError, RuleDefinitionError

    try:
        return load_library(config.rules_dir(directory), statuses=statuses)
    except RuleDefinitionError as exc:
        raise rule_errors(exc) from exc
    except ConfigurationError as exc:
        raise fail(str(exc)) from exc


def as_of_or_exit(text: str | None) -> datetime:
    """The surface's as-of instant (``cds.config.as_of``); a bad value exits 2 with one line."""
    try:
        return config.as_of(text)
    except ValueError as exc:
        raise fail(str(exc)) from exc

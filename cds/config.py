"""Shared configuration, read in one place by every surface (CLI, CDS Hooks service, workbench, cohort).

- Rules directory: an explicit ``--rules``, else ``$CDS_RULES_DIR``, else the rules bundled with
  the package (``cds/bundled_rules`` in a wheel; the repository's top-level ``rules/``, the one
  editable source, in a checkout).
- Rule statuses: production loads only approved rule sets; authoring tools load every working one.
- Database (CDS Hooks feedback and audit): ``--database-url``, else ``$CDS_DATABASE_URL``, else a
  SQLite file in the user data directory (``$CDS_DATA_DIR``, else the platform's, e.g.
  ``~/.local/share/her2-cds`` on Linux), never the current directory.
- As-of policy: ``--as-of`` is a date (the end of that day, UTC) or an ISO instant; without it a
  surface evaluates as of now, in whole seconds. Only surfaces read the clock; the core is handed
  the instant.

Cheap to import (no engine, web or database modules): the command line imports it for ``--help``.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

RULES_ENV = "CDS_RULES_DIR"
DATABASE_ENV = "CDS_DATABASE_URL"
DATA_DIR_ENV = "CDS_DATA_DIR"
APP_NAME = "her2-cds"
DATABASE_FILE = "cds-hooks.sqlite3"

PRODUCTION_STATUSES = frozenset({"approved"})
WORKING_STATUSES = frozenset({"draft", "in-review", "approved"})

RULES_HELP = f"Rules directory (default: ${RULES_ENV}, else the bundled rules)."
AS_OF_HELP = "Evaluate as of this date (YYYY-MM-DD: end of that day, UTC) or ISO instant; default now."
DATABASE_HELP = (
    "SQLAlchemy URL for feedback and audit: sqlite:///FILE or postgresql+psycopg://... "
    f"(default: ${DATABASE_ENV}, else {DATABASE_FILE} in the user data directory; "
    f"${DATA_DIR_ENV} moves that directory)."
)


def statuses(include_drafts: bool) -> frozenset[str]:
    """Which rule-set statuses load: approved only, or every working status for authoring."""
    return WORKING_STATUSES if include_drafts else PRODUCTION_STATUSES


def bundled_rules_dir() -> Path:
    """The rules shipped with the package (wheel), else the checkout's top-level ``rules/``."""
    shipped = resources.files("cds") / "bundled_rules"
    if isinstance(shipped, Path) and shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent / "rules"


def rules_dir(explicit: Path | None = None) -> Path:
    """The rules directory every command uses: ``--rules``, else ``$CDS_RULES_DIR``, else bundled."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(RULES_ENV)
    return Path(from_env) if from_env else bundled_rules_dir()


EDITABLE_RULES_HELP = (
    f"Rules directory to edit (default: ${RULES_ENV}, else ./rules; the bundled rules are never written)."
)


def editable_rules_dir(explicit: Path | None = None) -> Path:
    """The rules directory a command that WRITES rule files edits: ``--rules``, else
    ``$CDS_RULES_DIR``, else ``./rules``. Never the bundled rules by default: in a wheel they live
    in site-packages, and in an editable install they may be another checkout than the one the
    user stands in."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(RULES_ENV)
    if from_env:
        return Path(from_env)
    here = Path("rules")
    if here.is_dir():
        return here
    raise FileNotFoundError(
        f"no rules directory to edit here: pass --rules DIR or set ${RULES_ENV}; to start from the "
        f"bundled rules, copy them first: cp -r {bundled_rules_dir()} ./rules"
    )


def data_dir() -> Path:
    """Where the service keeps its files: ``$CDS_DATA_DIR``, else the platform's user data directory."""
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def database_url(explicit: str | None = None) -> str:
    """``--database-url``, else ``$CDS_DATABASE_URL``, else SQLite in the user data directory."""
    return explicit or os.environ.get(DATABASE_ENV) or f"sqlite:///{data_dir() / DATABASE_FILE}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///FILE`` URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def parse_as_of(text: str) -> datetime:
    """An as-of instant from a date or an ISO instant; a date means the end of that day (UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"as-of {text!r} is not a date (YYYY-MM-DD) or an ISO instant") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def now() -> datetime:
    """The current instant in whole seconds, UTC: the surfaces' one clock."""
    return datetime.now(UTC).replace(microsecond=0)


def as_of(text: str | None) -> datetime:
    """The as-of policy of every surface: the given date or instant, else now."""
    return now() if text is None else parse_as_of(text)


def tune_gc() -> None:
    """For a long-lived worker process (a cohort worker, a ``cds serve`` worker), once it has
    loaded the rules: it keeps the library, the engine and the validation memories for its whole
    life and allocates short-lived JSON per patient. Freezing what exists keeps the collector from
    re-scanning it, and a larger young generation lets per-patient garbage die before it is
    scanned at all. Not for library users: it changes the whole process's collector."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)

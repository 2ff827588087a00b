"""Shared configuration lives in cds.config and every surface uses it; the core never reads the clock."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds import config
from cds.api.settings import Settings
from tests.conftest import ROOT, RULES

CORE = ["cds/fhir", "cds/facts", "cds/engine", "cds/findings", "cds/evaluate.py", "cds/errors.py"]
CLOCK = re.compile(r"datetime\.now|utcnow|date\.today|time\.time\(|time\.monotonic|perf_counter")


def _sources(*roots: str) -> list[Path]:
    paths = [ROOT / r for r in roots]
    return sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))


def test_rules_directory_is_the_flag_else_the_environment_else_the_bundled_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(config.RULES_ENV, raising=False)
    assert config.rules_dir(None) == config.bundled_rules_dir() == RULES  # a checkout: top-level rules/
    monkeypatch.setenv(config.RULES_ENV, str(tmp_path / "env-rules"))
    assert config.rules_dir(None) == tmp_path / "env-rules"
    assert config.rules_dir(tmp_path / "flag-rules") == tmp_path / "flag-rules"


def test_database_is_the_flag_else_the_environment_else_the_user_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(config.DATABASE_ENV, raising=False)
    monkeypatch.setenv(config.DATA_DIR_ENV, str(tmp_path / "data"))
    assert config.database_url() == f"sqlite:///{tmp_path / 'data' / 'cds-hooks.sqlite3'}"
    assert Settings().database_url == config.database_url()
    monkeypatch.setenv(config.DATABASE_ENV, "postgresql+psycopg://db/cds")
    assert config.database_url() == "postgresql+psycopg://db/cds"
    assert config.database_url("sqlite:///x.sqlite3") == "sqlite:///x.sqlite3"


def test_without_overrides_the_database_is_never_in_the_current_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(config.DATABASE_ENV, raising=False)
    monkeypatch.delenv(config.DATA_DIR_ENV, raising=False)
    path = config.sqlite_path(config.database_url())
    assert path is not None and path.is_absolute() and path.parent != Path.cwd()


def test_sqlite_path_reads_file_urls_only() -> None:
    assert config.sqlite_path("sqlite:////tmp/a.sqlite3") == Path("/tmp/a.sqlite3")
    assert config.sqlite_path("sqlite:///rel.sqlite3?mode=rw") == Path("rel.sqlite3")
    assert config.sqlite_path("sqlite:///:memory:") is None
    assert config.sqlite_path("postgresql+psycopg://db/cds") is None


def test_as_of_policy_a_date_is_the_end_of_that_day_utc_and_nothing_means_now() -> None:
    assert config.as_of("2026-11-01") == datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    assert config.as_of("2026-11-01T08:00:00+02:00") == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    now = config.as_of(None)
    assert now.tzinfo is UTC and now.microsecond == 0
    with pytest.raises(ValueError, match="not a date"):
        config.as_of("yesterday")


def test_production_loads_approved_rule_sets_and_authoring_every_working_status() -> None:
    assert config.statuses(False) == {"approved"}
    assert config.statuses(True) == {"draft", "in-review", "approved"}


@pytest.mark.parametrize("path", _sources(*CORE), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_never_reads_the_clock(path: Path) -> None:
    assert not CLOCK.findall(path.read_text(encoding="utf-8"))


def test_settings_are_read_only_in_cds_config() -> None:
    for path in _sources("cds"):
        if path.name == "config.py":
            continue
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        assert '"CDS_RULES_DIR"' not in text and '"CDS_DATABASE_URL"' not in text, where
        assert "cds-hooks.sqlite3\"" not in text, where
        assert '{"approved", "in-review", "draft"}' not in text and 'in-review", "approved"}' not in text, (
            where
        )
        assert 'Path("rules")' not in text, where


@pytest.mark.parametrize("command", [["--help"], ["evaluate", "--help"], ["rules", "--help"]])
def test_help_does_not_load_the_web_database_dataframe_or_engine_stacks(command: list[str]) -> None:
    heavy = [
        "fastapi",
        "sqlalchemy",
        "uvicorn",
        "pyarrow",
        "dask",
        "fhir",
        "durable",
        "prometheus_client",
        "cds.engine",
    ]
    script = (
        "import sys\nfrom cds.cli import main\n"
        f"sys.argv = ['cds', *{command!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"loaded = [m for m in sys.modules if m in {heavy!r} or m.startswith('cds.engine')]\n"
        "print(sorted(loaded), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.stdout.startswith("Usage: cds")
    assert proc.stderr.strip() == "[]"


def test_the_package_exports_resolve_lazily() -> None:
    import cds

    for name in cds.__all__:
        assert getattr(cds, name) is not None
    with pytest.raises(AttributeError):
        cds.no_such_name  # noqa: B018

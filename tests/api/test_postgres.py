"""PostgreSQL, the way a site scales past one machine: two service instances behind one database
share the audit, the issued cards and feedback, and the JWT replay store; migrations upgrade a
database made before migrations existed.

The server comes from ``$CDS_TEST_POSTGRES_URL`` (CI: scripts/test.sh starts one), else this
module starts one with scripts/postgres.sh; it is skipped only when no server can be started, and
never when ``$CDS_REQUIRE_POSTGRES`` is set (CI)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cds.api.store import FeedbackItem, IssuedCard, Store, migrate
from cds.cli import app as cli_app
from cds.findings.cards import CARD_EXTENSION

from .conftest import FhirSide, running_service
from .helpers import FhirData, Sample, hook_body, prefetch_for

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "http://cds.shared.example"
SIGN = "her2-order-sign"


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("CDS_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    data = tmp_path_factory.mktemp("postgres") / "pg"
    script = str(ROOT / "scripts" / "postgres.sh")
    started = subprocess.run(
        ["bash", script, "start", str(data)], capture_output=True, text=True, timeout=300
    )
    if started.returncode != 0:
        reason = f"no PostgreSQL server could be started: {started.stderr.strip()[-300:]}"
        if os.environ.get("CDS_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", script, "stop", str(data)], capture_output=True, timeout=120)


def _fresh_database(server_url: str) -> str:
    name = f"cds_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.make_url(server_url).set(database=name).render_as_string(hide_password=False))


def _post(client: httpx.Client, base: str, path: str, token: str, body: Any) -> httpx.Response:
    return client.post(
        f"{base}{path}",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def test_two_instances_share_one_database(
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    fhir_side: FhirSide,
    templates: dict[str, str],
    samples: dict[str, Sample],
    fhir_data: FhirData,
) -> None:
    url = _fresh_database(postgres_server)
    tmp = tmp_path_factory.mktemp("two")
    options: dict[str, Any] = {"database_url": url, "public_url": PUBLIC, "override_quiet_days": 0.0}
    with (
        running_service(tmp, fhir_side, templates, "a", **options) as a,
        running_service(tmp, fhir_side, templates, "b", **options) as b,
    ):
        s = samples["order-tdm1-name-confusion"]
        body = hook_body(
            "order-sign",
            s.patient_id,
            prefetch=prefetch_for(fhir_data, templates, s.patient_id),
            order=s.order,
        )
        token = a.es384.token(f"{PUBLIC}/cds-services/{SIGN}")
        first = _post(a.client, a.base, f"/cds-services/{SIGN}", token, body)
        assert first.status_code == 200, first.text
        replayed = _post(b.client, b.base, f"/cds-services/{SIGN}", token, body)
        assert replayed.status_code == 401  # the jti was used on the other instance
        card = next(
            c
            for c in first.json()["cards"]
            if c["extension"][CARD_EXTENSION]["codes"] == ["order.name-confusion"]
        )
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-01T10:00:00Z",
                    "overrideReason": {"reason": card["overrideReasons"][0]},
                }
            ]
        }
        ack = _post(
            b.client,
            b.base,
            f"/cds-services/{SIGN}/feedback",
            b.es384.token(f"{PUBLIC}/cds-services/{SIGN}/feedback"),
            feedback,
        )
        assert ack.status_code == 200, ack.text  # a card issued by A, acknowledged on B
        assert ack.json() == {"stored": 1, "duplicates": 0}
        rows = a.runtime.store.audit_rows()
        assert [r["status"] for r in rows] == [200, 401]
    report = CliRunner().invoke(cli_app, ["feedback", "report", "--database-url", url, "--format", "json"])
    assert report.exit_code == 0, report.output
    row = next(r for r in orjson.loads(report.stdout) if r["rule"] == "order.name-confusion")
    assert (row["shown"], row["overridden"]) == (1, 1)


def _pre_migration_database(url: str) -> None:
    """A database as ``create_all`` made it before migrations: revision 0001 tables, no alembic_version."""
    from alembic import command
    from alembic.config import Config

    from cds.api.store import MIGRATIONS

    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(
            sa.text(
                "INSERT INTO cds_issued_card VALUES ('u1', 'her2-order-sign', 'order.name-confusion', "
                "'order.name-confusion', '1.0.0', 't', 't', 3)"
            )
        )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_upgrade_a_database_made_before_them(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    else:
        url = _fresh_database(request.getfixturevalue("postgres_server"))
    _pre_migration_database(url)
    store = Store(url)  # migrates on start
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("cds_issued_card")}
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        kept = conn.execute(sa.text("SELECT times_shown, times_suppressed FROM cds_issued_card")).one()
    assert {"times_suppressed", "severity"} <= columns
    assert version == "0002"
    assert tuple(kept) == (3, 0)
    migrate(store.engine)  # idempotent
    store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_per_call_statements_on_both_backends(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The statements every call runs (built once, cds/api/store.py): the replay store, the audit
    row with the cards shown (upserted: counted again, first sighting kept) and the quieting read."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    else:
        url = _fresh_database(request.getfixturevalue("postgres_server"))
    store = Store(url)
    assert store.remember("iss", "jti-1", 2_000_000_000)
    assert not store.remember("iss", "jti-1", 2_000_000_000)  # replayed
    assert store.remember("other-iss", "jti-1", 2_000_000_000)
    one, two, three = (IssuedCard(f"u{n}", f"code.{n}", f"rule.{n}", "1.0.0", "warning") for n in (1, 2, 3))
    for shown in ([one, two], [two, three], []):
        store.record_call(
            service="svc",
            hook="patient-view",
            hook_instance="h",
            status=200,
            patient_id="p",
            rulesets="r@1",
            codes=[c.code for c in shown],
            cards=shown,
            latency_ms=1.0,
            issuer="iss",
        )
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT uuid, code, first_seen, last_seen, times_shown FROM cds_issued_card ORDER BY uuid"
            )
        ).all()
    assert [(r.uuid, r.code, r.times_shown) for r in rows] == [
        ("u1", "code.1", 1),
        ("u2", "code.2", 2),
        ("u3", "code.3", 1),
    ]
    assert (
        rows[0].first_seen
        == rows[0].last_seen
        == rows[1].first_seen
        < rows[1].last_seen
        == rows[2].first_seen
    )
    assert [(r["cards"], r["finding_codes"]) for r in store.audit_rows()] == [
        (2, "code.1,code.2"),
        (2, "code.2,code.3"),
        (0, None),
    ]
    items = [FeedbackItem("u2", "overridden", "2026-11-01T10:00:00Z", "s", "c", None, False, ())]
    store.add_feedback("svc", items, {"u2": two}, quiet_until="2026-11-08T00:00:00.000000Z")
    assert store.quieted("svc", [one, two, three], "2026-11-02T00:00:00.000000Z") == {"u2"}
    assert store.quieted("svc", [one, two], "2026-11-09T00:00:00.000000Z") == set()
    assert store.quieted("other", [two], "2026-11-02T00:00:00.000000Z") == set()
    store.dispose()

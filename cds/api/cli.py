"""``cds serve`` (the CDS Hooks service under uvicorn) and ``cds feedback report``.

FastAPI, SQLAlchemy, uvicorn and prometheus_client are imported when a command runs, not for
``cds --help``.
"""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cds import config
from cds.api.logs import log_config
from cds.api.settings import SETTINGS_ENV, Settings, TrustedIssuer, with_fhir_servers
from cds.clikit import RulesOpt, format_option
from cds.errors import CdsError, outcome_of

feedback_app = typer.Typer(
    help="Clinician feedback on CDS Hooks cards.", no_args_is_help=True, rich_markup_mode=None
)
hooks_app = typer.Typer(help="CDS Hooks integration helpers.", no_args_is_help=True, rich_markup_mode=None)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, width=160)

DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help=config.DATABASE_HELP, show_default=False)
]


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Worker processes. durable_rules evaluates one patient at a time per process, so N workers "
            "serve N calls in parallel; each loads the rules once.",
        ),
    ] = 1,
    rules: RulesOpt = None,
    database_url: DatabaseOpt = None,
    trusted_issuer: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-issuer",
            help="A CDS client allowed to call: 'ISS|JWKS' where JWKS is the client's JWK Set URL or a local "
            "file (exchanged out of band), optionally '|AUDIENCE_BASE' when the client puts another base URL "
            "than --public-url in aud. Repeat for several clients. Token jku values are never fetched: "
            "with a JWKS URL a jku must equal it; with a file the jku is ignored and the pinned keys "
            "(kid) decide.",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="This service's external base URL; JWT aud must be {public-url}/cds-services/{id}. "
            "Default http://HOST:PORT.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Browser origin allowed by CORS (repeatable; '*' for any)."),
    ] = None,
    insecure_dev: Annotated[
        bool,
        typer.Option(
            "--insecure-dev",
            help="Accept unsigned calls (no JWT check). For local demos with synthetic data only.",
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Non-standard, tests and demos only: evaluate as of this date instead of now "
            "(CDS Hooks calls carry no as-of).",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", help="Largest request body accepted (413 above).")
    ] = 5 * 1024 * 1024,
    fhir_timeout: Annotated[
        float, typer.Option("--fhir-timeout", help="Seconds allowed for all FHIR fallback fetches of a call.")
    ] = 4.0,
    fhir_max_connections: Annotated[
        int,
        typer.Option("--fhir-max-connections", help="Open connections per worker for FHIR fallback fetches."),
    ] = 64,
    fhir_connect_timeout: Annotated[
        float,
        typer.Option(
            "--fhir-connect-timeout", help="Seconds to open a connection to a FHIR server (fallback fetches)."
        ),
    ] = 1.0,
    fhir_server: Annotated[
        list[str] | None,
        typer.Option(
            "--fhir-server",
            help="FHIR base URL any trusted client's calls may have this service fetch missing prefetch data "
            "from (repeatable; scheme, host, port and path prefix must match). Without it and without "
            "--issuer-fhir-server nothing is fetched: missing data answers 412.",
        ),
    ] = None,
    issuer_fhir_server: Annotated[
        list[str] | None,
        typer.Option(
            "--issuer-fhir-server",
            help="'ISS|FHIR_BASE': a FHIR base URL only this trusted issuer's calls may have fetched "
            "(repeatable).",
        ),
    ] = None,
    fhir_allow_private: Annotated[
        bool,
        typer.Option(
            "--fhir-allow-private",
            help="Allow FHIR fetches to loopback, private and link-local addresses (an EHR on an internal "
            "network). Default: public addresses only, checked when connecting.",
        ),
    ] = False,
    fhir_max_response_bytes: Annotated[
        int, typer.Option("--fhir-max-response-bytes", help="Largest FHIR response read (bytes, decoded).")
    ] = 8 * 1024 * 1024,
    fhir_max_response_resources: Annotated[
        int, typer.Option("--fhir-max-response-resources", help="Most resources in one FHIR response.")
    ] = 10_000,
    fhir_max_call_bytes: Annotated[
        int, typer.Option("--fhir-max-call-bytes", help="Most bytes all FHIR fetches of one call may read.")
    ] = 32 * 1024 * 1024,
    fhir_max_call_resources: Annotated[
        int,
        typer.Option(
            "--fhir-max-call-resources", help="Most resources all FHIR fetches of one call may bring."
        ),
    ] = 20_000,
    max_token_lifetime: Annotated[
        int,
        typer.Option(
            "--max-token-lifetime",
            help="Longest JWT lifetime accepted, exp - iat in seconds (401 above). The reference sandbox and "
            "Inferno sign for 300 s.",
        ),
    ] = 300,
    shared_order_service_id: Annotated[
        bool,
        typer.Option(
            "--shared-order-service-id",
            help="Register order-select and order-sign under one id (her2-order-safety) for clients that "
            "replace stale guidance by service id. Default: one id and URL per hook.",
        ),
    ] = False,
    warn_on_missing_data: Annotated[
        list[str] | None,
        typer.Option(
            "--warn-on-missing-data",
            help="SERVICE_ID (repeatable) that answers 'data not obtainable' with one warning card "
            "'HER2 safety checks could not run: <which data>' instead of 412, for EHRs that show an error "
            "as 'no recommendations'.",
        ),
    ] = None,
    info_cards: Annotated[
        list[str] | None,
        typer.Option(
            "--info-cards",
            help="SERVICE_ID (repeatable) of a patient-view service that also shows info cards (continue, "
            "not applicable). Default: patient-view shows only actionable cards.",
        ),
    ] = None,
    override_quiet_days: Annotated[
        float,
        typer.Option(
            "--override-quiet-days",
            help="Days a card overridden with a reason is not shown again for the same patient, rule version "
            "and basis values (it returns at once if a value changes or severity rises). 0 turns this off.",
        ),
    ] = 7.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug logs patient ids; info never does.")
    ] = "info",
) -> None:
    """Serve the CDS Hooks 2.0 services (discovery at /cds-services, OpenAPI at /docs)."""
    import uvicorn

    from cds.api.metrics import MULTIPROC_ENV
    from cds.api.store import Store

    database_url = config.database_url(database_url)
    cors = tuple(cors_origin or ())
    if insecure_dev and not cors:
        cors = ("*",)  # a local demo is usually driven from the browser sandbox
    try:
        settings = Settings(
            host=host,
            port=port,
            workers=workers,
            rules_dir=str(config.rules_dir(rules)),
            database_url=database_url,
            issuers=with_fhir_servers(
                tuple(TrustedIssuer.parse(t) for t in trusted_issuer or ()), issuer_fhir_server or ()
            ),
            cors_origins=cors,
            insecure_dev=insecure_dev,
            public_url=public_url,
            as_of=as_of,
            max_body_bytes=max_body_bytes,
            fhir_timeout_seconds=fhir_timeout,
            fhir_servers=tuple(fhir_server or ()),
            max_token_lifetime_seconds=max_token_lifetime,
            fhir_allow_private=fhir_allow_private,
            fhir_max_response_bytes=fhir_max_response_bytes,
            fhir_max_response_resources=fhir_max_response_resources,
            fhir_max_call_bytes=fhir_max_call_bytes,
            fhir_max_call_resources=fhir_max_call_resources,
            fhir_max_connections=fhir_max_connections,
            fhir_connect_timeout_seconds=fhir_connect_timeout,
            shared_order_service=shared_order_service_id,
            warn_on_missing_data=tuple(warn_on_missing_data or ()),
            info_cards=tuple(info_cards or ()),
            override_quiet_days=override_quiet_days,
        )
        settings.check()
        database_file = config.sqlite_path(settings.database_url)
        if database_file is not None:
            database_file.parent.mkdir(parents=True, exist_ok=True)
        Store(settings.database_url).dispose()  # create the schema once before workers race for it
    except CdsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    logging.config.dictConfig(log_config(log_level))  # the same JSON lines in every worker (cds.api.logs)
    if insecure_dev:
        err.print(
            "WARNING: --insecure-dev: unsigned CDS Hooks calls are accepted. Never expose this to a network "
            "or use it with real patient data.",
            style="bold red",
        )
    from sqlalchemy.engine import make_url

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    logging.getLogger("cds.api").info("feedback and audit database: %s", shown)  # a JSON log line
    if workers == 1:
        from cds.api.app import create_app

        app = create_app(settings)
        config.tune_gc()  # one long-lived serving process: see cds.config.tune_gc
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            log_config=log_config(log_level),
            proxy_headers=False,
        )
        return
    metrics_dir = tempfile.mkdtemp(prefix="cds-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.to_json()
    try:
        _run_workers(host, port, workers, log_level)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """``uvicorn.run(..., workers=N)``, but with TCP_NODELAY on the listening socket.

    uvicorn's multi-worker mode creates its listening socket with proto 0, and asyncio only sets
    TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP, so every response waited for
    Nagle plus the client's 40 ms delayed ACK (measured: 44 ms per request with 2 workers vs 0.5
    ms with 1). Linux copies TCP_NODELAY from the listening socket to the sockets it accepts.
    """
    import contextlib
    import socket

    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(
        "cds.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=log_config(log_level),
        proxy_headers=False,
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the supervisor stops the workers
        Multiprocess(config, sockets=[sock]).run()


@feedback_app.command("report")
def feedback_report(
    database_url: DatabaseOpt = None,
    output_format: Annotated[str, format_option("text", "json")] = "text",
) -> None:
    """Override rates per rule version: cards shown, accepted, overridden, top override reasons."""
    from cds.api.store import Store

    database_url = config.database_url(database_url)
    database_file = config.sqlite_path(database_url)
    if database_file is not None and not database_file.exists():
        err.print(f"error: no feedback database at {database_file} (has `cds serve` run?)", markup=False)
        raise typer.Exit(2)
    try:
        rows = Store(database_url).report()
    except Exception as exc:  # a wrong URL or unreachable database: one line, exit 2
        err.print(f"error: cannot read {database_url}: {type(exc).__name__}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    if output_format == "json":
        data = [
            {
                "rule": r.rule_id,
                "version": r.rule_version,
                "code": r.code,
                "shown": r.shown,
                "accepted": r.accepted,
                "overridden": r.overridden,
                "override_rate": r.override_rate,
                "suppressed": r.suppressed,
                "top_override_reasons": [{"reason": k, "count": n} for k, n in r.top_reasons],
            }
            for r in rows
        ]
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        return
    if not rows:
        out.print("No cards issued yet.", markup=False)
        return
    table = Table(title="CDS Hooks feedback by rule")
    for col in (
        "rule",
        "version",
        "finding code",
        "shown",
        "accepted",
        "overridden",
        "override rate",
        "suppressed",
        "reasons",
    ):
        table.add_column(col)
    for r in rows:
        rate = "-" if r.override_rate is None else f"{r.override_rate:.0%}"
        reasons = ", ".join(f"{k} ({n})" for k, n in r.top_reasons)
        table.add_row(
            r.rule_id,
            r.rule_version,
            r.code,
            str(r.shown),
            str(r.accepted),
            str(r.overridden),
            rate,
            str(r.suppressed),
            reasons,
        )
    out.print(table)


@hooks_app.command("request")
def hooks_request(
    bundle: Annotated[Path, typer.Argument(help="A patient file (FHIR Bundle, resource array or NDJSON).")],
    hook: Annotated[
        str, typer.Option("--hook", help="patient-view, order-select or order-sign.")
    ] = "patient-view",
    order: Annotated[
        Path | None, typer.Option("--order", help="The draft MedicationRequest (JSON) for the order hooks.")
    ] = None,
    user: Annotated[str, typer.Option("--user", help="context.userId.")] = "Practitioner/example",
    rules: RulesOpt = None,
) -> None:
    """Print a spec-valid CDS Hooks request for BUNDLE, prefetch filled from the service's own templates.

    Example: ``cds hooks request fhir_samples/mbc-second-line.json > req.json`` then
    ``curl -H 'Content-Type: application/json' -d @req.json http://127.0.0.1:8000/cds-services/her2-therapy-review``.
    """
    from cds.api.request import build_request
    from cds.api.services import prefetch_templates
    from cds.engine.library import load_library
    from cds.fhir.source import raw_patient_from_path, read_order

    try:
        raw = raw_patient_from_path(bundle)
        draft = read_order(order.read_bytes(), str(order)) if order is not None else None
        templates = prefetch_templates(load_library(config.rules_dir(rules)))
        body = build_request(
            raw.patient, [raw.patient, *raw.resources], templates, hook=hook, order=draft, user=user
        )
    except OSError as exc:
        err.print(f"error: {exc.filename}: cannot read ({exc.strerror})", markup=False)
        raise typer.Exit(2) from exc
    except CdsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(outcome_of(exc).exit_code) from exc
    sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")

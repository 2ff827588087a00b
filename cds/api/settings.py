"""Service settings: one frozen object, JSON-serialisable so ``--workers N`` can hand it to each worker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from cds import config
from cds.errors import ConfigurationError

SETTINGS_ENV = "CDS_API_SETTINGS"


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS client we trust: its JWT ``iss``, where its JWK Set lives (https URL or file), and
    optionally the base URL it uses in ``aud`` when that differs from our public URL (Epic lets
    each health system type the audience by hand)."""

    iss: str
    jwks: str
    audience_base: str | None = None
    # FHIR base URLs this client's calls may have us fetch from (--issuer-fhir-server)
    fhir_servers: tuple[str, ...] = ()

    @property
    def jwks_is_url(self) -> bool:
        """A JWKS given as a URL is fetched (only that URL, never a token's ``jku``)."""
        return self.jwks.startswith(("https://", "http://"))

    @classmethod
    def parse(cls, text: str) -> TrustedIssuer:
        """``ISS|JWKS[|AUDIENCE_BASE]`` (``|`` because URLs contain ``=`` and ``:``)."""
        parts = [p.strip() for p in text.split("|")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigurationError(
                f"trusted issuer {text!r}: expected ISS|JWKS_URL_OR_FILE[|AUDIENCE_BASE]"
            )
        issuer = cls(parts[0], parts[1], parts[2].rstrip("/") if len(parts) == 3 else None)
        if not issuer.jwks_is_url and not Path(issuer.jwks).is_file():
            raise ConfigurationError(f"trusted issuer {issuer.iss}: JWKS file {issuer.jwks} not found")
        return issuer


def with_fhir_servers(issuers: tuple[TrustedIssuer, ...], pairs: Iterable[str]) -> tuple[TrustedIssuer, ...]:
    """Attach ``ISS|FHIR_BASE`` pairs (--issuer-fhir-server) to the trusted issuers they name."""
    extra: dict[str, list[str]] = {}
    known = {i.iss for i in issuers}
    for text in pairs:
        iss, sep, base = (part.strip() for part in text.partition("|"))
        if not sep or not iss or not base:
            raise ConfigurationError(f"issuer FHIR server {text!r}: expected ISS|FHIR_BASE_URL")
        if iss not in known:
            raise ConfigurationError(f"issuer FHIR server {text!r}: {iss} is not a --trusted-issuer")
        extra.setdefault(iss, []).append(base.rstrip("/"))
    return tuple(replace(i, fhir_servers=i.fhir_servers + tuple(extra.get(i.iss, ()))) for i in issuers)


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs; defaults are the production-safe ones."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    rules_dir: str | None = None  # None: cds.config.rules_dir() ($CDS_RULES_DIR, else the bundled rules)
    database_url: str = field(default_factory=config.database_url)  # never a file in the cwd
    issuers: tuple[TrustedIssuer, ...] = ()
    cors_origins: tuple[str, ...] = ()
    insecure_dev: bool = False
    public_url: str | None = None
    # Non-standard, for tests and demos only: evaluate as of this date instead of now.
    as_of: str | None = None
    max_body_bytes: int = 5 * 1024 * 1024
    fhir_timeout_seconds: float = 4.0
    # FHIR base URLs every caller may have us fetch from (scheme, host, port and path prefix must
    # match); each trusted issuer adds its own. No base at all: no FHIR fallback fetch.
    fhir_servers: tuple[str, ...] = ()
    fhir_max_pages: int = 50
    # FHIR fallback fetches connect to public addresses only unless this is set.
    fhir_allow_private: bool = False
    fhir_max_response_bytes: int = 8 * 1024 * 1024
    fhir_max_response_resources: int = 10_000
    fhir_max_call_bytes: int = 32 * 1024 * 1024
    fhir_max_call_resources: int = 20_000
    # the FHIR fallback's HTTP client: connections per worker, and seconds to connect (the whole
    # fallback of a call is bounded by fhir_timeout_seconds)
    fhir_max_connections: int = 64
    fhir_connect_timeout_seconds: float = 1.0
    clock_skew_seconds: int = 60
    max_token_lifetime_seconds: int = 300
    jwks_cache_seconds: int = 3600
    # Register order-select and order-sign under one id (her2-order-safety) instead of one id each.
    shared_order_service: bool = False
    # Services that answer "data not obtainable" with one warning card instead of 412 (for EHRs
    # that show an error as "no recommendations").
    warn_on_missing_data: tuple[str, ...] = ()
    # patient-view services that also show info cards ("continue", "not applicable"); by default
    # patient-view shows only actionable cards (alerts, gaps, recommendations)
    info_cards: tuple[str, ...] = ()
    # days a card overridden with a reason stays quiet (same patient, rule version, basis); 0: off
    override_quiet_days: float = 7.0

    @property
    def base_url(self) -> str:
        """The public base URL (discovery lives at ``{base_url}/cds-services``); JWT ``aud`` uses it."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def check(self) -> None:
        """Refuse a configuration that would accept nobody, or anybody by accident."""
        if not self.insecure_dev and not self.issuers:
            raise ConfigurationError(
                "no trusted issuers: pass --trusted-issuer 'ISS|JWKS' (or --insecure-dev for a local demo)"
            )
        if self.workers < 1:
            raise ConfigurationError("--workers must be at least 1")
        if not 1 <= self.max_token_lifetime_seconds <= 3600:
            raise ConfigurationError("--max-token-lifetime must be between 1 and 3600 seconds")
        from cds.api.fhir import url_problem  # the FHIR fetcher's own URL rule

        for issuer in self.issuers:
            for base in issuer.fhir_servers:
                problem = url_problem(base)
                if problem or urlsplit(base).query or urlsplit(base).fragment:
                    raise ConfigurationError(
                        f"FHIR server {base!r} of {issuer.iss}: {problem or 'query or fragment'}"
                    )
        for base in self.fhir_servers:
            problem = url_problem(base)
            if problem or urlsplit(base).query or urlsplit(base).fragment:
                raise ConfigurationError(f"--fhir-server {base!r}: {problem or 'query or fragment'}")
        for name in (
            "fhir_max_response_bytes",
            "fhir_max_response_resources",
            "fhir_max_call_bytes",
            "fhir_max_call_resources",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_body_bytes < 1024:
            raise ConfigurationError("--max-body-bytes must be at least 1024")

    def to_json(self) -> str:
        """Serialise for the worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        data["issuers"] = tuple(
            TrustedIssuer(**{**i, "fhir_servers": tuple(i.get("fhir_servers", ()))})
            for i in data.get("issuers", ())
        )
        data["cors_origins"] = tuple(data.get("cors_origins", ()))
        data["fhir_servers"] = tuple(data.get("fhir_servers", ()))
        data["warn_on_missing_data"] = tuple(data.get("warn_on_missing_data", ()))
        data["info_cards"] = tuple(data.get("info_cards", ()))
        return cls(**data)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings handed over by ``cds serve`` in ``$CDS_API_SETTINGS``."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ConfigurationError(f"${SETTINGS_ENV} is not set (start workers with `cds serve`)")
        return cls.from_json(text)

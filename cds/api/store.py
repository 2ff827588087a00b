"""Persistence (SQLAlchemy 2 Core): audit rows, issued cards, feedback, the JWT replay store.

SQLite by default (WAL, so several workers can write), PostgreSQL by URL. The schema is brought
to the newest Alembic revision on start (``cds/api/migrations``). No PHI: the audit keeps a keyed
hash of the patient id (the key is generated once and kept in the database, so hashes are stable
across restarts but cannot be reversed by guessing ids), and feedback keeps whether a comment was
written, not the comment (free text may hold PHI).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.sql.elements import TextClause

metadata = MetaData()

meta = Table(
    "cds_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
audit = Table(
    "cds_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False, index=True),
    Column("service", String(64), nullable=False),
    Column("hook", String(64)),
    Column("hook_instance", String(64)),
    Column("status", Integer, nullable=False),
    Column("patient_hash", String(64)),
    Column("rulesets", Text),
    Column("finding_codes", Text),
    Column("cards", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False),
    Column("issuer", String(256)),
    Column("reason", String(256)),
)
issued_card = Table(
    "cds_issued_card",
    metadata,
    Column("uuid", String(64), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("code", String(128), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("rule_version", String(32), nullable=False),
    Column("first_seen", String(32), nullable=False),
    Column("last_seen", String(32), nullable=False),
    Column("times_shown", Integer, nullable=False),
    Column("times_suppressed", Integer, nullable=False, server_default="0"),
    Column("severity", String(16)),
)
feedback = Table(
    "cds_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("card_uuid", String(100), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", String(40), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("rule_version", String(32), nullable=False),
    Column("code", String(128), nullable=False),
    Column("reason_system", String(256)),
    Column("reason_code", String(128)),
    Column("reason_display", String(256)),
    Column("has_comment", Boolean, nullable=False, default=False),
    Column("accepted_suggestions", Text),
    Column("received_at", String(32), nullable=False),
    UniqueConstraint("service", "card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_event"),
)
# Cards a clinician overrode with a reason: not shown again for the same card (same patient, rule
# version and basis values: the card uuid encodes them) until ``until``, unless severity rises.
suppression = Table(
    "cds_suppression",
    metadata,
    Column("card_uuid", String(100), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("until", String(32), nullable=False),
)
seen_jti = Table(
    "cds_seen_jti",
    metadata,
    Column("issuer", String(256), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires", Integer, nullable=False, index=True),
)


# The statements every service call runs, built once: building one costs more than the SQLite
# query itself (SQLAlchemy coerces each clause and computes a cache key); they write the same SQL.
_REMEMBER_JTI = seen_jti.insert()
_AUDIT_ROW = audit.insert()
_QUIET_CARDS = select(suppression).where(
    suppression.c.service == bindparam("service"),
    suppression.c.card_uuid.in_(bindparam("uuids", expanding=True)),
    suppression.c.until > bindparam("now"),
)


_SHOWN_COLUMNS = (
    "uuid",
    "service",
    "code",
    "rule_id",
    "rule_version",
    "first_seen",
    "last_seen",
    "times_shown",
    "times_suppressed",
    "severity",
)


@functools.lru_cache(maxsize=64)
def _shown_cards(rows: int) -> TextClause:
    """The upsert of ``rows`` shown cards, one multi-row INSERT .. ON CONFLICT (uuid) DO UPDATE, as
    SQLAlchemy's dialect insert wrote it, in syntax SQLite and PostgreSQL share. Written out once
    per row count because SQLAlchemy gives a multi-row insert no cache key: it compiled the
    statement again on every call (~0.4 ms)."""
    values = ", ".join("(" + ", ".join(f":{name}_{i}" for name in _SHOWN_COLUMNS) + ")" for i in range(rows))
    table = issued_card.name
    return text(
        f"INSERT INTO {table} ({', '.join(_SHOWN_COLUMNS)}) VALUES {values} ON CONFLICT (uuid) "
        f"DO UPDATE SET last_seen = :now, times_shown = {table}.times_shown + 1"
    )


def _now() -> str:
    return stamp(datetime.now(UTC))


def stamp(when: datetime) -> str:
    """The stored form of an instant (UTC, fixed width, so strings compare like instants)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
NO_REASON = "dismissed, no reason"


@dataclass(frozen=True)
class IssuedCard:
    """A card as remembered for feedback: which rule (and version) produced it."""

    uuid: str
    code: str
    rule_id: str
    rule_version: str
    severity: str = "info"


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback entry, ready to store."""

    card: str
    outcome: str
    outcome_timestamp: str
    reason_system: str | None
    reason_code: str | None
    reason_display: str | None
    has_comment: bool
    accepted: tuple[str, ...]


@dataclass(frozen=True)
class RuleReport:
    """Override statistics of one rule version."""

    rule_id: str
    rule_version: str
    code: str
    shown: int
    accepted: int
    overridden: int
    top_reasons: tuple[tuple[str, int], ...]
    suppressed: int = 0

    @property
    def override_rate(self) -> float | None:
        """Overridden / (accepted + overridden); None without feedback."""
        answered = self.accepted + self.overridden
        return self.overridden / answered if answered else None


class Store:
    """All database access of the service; methods are synchronous (call them from a thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._create_schema()
        self._hash_key = self._audit_key()
        self._last_purge = 0.0

    def _create_schema(self) -> None:
        for attempt in range(5):  # several workers or instances may start at once
            try:
                migrate(self.engine)
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _insert(self, table: Table) -> Any:
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    def _audit_key(self) -> bytes:
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(meta)
                .values(key="audit_hash_key", value=secrets.token_hex(32))
                .on_conflict_do_nothing()
            )
            value = conn.execute(select(meta.c.value).where(meta.c.key == "audit_hash_key")).scalar_one()
        return bytes.fromhex(value)

    def patient_hash(self, patient_id: str) -> str:
        """Keyed hash of a patient id: joins audit rows of one patient without storing the id."""
        return hmac.new(self._hash_key, patient_id.encode(), hashlib.sha256).hexdigest()

    def ping(self) -> bool:
        """Whether the database answers."""
        with self.engine.connect() as conn:
            return bool(conn.execute(select(1)).scalar_one() == 1)

    # -- replay store ---------------------------------------------------------------------------
    def remember(self, issuer: str, jti: str, expires: int) -> bool:
        """Record a jti; False if it was already there (a replay)."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if now - self._last_purge > 60:
                    conn.execute(delete(seen_jti).where(seen_jti.c.expires < int(now) - 300))
                    self._last_purge = now
                conn.execute(_REMEMBER_JTI, {"issuer": issuer, "jti": jti, "expires": expires})
        except IntegrityError:
            return False
        return True

    # -- calls ----------------------------------------------------------------------------------
    def record_call(
        self,
        *,
        service: str,
        hook: str | None,
        hook_instance: str | None,
        status: int,
        patient_id: str | None,
        rulesets: str | None,
        codes: Sequence[str],
        cards: Sequence[IssuedCard],
        latency_ms: float,
        issuer: str | None,
        reason: str | None = None,
    ) -> None:
        """One audit row per call, and the cards shown (upserted, counted) for feedback."""
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(
                _AUDIT_ROW,
                {
                    "at": now,
                    "service": service,
                    "hook": hook,
                    "hook_instance": hook_instance,
                    "status": status,
                    "patient_hash": self.patient_hash(patient_id) if patient_id else None,
                    "rulesets": rulesets,
                    "finding_codes": ",".join(codes) or None,
                    "cards": len(cards),
                    "latency_ms": round(latency_ms, 3),
                    "issuer": issuer,
                    "reason": reason[:256] if reason else None,
                },
            )
            if cards:
                params: dict[str, Any] = {"now": now}
                for i, c in enumerate(cards):
                    row = (c.uuid, service, c.code, c.rule_id, c.rule_version, now, now, 1, 0, c.severity)
                    params.update(zip([f"{name}_{i}" for name in _SHOWN_COLUMNS], row, strict=True))
                conn.execute(_shown_cards(len(cards)), params)

    def issued(self, service: str, uuids: Sequence[str]) -> dict[str, IssuedCard]:
        """The cards this service issued, by uuid."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(issued_card).where(issued_card.c.service == service, issued_card.c.uuid.in_(uuids))
            ).all()
        return {
            r.uuid: IssuedCard(r.uuid, r.code, r.rule_id, r.rule_version, r.severity or "info") for r in rows
        }

    def add_feedback(
        self,
        service: str,
        items: Sequence[FeedbackItem],
        cards: dict[str, IssuedCard],
        quiet_until: str | None = None,
    ) -> int:
        """Store feedback; a repeated (card, outcome, timestamp) is ignored. Returns how many were new.

        An override with a coded reason quiets that card until ``quiet_until`` (None: never).
        """
        now = _now()
        rows = [
            {
                "service": service,
                "card_uuid": i.card,
                "outcome": i.outcome,
                "outcome_timestamp": i.outcome_timestamp,
                "rule_id": cards[i.card].rule_id,
                "rule_version": cards[i.card].rule_version,
                "code": cards[i.card].code,
                "reason_system": i.reason_system,
                "reason_code": i.reason_code,
                "reason_display": i.reason_display,
                "has_comment": i.has_comment,
                "accepted_suggestions": ",".join(i.accepted) or None,
                "received_at": now,
            }
            for i in items
        ]
        with self.engine.begin() as conn:
            result = conn.execute(
                self._insert(feedback)
                .values(rows)
                .on_conflict_do_nothing(
                    index_elements=["service", "card_uuid", "outcome", "outcome_timestamp"]
                )
                .returning(feedback.c.id)  # rowcount of a multi-row insert is -1 on psycopg
            )
            new = len(result.all())
            quiet = [
                {
                    "card_uuid": i.card,
                    "service": service,
                    "severity": cards[i.card].severity,
                    "until": quiet_until,
                }
                for i in items
                if quiet_until and i.outcome == "overridden" and i.reason_code
            ]
            if quiet:
                stmt = self._insert(suppression).values(quiet)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[suppression.c.card_uuid],
                        set_={"until": stmt.excluded.until, "severity": stmt.excluded.severity},
                    )
                )
        return new

    def quieted(self, service: str, cards: Sequence[IssuedCard], now: str) -> set[str]:
        """The cards still quiet at ``now``: overridden with a reason, period not over, severity not risen."""
        if not cards:
            return set()
        by_uuid = {c.uuid: c for c in cards}
        with self.engine.connect() as conn:
            rows = conn.execute(
                _QUIET_CARDS, {"service": service, "uuids": sorted(by_uuid), "now": now}
            ).all()
        return {
            r.card_uuid
            for r in rows
            if SEVERITY_RANK.get(by_uuid[r.card_uuid].severity, 0) <= SEVERITY_RANK.get(r.severity, 0)
        }

    def count_suppressed(self, service: str, cards: Sequence[IssuedCard]) -> None:
        """Count cards held back by override-aware suppression (shown in the feedback report)."""
        now = _now()
        with self.engine.begin() as conn:
            for c in cards:
                stmt = self._insert(issued_card).values(
                    uuid=c.uuid,
                    service=service,
                    code=c.code,
                    rule_id=c.rule_id,
                    rule_version=c.rule_version,
                    first_seen=now,
                    last_seen=now,
                    times_shown=0,
                    times_suppressed=1,
                    severity=c.severity,
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[issued_card.c.uuid],
                        set_={"times_suppressed": issued_card.c.times_suppressed + 1},
                    )
                )

    def report(self) -> list[RuleReport]:
        """Per rule version: cards shown, accepted, overridden and the most common override reasons."""
        with self.engine.connect() as conn:
            shown = conn.execute(
                select(
                    issued_card.c.rule_id,
                    issued_card.c.rule_version,
                    issued_card.c.code,
                    func.sum(issued_card.c.times_shown),
                    func.sum(issued_card.c.times_suppressed),
                ).group_by(issued_card.c.rule_id, issued_card.c.rule_version, issued_card.c.code)
            ).all()
            outcomes = conn.execute(
                select(
                    feedback.c.rule_id, feedback.c.rule_version, feedback.c.outcome, func.count()
                ).group_by(feedback.c.rule_id, feedback.c.rule_version, feedback.c.outcome)
            ).all()
            reasons = conn.execute(
                select(
                    feedback.c.rule_id,
                    feedback.c.rule_version,
                    func.coalesce(feedback.c.reason_code, NO_REASON),
                    func.count(),
                )
                .where(feedback.c.outcome == "overridden")
                .group_by(feedback.c.rule_id, feedback.c.rule_version, feedback.c.reason_code)
            ).all()
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for rule_id, version, outcome, n in outcomes:
            counts.setdefault((rule_id, version), {})[outcome] = int(n)
        why: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for rule_id, version, code, n in reasons:
            why.setdefault((rule_id, version), []).append((str(code), int(n)))
        out = []
        for rule_id, version, code, n, quiet in shown:
            c = counts.get((rule_id, version), {})
            top = tuple(sorted(why.get((rule_id, version), []), key=lambda x: (-x[1], x[0]))[:3])
            out.append(
                RuleReport(
                    rule_id,
                    version,
                    code,
                    int(n or 0),
                    c.get("accepted", 0),
                    c.get("overridden", 0),
                    top,
                    int(quiet or 0),
                )
            )
        out.sort(key=lambda r: (-(r.override_rate or 0.0), -r.shown, r.rule_id, r.rule_version))
        return out

    def audit_rows(self) -> list[dict[str, Any]]:
        """Every audit row (tests and ad-hoc inspection)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(audit).order_by(audit.c.id))]

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (``cds/api/migrations``).

    A database made by ``create_all`` before migrations existed (tables, no ``alembic_version``)
    is stamped as revision 0001 first, so its data is kept and only the later revisions run.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        tables = set(inspect(conn).get_table_names())
        if "cds_audit" in tables and "alembic_version" not in tables:
            command.stamp(config, "0001")
        command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()

"""The schema as ``create_all`` made it before migrations: audit, issued cards, feedback, replay store.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "cds_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False, index=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64)),
        sa.Column("hook_instance", sa.String(64)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("patient_hash", sa.String(64)),
        sa.Column("rulesets", sa.Text),
        sa.Column("finding_codes", sa.Text),
        sa.Column("cards", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("issuer", sa.String(256)),
        sa.Column("reason", sa.String(256)),
    )
    op.create_table(
        "cds_issued_card",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_version", sa.String(32), nullable=False),
        sa.Column("first_seen", sa.String(32), nullable=False),
        sa.Column("last_seen", sa.String(32), nullable=False),
        sa.Column("times_shown", sa.Integer, nullable=False),
    )
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_version", sa.String(32), nullable=False),
        sa.Column("code", sa.String(128), nullable=False),
        sa.Column("reason_system", sa.String(256)),
        sa.Column("reason_code", sa.String(128)),
        sa.Column("reason_display", sa.String(256)),
        sa.Column("has_comment", sa.Boolean, nullable=False),
        sa.Column("accepted_suggestions", sa.Text),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("service", "card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_event"),
    )
    op.create_table(
        "cds_seen_jti",
        sa.Column("issuer", sa.String(256), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires", sa.Integer, nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("cds_seen_jti", "cds_feedback", "cds_issued_card", "cds_audit", "cds_meta"):
        op.drop_table(table)

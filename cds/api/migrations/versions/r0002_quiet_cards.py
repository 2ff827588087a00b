"""Override-aware suppression: card severity and quiet counts, and the quiet-until table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cds_issued_card") as batch:
        batch.add_column(sa.Column("times_suppressed", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("severity", sa.String(16)))
    op.create_table(
        "cds_suppression",
        sa.Column("card_uuid", sa.String(100), primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("until", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cds_suppression")
    with op.batch_alter_table("cds_issued_card") as batch:
        batch.drop_column("severity")
        batch.drop_column("times_suppressed")

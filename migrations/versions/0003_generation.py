"""query log: questions, answers, citations, timings and feedback

Revision ID: 0003_generation
Revises: 0002_retrieval
Create Date: 2026-11-24 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.models import PortableJSON

revision: str = "0003_generation"
down_revision: str | None = "0002_retrieval"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "query_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", sa.String(length=36), nullable=True),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("citations", PortableJSON, nullable=False),
        sa.Column("sources", PortableJSON, nullable=False),
        sa.Column("refused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("uncited", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("invalid_citations", sa.Integer(), nullable=False),
        sa.Column("generator", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("timings", PortableJSON, nullable=False),
        sa.Column(
            "feedback",
            sa.Enum("up", "down", name="feedbackrating", native_enum=False, length=8),
            nullable=True,
        ),
        sa.Column("feedback_comment", sa.Text(), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_query_log_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_query_log")),
    )
    op.create_index(
        "ix_query_log_tenant_created", "query_log", ["tenant_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_query_log_tenant_created", table_name="query_log")
    op.drop_table("query_log")

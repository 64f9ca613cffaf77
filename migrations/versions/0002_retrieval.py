"""retrieval: per-tenant BM25 statistics

Revision ID: 0002_retrieval
Revises: 0001_initial
Create Date: 2026-11-24 17:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_retrieval"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bm25_term_stats",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("term_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_bm25_term_stats_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "term_id", name=op.f("pk_bm25_term_stats")),
    )
    op.create_table(
        "bm25_corpus_stats",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("doc_count", sa.Integer(), nullable=False),
        sa.Column("total_length", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_bm25_corpus_stats_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_bm25_corpus_stats")),
    )


def downgrade() -> None:
    op.drop_table("bm25_corpus_stats")
    op.drop_table("bm25_term_stats")

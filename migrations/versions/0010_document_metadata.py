"""documents: extracted metadata (organisations, period, period_end, document_type) and
the metadata the tenant supplies (user_metadata), for contextual chunk headers, metadata
filters and questions that name a company or a period

Revision ID: 0010_document_metadata
Revises: 0009_languages
Create Date: 2026-12-02 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_document_metadata"
down_revision: str | None = "0009_languages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("organisations", _json(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("period", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("period_end", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("document_type", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("user_metadata", _json(), server_default="{}", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        for column in ("user_metadata", "document_type", "period_end", "period", "organisations"):
            batch_op.drop_column(column)

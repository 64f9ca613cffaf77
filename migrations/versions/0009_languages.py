"""chunks.language (detected at indexing) and tenants.embedding_model (the model that
embedded the tenant's vectors: another one needs a reindex, vectors are never mixed)

Revision ID: 0009_languages
Revises: 0008_question_usage
Create Date: 2026-12-01 21:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_languages"
down_revision: str | None = "0008_question_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding_model", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("embedding_model")
    with op.batch_alter_table("chunks", schema=None) as batch_op:
        batch_op.drop_column("language")

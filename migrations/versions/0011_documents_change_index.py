"""documents (tenant_id, status, updated_at): the index that lets every search check
cheaply whether a tenant's ready documents changed since its metadata catalogue was read

Revision ID: 0011_documents_change_index
Revises: 0010_document_metadata
Create Date: 2026-12-02 02:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_documents_change_index"
down_revision: str | None = "0010_document_metadata"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_documents_tenant_status_updated",
        "documents",
        ["tenant_id", "status", "updated_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_documents_tenant_status_updated", table_name="documents")

"""Alembic environment and versions: the one schema history for PostgreSQL and SQLite."""

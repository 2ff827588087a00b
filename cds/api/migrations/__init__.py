"""Alembic migrations of the service database (``cds.api.store`` applies them at start)."""

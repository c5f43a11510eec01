"""Alembic migrations; shipped in the wheel as campaigns.migrations (see campaigns.resources)."""

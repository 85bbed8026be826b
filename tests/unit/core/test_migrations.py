"""Migrations own the schema: they build exactly the models' tables, on PostgreSQL and SQLite, and
downgrade cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from audioflow.core.db.engine import make_engine
from audioflow.core.db.migrate import downgrade, upgrade
from audioflow.core.db.models import Base


def test_upgrade_matches_the_models_and_downgrade_empties(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
        downgrade(database_url, "base")
        assert set(inspect(engine).get_table_names()) & set(Base.metadata.tables) == set()
        upgrade(database_url)  # and back up again
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    finally:
        engine.dispose()

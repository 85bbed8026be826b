"""The engine's PostgreSQL connections, on a real server."""

from __future__ import annotations

from sqlalchemy import text

from audioflow.core.db import batch_ingest
from audioflow.core.db.engine import make_engine
from audioflow.core.db.migrate import upgrade
from tests import services


def test_a_statement_prepared_while_its_tables_are_empty_is_planned_again_at_each_execution(
    postgres_server_url: str,
) -> None:
    """A generic plan made on a fresh database scans tables that then grow (the webhook-id lookup of
    every group commit read every delivery): each execution must get a plan of its own."""
    with services.fresh_postgres_database(postgres_server_url) as url:
        upgrade(url)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                for _ in range(20):  # prepared by psycopg from the fifth; then PostgreSQL may go generic
                    batch_ingest.held(conn, ["m-0", "m-1"], ["w-0", "w-1"])
                plans = conn.execute(
                    text(
                        "SELECT count(*), coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                        "FROM pg_prepared_statements"
                    )
                ).one()
        finally:
            engine.dispose()
    prepared, generic, custom = plans
    assert prepared >= 2, "both of the batch's reads are prepared statements"
    assert generic == 0
    assert custom >= 2 * 15

"""Database: models, engine and session helpers, queries, migrations."""

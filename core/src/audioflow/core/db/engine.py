"""Engine and sessions. SQLite gets WAL and a busy timeout so that the gateway and workers, separate
processes, can write to one file; PostgreSQL uses psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

#: The database is unreachable (down, restarting, connection dropped) or every pooled connection stayed
#: busy past the pool's timeout, as opposed to a bad statement or bad data: the gateway answers 503 and
#: workers hold their entry and retry.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)


def make_engine(url: str, *, fsync: bool = True, **kwargs: Any) -> Engine:
    """``fsync`` (``AUDIOFLOW_FSYNC``): SQLite syncs its WAL at every commit (``synchronous=FULL``), so a
    chunk answered 201 keeps its row through a power loss; ``NORMAL`` survives only a process crash.
    PostgreSQL syncs commits by its own configuration."""
    if url.startswith("sqlite"):
        synchronous = "FULL" if fsync else "NORMAL"
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pre-ping (a round trip per checkout): a connection found dead by a statement invalidates the
    # pool (SQLAlchemy does on a disconnect error), that request answers 503 and the next ones reconnect.
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session

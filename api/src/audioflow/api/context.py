"""Everything a request needs, built once in the app's lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audioflow.core.keys import Keys
from audioflow.core.settings import Settings
from audioflow.core.storage import Storage


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis  # sync client, used from the threadpool by ingest
    aredis: aioredis.Redis  # async client, used by WebSocket and live audio
    storage: Storage  # the interface: chunks, recordings, deletion; LocalStorage today
    keys: Keys

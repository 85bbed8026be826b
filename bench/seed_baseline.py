"""The seed's webhook, in Python: the same-run baseline of bench/ingest_wrk.py.

``python -m bench.seed_baseline --port P`` (``DATABASE_URL``, ``REDIS_URL`` from the environment) serves
any ``POST`` with a JSON body ``{meetingId, seq, url|path}`` by doing exactly what the seed's backend did
per webhook (services/backend/src/routes/webhook.ts): upsert the chunk row (autocommit), XADD to the
processing stream, SELECT the previous seq's concat status (and, when it is ready, UPDATE + XADD to the
concat stream), PUBLISH a log line; then answer ``200 {"status":"queued"}``. No signature, no download,
no file. A bare ASGI app on uvicorn (httptools, uvloop), psycopg's async connections (a pool of 10, as
node-postgres's default) and redis.asyncio: the seed's Express + pg + ioredis, in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import redis.asyncio as aioredis
import uvicorn

from tests.services import psycopg_conninfo

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

POOL_SIZE = 10
QUEUED = b'{"status":"queued"}'


class Pool:
    """A fixed set of autocommit connections handed out in turn."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.free: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(POOL_SIZE):
            self.free.put_nowait(await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self.free.get()
        try:
            yield conn
        finally:
            self.free.put_nowait(conn)


class SeedWebhook:
    def __init__(self, database_url: str, redis_url: str) -> None:
        self.pool = Pool(psycopg_conninfo(database_url))
        self.redis = aioredis.Redis.from_url(redis_url)
        self.prefix = "seedbench:" + os.urandom(4).hex() + ":"

    async def start(self) -> None:
        await self.pool.open()
        async with self.pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS seed_chunks (meetingId TEXT, seq INT, text TEXT, path TEXT, "
                "processing_status TEXT, concat_status TEXT, PRIMARY KEY (meetingId, seq))"
            )

    async def handle(self, payload: dict[str, Any]) -> None:
        meeting_id, seq = payload["meetingId"], int(payload["seq"])
        path = payload.get("path") or payload.get("url")
        message = json.dumps({"meetingId": meeting_id, "seq": seq, "path": path})
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO seed_chunks (meetingId, seq, path, processing_status, concat_status) "
                "VALUES (%s, %s, %s, 'queued', 'queued') ON CONFLICT (meetingId, seq) DO UPDATE SET path = "
                "EXCLUDED.path",
                (meeting_id, seq, path),
            )
        await self.redis.xadd(self.prefix + "queue.backend_to_processing", {"json": message})
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT concat_status FROM seed_chunks WHERE meetingId = %s AND seq = %s",
                (meeting_id, seq - 1),
            )
            previous = await cursor.fetchone()
        if seq == 0 or (previous is not None and previous[0] == "done"):
            async with self.pool.connection() as conn:
                await conn.execute(
                    "UPDATE seed_chunks SET concat_status = 'running' WHERE meetingId = %s AND seq = %s "
                    "AND concat_status = 'queued'",
                    (meeting_id, seq),
                )
            await self.redis.xadd(self.prefix + "queue.backend_to_concat", {"json": message})
        log = {"service": "BACKEND", "msg": f"Webhook received seq={seq}", "ts": time.time()}
        await self.redis.publish(self.prefix + "logs", json.dumps(log))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            await self.handle(json.loads(body))
            status, answer = 200, QUEUED
        except Exception as exc:  # the seed's errorHandler: 500 on anything thrown
            status, answer = 500, json.dumps({"error": str(exc)}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = SeedWebhook(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

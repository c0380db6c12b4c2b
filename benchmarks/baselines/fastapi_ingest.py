"""The ingest baseline: FastAPI + pydantic v2 + uvicorn, writing durably to SQLite.

What a competent user would write for the same job: validate the batch with pydantic (the same
rules as segflow), dedupe on (source, messageId) with ``INSERT OR IGNORE``, and commit each
request in one SQLite transaction with ``synchronous=FULL`` (WAL) before answering 200.

Run: ``python -m benchmarks.baselines.fastapi_ingest DB_PATH PORT``
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time

import uvicorn
from fastapi import FastAPI, HTTPException, Request

from benchmarks.baselines.pydantic_models import Batch, Message

_local = threading.local()


def build_app(db_path: str) -> FastAPI:
    init = sqlite3.connect(db_path)
    init.execute("PRAGMA journal_mode=WAL")
    init.execute(
        "CREATE TABLE IF NOT EXISTS events(source TEXT, message_id TEXT, received_at_ms INTEGER,"
        " payload TEXT, PRIMARY KEY(source, message_id))"
    )
    init.close()
    app = FastAPI()

    def con() -> sqlite3.Connection:
        c = getattr(_local, "con", None)
        if c is None:
            c = sqlite3.connect(db_path, isolation_level=None)
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA busy_timeout=10000")
            _local.con = c
        return c

    def store(messages: list[Message]) -> None:
        now = time.time_ns() // 1_000_000
        rows = [("bench", m.message_id, now, m.model_dump_json(by_alias=True)) for m in messages]
        c = con()
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT OR IGNORE INTO events VALUES(?,?,?,?)", rows)
        c.execute("COMMIT")

    @app.post("/v1/batch")
    def batch(body: Batch) -> dict[str, object]:
        store(body.batch)
        return {"success": True}

    @app.post("/v1/track")
    async def track(request: Request) -> dict[str, object]:
        raw = await request.body()
        try:
            message = Message.model_validate({**json.loads(raw), "type": "track"})
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        await _run(store, [message])
        return {"success": True}

    return app


async def _run(fn: object, *args: object) -> None:
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(fn, *args)  # type: ignore[arg-type]


if __name__ == "__main__":
    uvicorn.run(
        build_app(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )

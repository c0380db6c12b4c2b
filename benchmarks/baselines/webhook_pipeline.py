"""The activation baseline: events in, signed webhooks out, as a competent user would write it.

FastAPI + pydantic v2 + uvicorn. ``POST /v1/batch`` validates the batch (the same rules as
segflow), appends it to SQLite (WAL, ``synchronous=FULL``) and answers 200 after the commit.
One thread polls the events table after its cursor; a ``track "Signed Up"`` of a user not yet
in the segment inserts the membership and POSTs a Standard-Webhooks-signed change with a
keep-alive ``httpx.Client`` (up to ``BATCH`` changes per request when batching). No durable
delivery queue, no retries, no per-profile ordering, no consent, no SSRF guard: less work
than segflow does. ``GET /api/v1/profiles/user_id:{id}/segments`` reads the memberships table.

Run: ``python -m benchmarks.baselines.webhook_pipeline DB_PATH PORT HOOK_URL BATCH SECRET``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import sys
import threading
import time
import uuid

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException

from benchmarks.baselines.pydantic_models import Batch

_local = threading.local()
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, message_id TEXT UNIQUE,"
    " user_id TEXT, event TEXT, received_at_ms INTEGER, payload TEXT)",
    "CREATE TABLE IF NOT EXISTS members(user_id TEXT, segment TEXT, at_ms INTEGER,"
    " PRIMARY KEY(user_id, segment))",
)


def connect(db_path: str) -> sqlite3.Connection:
    c = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("PRAGMA busy_timeout=10000")
    return c


def sign(secret: bytes, msg_id: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(secret, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }


def deliver(db_path: str, hook_url: str, batch: int, secret: bytes) -> None:
    """The delivery thread: poll, decide membership, POST."""
    con, cursor = connect(db_path), 0
    with httpx.Client() as client:
        while True:
            rows = con.execute(
                "SELECT seq, user_id, event FROM events WHERE seq > ? ORDER BY seq LIMIT 1000",
                (cursor,),
            ).fetchall()
            if not rows:
                time.sleep(0.005)
                continue
            cursor = rows[-1][0]
            now = time.time_ns() // 1_000_000
            entered = [u for _, u, e in rows if e == "Signed Up"]
            con.execute("BEGIN IMMEDIATE")
            fresh = [
                u
                for u in entered
                if con.execute(
                    "INSERT OR IGNORE INTO members VALUES (?, 'signed', ?)", (u, now)
                ).rowcount
            ]
            con.execute("COMMIT")
            changes = [
                {"type": "segment.entered", "data": {"segment": "signed", "kind": "entered",
                 "identifiers": [{"type": "user_id", "value": u}], "at_ms": now}}
                for u in fresh
            ]  # fmt: skip
            for i in range(0, len(changes), batch):
                chunk = changes[i : i + batch]
                doc = chunk[0] if batch == 1 else {"type": "batch", "data": chunk}
                body = json.dumps(doc).encode()
                client.post(hook_url, content=body, headers=sign(secret, str(uuid.uuid4()), body))


def build_app(db_path: str, hook_url: str, batch: int, secret: bytes) -> FastAPI:
    init = connect(db_path)
    for statement in SCHEMA:
        init.execute(statement)
    init.close()
    threading.Thread(target=deliver, args=(db_path, hook_url, batch, secret), daemon=True).start()
    app = FastAPI()

    def con() -> sqlite3.Connection:
        c = getattr(_local, "con", None)
        if c is None:
            c = _local.con = connect(db_path)
        return c

    @app.post("/v1/batch")
    def ingest(body: Batch) -> dict[str, object]:
        now = time.time_ns() // 1_000_000
        rows = [
            (m.message_id, str(m.user_id), m.event, now, m.model_dump_json(by_alias=True))
            for m in body.batch
        ]
        c = con()
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT OR IGNORE INTO events (message_id, user_id, event, received_at_ms, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        c.execute("COMMIT")
        return {"success": True}

    @app.get("/api/v1/profiles/user_id:{user_id}/segments")
    def segments(user_id: str) -> dict[str, object]:
        rows = con().execute("SELECT segment FROM members WHERE user_id=?", (user_id,)).fetchall()
        if not rows:
            raise HTTPException(404, "no such profile")
        return {"user_id": user_id, "segments": [r[0] for r in rows]}

    return app


if __name__ == "__main__":
    db, port, url, size, key = sys.argv[1:6]
    app = build_app(db, url, int(size), base64.b64decode(key.removeprefix("whsec_")))
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)

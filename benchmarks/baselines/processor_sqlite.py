"""What a competent engineer would write instead of segflow's processor: identity stitching
and profile updates straight in SQLite (ids -> profile, a JSON profile row, a timeline row per
event), committed every batch with ``synchronous=FULL``. No limits, no merge history, no
outbox: strictly less work than segflow does. Plus the FastAPI + pydantic lookup endpoint
such an engineer would put in front of it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from segflow.log.base import Record

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS ids (key TEXT PRIMARY KEY, profile_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ids_profile ON ids (profile_id);
CREATE TABLE IF NOT EXISTS profiles (profile_id TEXT PRIMARY KEY, created_ms INTEGER, first_seen INTEGER,
    last_seen INTEGER, traits TEXT, counts TEXT);
CREATE TABLE IF NOT EXISTS timeline (profile_id TEXT, ts INTEGER, message_id TEXT);
CREATE INDEX IF NOT EXISTS timeline_profile ON timeline (profile_id, ts);
"""


def _keys(record: Record) -> list[str]:
    e = record.event
    out = []
    if e.user_id:
        out.append(f"user_id:{e.user_id}")
    email = (e.traits or {}).get("email") or ((e.context or {}).get("traits") or {}).get("email")
    if isinstance(email, str) and email.strip():
        out.append(f"email:{email.strip().lower()}")
    if e.anonymous_id and e.anonymous_id not in ("null", "undefined", ""):
        out.append(f"anonymous_id:{e.anonymous_id}")
    return out


class SqliteBaseline:
    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(str(path), isolation_level=None)
        self.con.executescript(SCHEMA)
        self.con.execute("PRAGMA synchronous=FULL")

    def process(self, records: list[Record], batch: int = 2000) -> None:
        for start in range(0, len(records), batch):
            self.con.execute("BEGIN IMMEDIATE")
            for record in records[start : start + batch]:
                self._one(record)
            self.con.execute("COMMIT")

    def _one(self, record: Record) -> None:
        e = record.event
        keys = _keys(record)
        if not keys:
            return
        found = []
        for key in keys:
            row = self.con.execute("SELECT profile_id FROM ids WHERE key = ?", (key,)).fetchone()
            if row and row[0] not in found:
                found.append(row[0])
        pid = found[0] if found else f"p-{e.message_id}"
        row = self.con.execute(
            "SELECT created_ms, first_seen, last_seen, traits, counts FROM profiles WHERE profile_id = ?",
            (pid,),
        ).fetchone()
        prof: list[Any] = (
            [e.timestamp_ms, e.timestamp_ms, e.timestamp_ms, {}, {}]
            if row is None
            else [row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4])]
        )
        for other in found[1:]:
            self._merge(pid, other, prof)
        for key in keys:
            self.con.execute(
                "INSERT OR REPLACE INTO ids (key, profile_id) VALUES (?, ?)", (key, pid)
            )
        prof[1], prof[2] = min(prof[1], e.timestamp_ms), max(prof[2], e.timestamp_ms)
        name = e.event if e.type == "track" and e.event else e.type
        prof[4][name] = prof[4].get(name, 0) + 1
        if e.type == "identify":
            for k, v in e.traits.items():
                cur = prof[3].get(k)
                if cur is None or cur[1] <= e.timestamp_ms:
                    prof[3][k] = [v, e.timestamp_ms]
        self.con.execute(
            "INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?, ?, ?)",
            (pid, prof[0], prof[1], prof[2], json.dumps(prof[3]), json.dumps(prof[4])),
        )
        self.con.execute(
            "INSERT INTO timeline VALUES (?, ?, ?)", (pid, e.timestamp_ms, e.message_id)
        )

    def _merge(self, pid: str, other: str, prof: list[Any]) -> None:
        row = self.con.execute(
            "SELECT created_ms, first_seen, last_seen, traits, counts FROM profiles WHERE profile_id = ?",
            (other,),
        ).fetchone()
        self.con.execute("UPDATE ids SET profile_id = ? WHERE profile_id = ?", (pid, other))
        self.con.execute("UPDATE timeline SET profile_id = ? WHERE profile_id = ?", (pid, other))
        self.con.execute("DELETE FROM profiles WHERE profile_id = ?", (other,))
        if row is None:
            return
        prof[1], prof[2] = min(prof[1], row[1]), max(prof[2], row[2])
        for k, v in json.loads(row[3]).items():
            if k not in prof[3] or prof[3][k][1] < v[1]:
                prof[3][k] = v
        for k, n in json.loads(row[4]).items():
            prof[4][k] = prof[4].get(k, 0) + n

    def close(self) -> None:
        self.con.close()


class Identity(BaseModel):
    type: str
    value: str


class ProfileOut(BaseModel):
    id: str
    identities: list[Identity]
    traits: dict[str, Any]
    first_seen: int
    last_seen: int


def baseline_app(path: Path, token: str) -> Any:
    """FastAPI + pydantic: GET /api/v1/profiles/{type}:{value} from the baseline's tables."""
    from fastapi import FastAPI, Header, HTTPException

    app = FastAPI()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    @app.get("/api/v1/profiles/{ident}")
    def get_profile(ident: str, authorization: str = Header("")) -> ProfileOut:
        if authorization != f"Bearer {token}":
            raise HTTPException(401)
        row = con.execute("SELECT profile_id FROM ids WHERE key = ?", (ident,)).fetchone()
        if row is None:
            raise HTTPException(404)
        p = con.execute(
            "SELECT profile_id, first_seen, last_seen, traits FROM profiles WHERE profile_id = ?",
            (row[0],),
        ).fetchone()
        ids = [k for (k,) in con.execute("SELECT key FROM ids WHERE profile_id = ?", (row[0],))]
        return ProfileOut(
            id=p[0],
            identities=[Identity(type=k.split(":", 1)[0], value=k.split(":", 1)[1]) for k in ids],
            traits={k: v[0] for k, v in json.loads(p[3]).items()},
            first_seen=p[1],
            last_seen=p[2],
        )

    return app

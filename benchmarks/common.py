"""Shared helpers of the collection benchmarks: medians, machine, markdown rows."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: ``benchmarks`` importable


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def tree_env(src: str | Path) -> dict[str, str]:
    """The environment of a child process whose ``segflow`` comes from the tree ``src`` (another
    checkout's ``src/``: a before/after in one invocation) and ``benchmarks`` from this one."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}


def run_in_tree(module: str, src: str | Path, argv: Sequence[str]) -> str:
    """The standard output of ``python -m module *argv`` run on the tree ``src``
    (:func:`tree_env`); a child that fails raises ``CalledProcessError``."""
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        env=tree_env(src),
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in out.splitlines()
                if line.startswith("Model name")
            ),
            "?",
        )
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or "?"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def evaluator() -> str:
    """The line every benchmark of the rules prints: which evaluator ran (a fresh worktree has
    no compiled kernel and falls back to the pure-Python one).

    >>> evaluator().startswith("# evaluator: ")
    True
    """
    from segflow.rules.incremental.kernel import status

    return f"# evaluator: {status()}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


RECEIVER = """
import json, sys, time
import uvicorn
seen = []
def changes(doc):
    return doc["data"] if doc.get("type") == "batch" else [doc]
%s
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    now = time.time()
    if scope["method"] == "GET":
        out = json.dumps(seen).encode(); seen.clear()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": out}); return
    if scope["path"] == "/hook":  # other paths: destinations parsed but not timed
        seen.extend([key, now] for change in changes(json.loads(body)) for key in keys(change))
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def receiver_script(keys: str) -> str:
    """A webhook receiver (uvicorn; run as ``python SCRIPT PORT``) that notes when each change
    posted to ``/hook`` arrived, under the keys that ``keys`` (the source of a function
    ``keys(change)`` yielding strings) picks; ``GET`` returns and clears ``[[key, time], ...]``.

    >>> "def keys(change)" in receiver_script("def keys(change):\\n    yield change['id']")
    True
    """
    return RECEIVER % keys


def durable_postgres() -> tuple[str, Callable[[], None]]:
    """A throwaway PostgreSQL server on loopback (tests/support/postgres.py) with ``fsync``,
    ``full_page_writes`` and ``synchronous_commit`` back on (the test server runs without
    them): its DSN and a function that stops it."""
    import psycopg
    from tests.support.postgres import start_postgres

    server = start_postgres()
    with psycopg.connect(server.dsn, autocommit=True) as con:
        for name in ("fsync", "full_page_writes", "synchronous_commit"):
            con.execute(f"ALTER SYSTEM SET {name} = on")
        con.execute("SELECT pg_reload_conf()")
    return server.dsn, server.stop

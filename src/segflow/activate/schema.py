"""The tables of ``delivery.sqlite`` and the migrations run when it is opened.

=============== ===================================================================
table           what
=============== ===================================================================
destinations    one JSON spec per destination
secrets         signing secrets, Fernet-encrypted (:mod:`segflow.activate.secretbox`)
subscriptions   destination x segment: kinds and traits
cursors         the change feed cursor (advanced with the rows it produced)
deliveries      the queue: one row per change per destination; ``batch_key`` freezes a
                batch's membership at its first attempt
attempts        every attempt of every delivery (status, error, latency, next retry)
sent_state      what each destination has been told per (profile, segment)
last_delivered  the newest delivered row per (destination, profile, segment): replays of
                older dead letters are superseded by it
consents        each profile's ``consent`` trait as of the feed's position
notices         what the operator must know (a destination disabled by 410 ...)
=============== ===================================================================

>>> import sqlite3
>>> con = sqlite3.connect(":memory:")
>>> from segflow.db.sqlite import columns
>>> create(con); sorted(columns(con, "deliveries"))[:3]
['at_ms', 'attempts', 'batch_key']
"""

from __future__ import annotations

import sqlite3

from segflow.db.sqlite import create_schema

TABLES = """
CREATE TABLE IF NOT EXISTS destinations (name TEXT PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, secret TEXT NOT NULL,
    created_ms INTEGER NOT NULL, expires_ms INTEGER);
CREATE TABLE IF NOT EXISTS subscriptions (
    destination TEXT NOT NULL, segment TEXT NOT NULL, spec BLOB NOT NULL,
    PRIMARY KEY (destination, segment));
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, profile_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL, segment TEXT NOT NULL, kind TEXT NOT NULL,
    sequence INTEGER NOT NULL, at_ms INTEGER NOT NULL, payload BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL, first_attempt_ms INTEGER, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER, last_error TEXT, finished_ms INTEGER, batch_key TEXT);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, delivery_id INTEGER NOT NULL, number INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, status INTEGER, error TEXT, latency_ms REAL NOT NULL,
    next_attempt_ms INTEGER);
CREATE TABLE IF NOT EXISTS sent_state (
    destination TEXT NOT NULL, profile_id TEXT NOT NULL, segment TEXT NOT NULL,
    kind TEXT NOT NULL, PRIMARY KEY (destination, profile_id, segment));
CREATE TABLE IF NOT EXISTS last_delivered (
    destination TEXT NOT NULL, profile_id TEXT NOT NULL, segment TEXT NOT NULL,
    delivery_id INTEGER NOT NULL, PRIMARY KEY (destination, profile_id, segment));
CREATE TABLE IF NOT EXISTS consents (profile_id TEXT PRIMARY KEY, consent BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY, destination TEXT NOT NULL, at_ms INTEGER NOT NULL,
    level TEXT NOT NULL, message TEXT NOT NULL);
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (destination, profile_id, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (destination, status, id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, next_attempt_ms)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_batch ON deliveries (batch_key)
    WHERE batch_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id, id);
"""

# columns added after the first release: (table, column, declaration)
ADDED_COLUMNS = (("deliveries", "batch_key", "TEXT"),)


def create(con: sqlite3.Connection) -> None:
    """Create missing tables, add missing columns, then the indexes (idempotent)."""
    create_schema(con, TABLES, added=ADDED_COLUMNS, after=INDEXES)

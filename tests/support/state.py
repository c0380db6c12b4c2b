"""Reading a state store's committed values in tests, closing the reader each time (a
PostgreSQL reader holds a connection)."""

from __future__ import annotations

from typing import Any


def committed_get(store: Any, ns: str, key: str) -> bytes | None:
    reader = store.reader()
    try:
        return reader.get(ns, key)  # type: ignore[no-any-return]
    finally:
        reader.close()


def committed_scan(store: Any, ns: str, start: str, end: str) -> list[tuple[str, bytes]]:
    reader = store.reader()
    try:
        return reader.scan(ns, start, end)  # type: ignore[no-any-return]
    finally:
        reader.close()

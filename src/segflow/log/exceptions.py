"""Errors of the event log.

::

    TransientError (segflow.errors)
    ├── LogWriteFailed      the append did not reach the disk (disk full, I/O error): retry
    ├── LogBackpressure     too many appends are waiting for the disk: retry later
    └── DuplicateInFlight   the same messageId is being appended by another request (Kafka)
"""

from __future__ import annotations

from segflow.errors import TransientError


class LogWriteFailed(TransientError):
    code = "log_write_failed"


class LogBackpressure(TransientError):
    code = "log_backpressure"


class LogClosed(TransientError):
    code = "log_closed"


class DuplicateInFlight(TransientError):
    code = "duplicate_in_flight"

"""Application logs: JSON lines when stderr is not a terminal, Rich when it is; request ids.

:func:`configure_logging` sets up the root logger once per process (``segflow serve``).
Every record carries the id of the HTTP request it was logged in (``request_id``, from
:data:`REQUEST_ID`, set by ``segflow.server.requests``), and every message goes through
:class:`Redactor`, which masks what must never reach a log even by mistake: e-mail
addresses, API tokens (``sft_...``) and ``writeKey`` values.

>>> import io, json, logging
>>> out = io.StringIO()
>>> handler = json_handler(out)
>>> logger = logging.getLogger("segflow.doc")
>>> logger.addHandler(handler); logger.setLevel("INFO"); logger.propagate = False
>>> token = REQUEST_ID.set("req-1")
>>> logger.info("signed up %s", "ann@example.com")
>>> REQUEST_ID.reset(token); logger.removeHandler(handler)
>>> line = json.loads(out.getvalue())
>>> line["message"], line["request_id"], line["level"]
('signed up [email]', 'req-1', 'info')
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import IO, Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "segflow_request_id", default=None
)
FORMATS = ("auto", "json", "text")

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN = re.compile(r"\bsft_[A-Za-z0-9_-]+")
_WRITE_KEY = re.compile(r"(writeKey[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+", re.IGNORECASE)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with e-mail addresses, API tokens and write keys masked.

    >>> redact('token sft_ab12_xyz for a@b.io, {"writeKey": "wk_1"}')
    'token [token] for [email], {"writeKey": "[redacted]"}'
    """
    text = _EMAIL.sub("[email]", text)
    text = _TOKEN.sub("[token]", text)
    return _WRITE_KEY.sub(r"\1[redacted]", text)


class Redactor(logging.Filter):
    """Formats each record's message once, masked by :func:`redact`, and adds ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_segflow_redacted", False):
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record._segflow_redacted = True
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``
    (when in a request), ``exc`` (a traceback) and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if (
                key not in _STANDARD
                and key[0] != "_"
                and key != "color_message"
                and value is not None
            ):
                out[key] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def json_handler(stream: IO[str]) -> logging.Handler:
    """A handler writing JSON lines to ``stream`` (redacted, with request ids)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redactor())
    return handler


def _text_handler(stream: IO[str]) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(file=stream), rich_tracebacks=False, show_path=False)
    handler.addFilter(Redactor())
    return handler


def configure_logging(
    level: str = "warning", fmt: str = "auto", stream: IO[str] | None = None
) -> None:
    """Route every logger to one handler on ``stream`` (stderr): JSON lines, or Rich text
    when ``fmt`` is ``text`` or ``auto`` on a terminal. Replaces earlier root handlers."""
    if fmt not in FORMATS:
        from segflow.errors import ConfigError

        raise ConfigError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = json_handler(stream) if use_json else _text_handler(stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)

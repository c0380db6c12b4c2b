"""Structured logs: JSON lines off a terminal, redaction of personal data and secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from segflow.telemetry.logs import REQUEST_ID, configure_logging


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_lines_when_not_a_terminal(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    token = REQUEST_ID.set("r-42")
    try:
        logging.getLogger("segflow.test").info("hello %s", "world", extra={"n": 3})
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("segflow.test").debug("below the level")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "hello world" and lines[0]["request_id"] == "r-42"
    assert lines[0]["n"] == 3 and lines[0]["level"] == "info"


def test_text_on_a_terminal(restore_root: None) -> None:
    out = Tty()
    configure_logging("warning", "auto", out)
    logging.getLogger("segflow.test").warning("careful")
    assert "careful" in out.getvalue() and not out.getvalue().lstrip().startswith("{")


def test_messages_and_tracebacks_are_redacted(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    log = logging.getLogger("segflow.test")
    try:
        raise ValueError('bad value for {"email": "ann@example.com", "writeKey": "wk_secret1"}')
    except ValueError:
        log.exception("failed for %s with sft_abc123_def456", "bob@example.org")
    text = out.getvalue()
    for secret in ("ann@example.com", "bob@example.org", "wk_secret1", "sft_abc123_def456"):
        assert secret not in text
    line = json.loads(text)
    assert "ValueError" in line["exc"] and "[email]" in line["exc"]


def test_unknown_format_is_a_config_error() -> None:
    from segflow.errors import ConfigError

    with pytest.raises(ConfigError):
        configure_logging("info", "xml", io.StringIO())

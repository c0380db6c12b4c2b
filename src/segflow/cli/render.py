"""How the CLI prints: tables for people, one JSON document with ``--json``, progress on stderr.

Every listing and every ``show`` command takes :data:`JsonOption`. Without it a listing is a
table and a record is highlighted JSON; with it, stdout holds exactly one JSON document (for
``jq`` and scripts) and nothing else. Progress and notices go to stderr, so they never mix
with what a script reads.

>>> import io, contextlib
>>> out = io.StringIO()
>>> with contextlib.redirect_stdout(out):
...     rows([{"name": "buyers", "size": 3}], ("name", "size"), as_json=True)
>>> out.getvalue()
'[\\n  {\\n    "name": "buyers",\\n    "size": 3\\n  }\\n]\\n'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

JsonOption = typer.Option(
    False, "--json", help="print one JSON document (for scripts and jq) instead of a table"
)


def emit_json(data: Any) -> None:
    """``data`` (structs, lists, dicts) as one indented JSON document on stdout."""
    typer.echo(json.dumps(msgspec.to_builtins(data), indent=2, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:80]
    return str(value)


def rows(
    data: Sequence[Any], columns: Sequence[str], *, as_json: bool, title: str | None = None
) -> None:
    """A listing: a table of ``columns`` of each row, or every row in full as JSON."""
    if as_json:
        emit_json(list(data))
        return
    table = Table(*columns, title=title)
    for row in data:
        values: Mapping[str, Any] = row if isinstance(row, Mapping) else msgspec.to_builtins(row)
        table.add_row(*(_cell(values.get(c)) for c in columns))
    Console().print(table)


def record(data: Any, *, as_json: bool) -> None:
    """One record: highlighted JSON for people, plain JSON with ``--json``."""
    if as_json:
        emit_json(data)
        return
    Console().print_json(json.dumps(msgspec.to_builtins(data), default=str))


@contextmanager
def counting(text: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A running count of ``unit`` with the elapsed time on stderr; yields ``advance(n)``."""
    columns = (SpinnerColumn(), TextColumn(text), TextColumn(f"{{task.completed:,.0f}} {unit}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(text, total=None)
        yield lambda n: bar.advance(task, n)


@contextmanager
def working(text: str) -> Iterator[None]:
    """A spinner on stderr while a step of unknown length runs."""
    with Console(stderr=True).status(text):
        yield

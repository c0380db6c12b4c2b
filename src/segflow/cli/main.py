"""The ``segflow`` command line: parses, calls one service, renders.

Each area registers its commands in its own module (``segflow.cli.<area>``), which exposes
``register(app: typer.Typer) -> None``. Add one line to ``_AREAS`` to wire a new area.
"""

from __future__ import annotations

import importlib

import msgspec
import typer

from segflow.errors import SegflowError

HELP = (
    "segflow: self-hosted, real-time behavioral segmentation.\n\n"
    "Collects events through a Segment-compatible API (/v1), stitches each person's identifiers "
    "into one profile, keeps segment memberships current as events arrive and as time passes, "
    "scores profiles with ML models, and pushes membership changes to webhooks and files.\n\n"
    "Start with `segflow demo` (a simulated shop: the five-minute tour), or run your own: "
    "`segflow serve --data-dir DIR`, `segflow sources create web`, `segflow tokens create "
    "--role admin`, then open http://127.0.0.1:8080/console (the admin API: /api/v1/docs).\n\n"
    "Every command works on one data directory (--data-dir, or settings server.data_dir) and "
    "is safe to run while `segflow serve` runs on it. Listings and show commands take --json "
    "(one JSON document on stdout); errors are JSON on stderr with exit code 2 (a rule that "
    "does not compile: its line, a caret and the message; JSON with --json). "
    "`segflow COMMAND --help` documents each command; docs/cli.md lists them all."
)

app = typer.Typer(
    name="segflow",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under segflow.cli that each expose register(app). Keep alphabetical.
_AREAS: tuple[str, ...] = (
    "audit",
    "backup",
    "dead_letters",
    "demo",
    "deliveries",
    "destinations",
    "imports",
    "ml",
    "privacy",
    "process",
    "profiles",
    "segments",
    "serve",
    "sources",
    "status",
    "syncs",
    "tokens",
    "warehouse",
)


def _register_all() -> None:
    for area in _AREAS:
        module = importlib.import_module(f"segflow.cli.{area}")
        module.register(app)


@app.command()
def version() -> None:
    """Print segflow's version and exit."""
    from segflow import __version__

    typer.echo(__version__)


def main() -> None:
    _register_all()
    try:
        app()
    except SegflowError as exc:  # not caught by the command (e.g. the shared database is down)
        typer.echo(msgspec.json.encode(exc.to_dict()).decode(), err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()

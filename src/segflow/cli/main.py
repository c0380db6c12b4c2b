"""The ``segflow`` command line: parses, calls one service, renders.

Each area registers its commands in its own module (``segflow.cli.<area>``), which exposes
``register(app: typer.Typer) -> None``. Add one line to ``_AREAS`` to wire a new area.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="segflow",
    help="segflow: self-hosted, real-time behavioral segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under segflow.cli that each expose register(app). Keep alphabetical.
_AREAS: tuple[str, ...] = (
    "audit",
    "dead_letters",
    "demo",
    "deliveries",
    "destinations",
    "imports",
    "ml",
    "process",
    "profiles",
    "segments",
    "serve",
    "sources",
    "status",
    "tokens",
    "warehouse",
)


def _register_all() -> None:
    for area in _AREAS:
        module = importlib.import_module(f"segflow.cli.{area}")
        module.register(app)


@app.command()
def version() -> None:
    """Print segflow's version."""
    from segflow import __version__

    typer.echo(__version__)


def main() -> None:
    _register_all()
    app()


if __name__ == "__main__":
    main()

"""``segflow profiles show TYPE:VALUE``: a profile, read from the processor's state."""

from __future__ import annotations

from pathlib import Path

import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import JsonOption, record

profiles_app = typer.Typer(
    help="Unified profiles: every identifier of a person stitched into one profile "
    "(docs/identity.md), with traits, computed traits, scores and segments.",
    no_args_is_help=True,
)


@profiles_app.command("show")
def show(
    ident: str = typer.Argument(..., help="type:value, e.g. user_id:42 or email:ann@example.com"),
    events: int = typer.Option(0, "--events", help="also print the newest N events"),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Print the profile holding an identifier (exit 1 when unknown)."""
    import msgspec

    from segflow.log.drivers import open_event_log
    from segflow.stream.compose import build_reader
    from segflow.stream.reader import profile_json

    settings = resolve_settings(data_dir, config)
    log = open_event_log(settings)
    try:
        reader = build_reader(settings, log)
        id_type, _, value = ident.partition(":")
        try:
            profile = reader.lookup(id_type, value)
        except KeyError:
            typer.echo(f"unknown identifier type {id_type!r}", err=True)
            raise typer.Exit(code=2) from None
        if profile is None:
            typer.echo(f"no profile has {ident}", err=True)
            raise typer.Exit(code=1)
        out = profile_json(profile)
        if events:
            out["events"] = [msgspec.to_builtins(e) for e in reader.events(profile, events)]
        record(out, as_json=as_json)
    finally:
        log.close()


def register(app: typer.Typer) -> None:
    app.add_typer(profiles_app, name="profiles")

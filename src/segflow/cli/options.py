"""Options shared by the CLI modules of the collection area (data directory, settings file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from segflow.config import Settings, load_settings

DataDirOption = typer.Option(
    None, "--data-dir", help="segflow data directory (default: settings server.data_dir)"
)
ConfigOption = typer.Option(
    None, "--config", help="a TOML settings file (flags > env > file > defaults)"
)


def resolve_settings(data_dir: Path | None, config: Path | None, **server: Any) -> Settings:
    """Settings from the file, the environment and the flags that were given."""
    overrides: dict[str, Any] = {k: v for k, v in server.items() if v is not None}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    return load_settings(config, overrides={"server": overrides} if overrides else None)

"""Settings: defaults < TOML file < environment (``SEGFLOW_<SECTION>__<KEY>``) < CLI flags.

Each part of segflow owns one section (a frozen msgspec Struct). Add a section by adding a
field to :class:`Settings`; the loader needs no change.

>>> s = load_settings(env={"SEGFLOW_SERVER__PORT": "9000"})
>>> s.server.port
9000
>>> load_settings(overrides={"server": {"host": "0.0.0.0"}}).server.host
'0.0.0.0'
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from segflow.errors import ConfigError

ENV_PREFIX = "SEGFLOW_"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./segflow-data"


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    driver: str = "sqlite"
    partitions: int = 8


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All of segflow's settings, one section per part."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = _parse_env_value(raw)
    return out


def _parse_env_value(raw: str) -> Any:
    """Env values are TOML scalars when they parse as one (``8``, ``true``, ``[1, 2]``), else strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_settings(
    toml_path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings from defaults, a TOML file, the environment and explicit overrides."""
    raw: dict[str, Any] = {}
    if toml_path is not None:
        try:
            raw = tomllib.loads(Path(toml_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {toml_path}: {exc}") from exc
    known = {f.encode_name for f in msgspec.structs.fields(Settings)}
    env_values = {k: v for k, v in _from_env(os.environ if env is None else env).items() if k in known}
    raw = _deep_merge(raw, env_values)
    raw = _deep_merge(raw, overrides or {})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc

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
from typing import Annotated, Any, Literal

import msgspec

from segflow.errors import ConfigError
from segflow.identity.rules import IdentityRules

ENV_PREFIX = "SEGFLOW_"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./segflow-data"
    roles: tuple[str, ...] = ()  # segflow serve --role: collect, process, load, activate, api
    workers: int | str = "auto"  # segflow serve --workers: HTTP worker processes (supervisor)
    # segflow serve --api-port: the admin API and the console in processes of their own, on
    # this port (the supervisor's api-1..N children, --api-workers); None: on the port
    api_port: int | None = None
    api_workers: int = 1
    # the cyclic GC's first threshold in a process that serves HTTP (segflow.server.heap)
    gc_threshold: int = 50_000


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    driver: str = "sqlite"
    partitions: int = 8
    dedupe_window_ms: int = 24 * 3_600_000
    # the embedded log's dedupe ids held in memory per range; older ranges are sealed to disk
    dedupe_memory_ids: Annotated[int, msgspec.Meta(ge=1_000)] = 200_000
    max_pending_events: int = 200_000
    retention_ms: int | None = None  # None: keep the log (timelines and rule backfills read it)
    retention_interval_s: float = 300.0
    # driver = "kafka" (docs/scaling.md): the brokers, the topic, librdkafka settings passed
    # through as they are (security.protocol, sasl.mechanism, sasl.username, ssl.ca.location...)
    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "segflow.events"
    kafka: dict[str, str] = msgspec.field(default_factory=dict)
    session_timeout_ms: int = 10_000


class CollectSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The collection API's limits (Segment's documented ones by default) and CORS."""

    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500
    max_message_id_length: int = 100
    future_tolerance_ms: int = 23 * 3_600_000
    retry_after_s: int = 1
    cors_origins: tuple[str, ...] = ("*",)
    rate_limit_events_per_s: float = 0.0  # per source (write key); 0: no limit
    rate_limit_burst: float = 0.0  # events a source may send at once (0: one second's worth)
    max_inflight_requests: int = 64  # more get 503 + Retry-After before their body is read


class MlSettings(msgspec.Struct, frozen=True, kw_only=True):
    """ML jobs in ``segflow serve``: scheduled when enabled, daily jobs from ``run_at_hour_utc``."""

    schedule_enabled: bool = True
    run_at_hour_utc: int = 2
    check_interval_s: float = 60.0
    threads: int = 0  # cap on the ML libraries' threads in jobs (0: their default)


class CustomFeature(msgspec.Struct, frozen=True, kw_only=True):
    """A user-defined feature: either ``sql``, an aggregate SQL expression over ``profile_events``
    in ``(T - window_days, T]``, or ``rule``, the segment language's aggregate form
    (``count("Order Completed" in last 30 days)``)."""

    name: str
    sql: str = ""
    rule: str = ""
    window_days: int | None = None


class WarehouseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The warehouse: its engine (``duckdb`` file, or ``postgres`` at ``dsn``), loader
    micro-batches, sessionisation and the feature definitions."""

    engine: str = "duckdb"
    dsn: str = ""
    flush_interval_ms: int = 1000
    batch_max_events: int = 50_000
    release_between_batches: bool = True
    hold_file_max_ms: int = 10_000  # held between busy batches at most this long (0: never)
    lock_timeout_s: float = 30.0
    session_gap_minutes: int = 30
    active_event_types: tuple[str, ...] = ("track", "page", "screen")
    order_event: str = "Order Completed"
    revenue_property: str = "revenue"
    support_event: str = "Support Ticket Created"
    key_features: tuple[str, ...] = ()
    custom_features: tuple[CustomFeature, ...] = ()
    retention_ms: int | None = None  # None: keep every event (docs/privacy.md, "Retention")
    retention_interval_s: float = 300.0


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The processor (``segflow.stream``): owned partitions (None = all), batch size, timer poll,
    and its state store (docs/configuration.md, ``[stream]``):

    - ``store``: ``auto`` (RocksDB in ``DATA_DIR/state/`` for one processor on the embedded
      log; ``state.sqlite`` when processors share state on one host — the kafka driver or
      ``optimistic = true`` — or when the data directory already has a ``state.sqlite`` and no
      ``state/``; PostgreSQL whenever ``shared.dsn`` is set), ``rocksdb`` or ``sqlite``;
    - ``synchronous``: ``OFF`` commits without fsync (SQLite's ``synchronous``; RocksDB syncs
      its WAL at every commit unless ``OFF``); FULL by default: every batch commit is fsynced;
    - ``rocksdb_cache_mb`` (block cache), ``rocksdb_write_buffer_mb`` (memtable size) and
      ``rocksdb_compression`` (``lz4``: LZ4, ZSTD on the bottommost level; ``none``);
    - ``working_profiles``: committed profiles kept decoded in memory between batches when the
      store is the processor's alone (RocksDB); ``gc_threshold``: the cyclic garbage
      collector's first threshold while the processor runs (docs/engine.md; 0: CPython's);
      ``gc_freeze``: while it runs, what each loop step kept is frozen out of the collector's
      walks, and everything collected once the heap grew by a quarter (False: not frozen);
      ``kernel``: rule sets run on the compiled rule kernel when it is built (False: on the
      pure-Python evaluator; the same answers, slower);
    - ``dedupe``: drop a record whose message id its partition processed within
      ``log.dedupe_window_ms`` (``auto``: with the kafka driver, whose collectors can append a
      retried event twice; the embedded log refuses duplicates itself; docs/scaling.md).
    """

    group: str = "processor"
    partitions: tuple[int, ...] | None = None
    batch_size: int = 500
    poll_interval_ms: int = 200
    store: Literal["auto", "rocksdb", "sqlite"] = "auto"
    synchronous: str = "FULL"
    optimistic: bool | None = None  # None: on with the kafka driver (processors share the store)
    rocksdb_cache_mb: int = 64
    rocksdb_write_buffer_mb: int = 64
    rocksdb_compression: Literal["lz4", "none"] = "lz4"
    working_profiles: int = 200_000
    gc_threshold: int = 100_000
    gc_freeze: bool = True
    kernel: bool = True
    dedupe: Literal["auto", "on", "off"] = "auto"


class ActivateSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Delivery to destinations: the SSRF allow-list (CIDRs or host names) and pacing."""

    allow_list: tuple[str, ...] = ()
    poll_interval_ms: int = 50
    feed_interval_ms: int = 5
    secret_overlap_ms: int = 24 * 3_600_000
    secrets_key: str | None = None  # Fernet key for webhook secrets; else DATA_DIR/secrets.key
    delivered_retention_ms: int = 7 * 24 * 3_600_000
    export_root: str | None = None  # file destinations write only inside; else DATA_DIR/exports


class PrivacySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Deletion and suppression regulations (docs/privacy.md): how long a regulation waits
    for destinations to confirm the exits, for each store's owner, and whether the stores are
    compacted (rewritten without free space) after regulations finish."""

    compact_after_regulation: bool = True
    notify_timeout_s: float = 30.0
    step_timeout_s: float = 600.0
    poll_interval_s: float = 1.0


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The admin API (``/api/v1``): requests per second per API token (0: no limit), the
    largest request body it reads (413 over it, before reading; 0: no limit), and how stale
    its reads of the processor's state may be in a process that does not run the processor
    (``state_refresh_ms``: the RocksDB secondary catches up at most that often; 0: before
    every read; docs/serve.md, "Reads beside ingest")."""

    rate_limit_per_s: float = 0.0
    rate_limit_burst: float = 0.0
    max_body_bytes: int = 4 * 1024 * 1024
    state_refresh_ms: float = 5.0


class ObservabilitySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Logs, ``/metrics`` and ``/readyz`` (docs/operations.md)."""

    log_level: str = "warning"
    log_format: str = "auto"  # auto (JSON unless stderr is a terminal), json, text
    metrics_auth: str = "open"  # open, or token (an API token with role read)
    ready_max_lag: int = 100_000  # records a consumer group may lag while ready (0: no bound)


class SharedSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where processes on several hosts share their stores (docs/scaling.md, "Many hosts").

    ``dsn`` empty (the default): the processor state, the collectors' dedupe reservations and
    the catalog are SQLite files in ``server.data_dir`` (one host). A PostgreSQL connection
    string (``postgresql://user@db:5432/segflow``): the processors' state, the catalog and
    (with the kafka driver) the collectors' dedupe reservations live in that database instead,
    in tables of ``schema``, so collectors, processors and the API may run on different hosts.
    """

    dsn: str = ""
    schema: str = "segflow"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All of segflow's settings, one section per part."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    collect: CollectSettings = msgspec.field(default_factory=CollectSettings)
    ml: MlSettings = msgspec.field(default_factory=MlSettings)
    warehouse: WarehouseSettings = msgspec.field(default_factory=WarehouseSettings)
    stream: StreamSettings = msgspec.field(default_factory=StreamSettings)
    identity: IdentityRules = msgspec.field(default_factory=IdentityRules)
    activate: ActivateSettings = msgspec.field(default_factory=ActivateSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    observability: ObservabilitySettings = msgspec.field(default_factory=ObservabilitySettings)
    shared: SharedSettings = msgspec.field(default_factory=SharedSettings)

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
    env_values = {
        k: v for k, v in _from_env(os.environ if env is None else env).items() if k in known
    }
    raw = _deep_merge(raw, env_values)
    raw = _deep_merge(raw, overrides or {})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc

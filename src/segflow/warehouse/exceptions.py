"""Errors of the warehouse.

::

    SegflowError
    ├── TransientError
    │   ├── WarehouseBusy          another process holds the DuckDB file (retry later)
    │   └── WarehouseUnavailable   the PostgreSQL warehouse cannot be reached (or no driver)
    ├── ValidationError
    │   ├── QueryError             a user's SQL failed (``segflow sql``, ``segflow export``)
    │   ├── FeatureDefinitionError a configured feature does not compile
    │   └── ImportFormatError      an import file or mapping cannot be read
    └── TerminalError
        └── LoaderError            the loader met something it cannot load
"""

from __future__ import annotations

from segflow.errors import TerminalError, TransientError, ValidationError


class WarehouseBusy(TransientError):
    """The DuckDB file is locked by another process (one writer per file)."""

    code = "warehouse_busy"

    def __init__(self, path: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(
            f"warehouse {path} is locked by another process", retry_after_s=retry_after_s
        )
        self.path = path


class WarehouseUnavailable(TransientError):
    """The configured warehouse server cannot be reached, or its driver is not installed."""

    code = "warehouse_unavailable"

    def __init__(self, reason: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(reason, retry_after_s=retry_after_s)


class QueryError(ValidationError):
    code = "query_error"

    def __init__(self, sql: str, reason: str, *, undefined_table: bool = False) -> None:
        super().__init__("sql", reason, details={"sql": sql})
        self.sql = sql
        self.undefined_table = undefined_table  # the query names a table that does not exist


class FeatureDefinitionError(ValidationError):
    code = "feature_definition_error"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"warehouse.custom_features.{name}", reason)
        self.name = name


class ImportFormatError(ValidationError):
    code = "import_format_error"

    def __init__(self, path: str, reason: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__("file", f"{where}: {reason}", details={"path": path, "line": line})
        self.path = path
        self.line = line


class LoaderError(TerminalError):
    code = "loader_error"

"""``segflow segments list|show|create|delete|check|preview``, ``segflow traits ...``, and
``segflow apply DIR`` / ``segflow export-definitions DIR`` (definitions as YAML files).

Definitions live in the catalog (versioned; ``DATA_DIR/catalog.sqlite``, or the shared database
with ``shared.dsn``); a running ``segflow serve`` picks up every change within a second and backfills the changed rules from history. ``preview`` runs
the rule's SQL on the warehouse (waiting for its lock while ``serve`` writes a micro-batch).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress

from segflow.audit import AuditLog, cli_actor
from segflow.catalogdb import catalog_target
from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.cli.render import JsonOption, emit_json, record, rows, working
from segflow.collect.catalog import SourceCatalog
from segflow.errors import SegflowError
from segflow.rules import RuleSyntaxError
from segflow.rules.exceptions import Diagnostic
from segflow.segments.service import SegmentService
from segflow.segments.store import Kind

segments_app = typer.Typer(
    help="Segments: rules in the segment language (docs/segments.md), versioned in the catalog; "
    "a running `segflow serve` applies a change within a second and backfills it.",
    no_args_is_help=True,
)
traits_app = typer.Typer(
    help="Computed traits: named expressions over a profile's events and traits, usable in "
    "segment rules as `computed NAME`.",
    no_args_is_help=True,
)
NameArgument = typer.Argument(..., help="the definition's name (lower case, digits, _)")


def _none(d: Diagnostic) -> str | None:
    return None


def _service(data_dir: Path | None, config: Path | None) -> SegmentService:
    from segflow.catalogdb import catalog_target
    from segflow.segments.store import DefinitionStore
    from segflow.warehouse.connection import connect, warehouse_path

    settings = resolve_settings(data_dir, config)
    path = warehouse_path(settings.data_path)
    catalog = catalog_target(settings)
    from segflow.privacy.retention import guard

    return SegmentService(
        DefinitionStore(catalog),
        warehouse=lambda: connect(path, timeout_s=settings.warehouse.lock_timeout_s),
        audit=AuditLog(catalog),
        history_check=guard(settings),
    )


def _fail(
    exc: SegflowError, *, as_json: bool = True, source: Callable[[Diagnostic], str | None] = _none
) -> typer.Exit:
    """Exit 2 with the error on stderr: JSON, or for a rule that does not compile (without
    ``--json``) each diagnostic with its line of text and a caret under the column."""
    if isinstance(exc, RuleSyntaxError) and not as_json:
        for d in exc.diagnostics:
            typer.echo(d.explain(source(d)), err=True)
    else:
        typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
    return typer.Exit(code=2)


def _rule_text(rule: str, name: str = "") -> Callable[[Diagnostic], str | None]:
    """The text a diagnostic points into: ``rule`` for its own definition, else none."""
    return lambda d: rule if d.definition in ("", name) else None


def _file_text(d: Diagnostic) -> str | None:
    """The file a located diagnostic (``segflow apply``) names, if it is one."""
    path = Path(d.definition)
    return path.read_text() if d.definition and path.is_file() else None


def _commands(app: typer.Typer, kind: Kind) -> None:
    noun = "segment" if kind == "segment" else "computed trait"

    @app.command("list")
    def list_(
        as_json: bool = JsonOption,
        data_dir: Path | None = DataDirOption,
        config: Path | None = ConfigOption,
    ) -> None:
        """Every current definition: name, version, rule (``--json``: with every field)."""
        found = _service(data_dir, config).definitions(kind)
        rows(found, ("name", "version", "rule", "description"), as_json=as_json)

    @app.command("show")
    def show(
        name: str = NameArgument,
        as_json: bool = JsonOption,
        data_dir: Path | None = DataDirOption,
        config: Path | None = ConfigOption,
    ) -> None:
        """The current version and every earlier one of a definition."""
        svc = _service(data_dir, config)
        try:
            found = {"current": svc.get(kind, name), "history": svc.store.history(kind, name)}
        except SegflowError as exc:
            raise _fail(exc) from exc
        record(found, as_json=as_json)

    @app.command("create")
    def create(
        name: str = NameArgument,
        rule: str = typer.Argument(..., help=f"the {noun}'s text (quote it)"),
        description: str = typer.Option("", "--description", help="what it is for, for people"),
        as_json: bool = typer.Option(False, "--json", help="errors as one JSON object on stderr"),
        data_dir: Path | None = DataDirOption,
        config: Path | None = ConfigOption,
    ) -> None:
        """Create or edit (a new version); refused with every error when it does not compile
        (each with its line, a caret under the column, and the message; ``--json``: JSON).

        Example: ``segflow segments create buyers 'did "Order Completed" in last 30 days'``
        """
        svc = _service(data_dir, config)
        try:
            put = svc.put_segment if kind == "segment" else svc.put_trait
            d = put(name, rule, description, actor=cli_actor())
        except SegflowError as exc:
            raise _fail(exc, as_json=as_json, source=_rule_text(rule, name)) from exc
        typer.echo(f"{noun} {d.name} saved as version {d.version}")

    @app.command("delete")
    def delete(
        name: str = NameArgument,
        data_dir: Path | None = DataDirOption,
        config: Path | None = ConfigOption,
    ) -> None:
        """Delete (its history stays); refused while another segment uses it."""
        try:
            _service(data_dir, config).delete(kind, name, actor=cli_actor())
        except SegflowError as exc:
            raise _fail(exc) from exc
        typer.echo(f"deleted {noun} {name}")


_commands(segments_app, "segment")
_commands(traits_app, "trait")


@segments_app.command("validate", help="Same as check.")
@segments_app.command("check")
def check(
    rule: str = typer.Argument(..., help="a rule to check (nothing is stored)"),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Print every error and warning with line and column; exit 2 on errors."""
    diagnostics = _service(data_dir, config).check(rule)
    failed = any(d.severity == "error" for d in diagnostics)
    if as_json:
        emit_json({"ok": not failed, "diagnostics": diagnostics})
        raise typer.Exit(code=2 if failed else 0)
    for d in diagnostics:
        typer.echo(d.explain(rule if d.definition == "" else None))
    if any(d.severity == "error" for d in diagnostics):
        raise typer.Exit(code=2)
    typer.echo("ok")


@segments_app.command("preview")
def preview(
    rule: str = typer.Argument(..., help="a rule to run on the warehouse"),
    sample: int = typer.Option(10, "--sample", help="how many member ids to show"),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """How many profiles the rule selects now, from the warehouse's full history."""
    try:
        with working("running the rule on the warehouse"):
            result = _service(data_dir, config).preview(rule, sample=sample)
    except SegflowError as exc:
        raise _fail(exc, as_json=as_json, source=_rule_text(rule)) from exc
    if as_json:
        emit_json(result)
        return
    typer.echo(f"{result.count} profiles match; e.g. {', '.join(result.sample) or '-'}")


def apply_definitions(
    directory: Path = typer.Argument(
        ..., help="a folder with segments/*.yaml, traits/*.yaml and webhooks/*.yaml"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would change, change nothing"),
    prune: bool = typer.Option(False, "--prune", help="also delete definitions that have no file"),
    sizes: bool = typer.Option(True, "--sizes/--no-sizes", help="size change of each (SQL)"),
    as_json: bool = typer.Option(False, "--json", help="errors as one JSON object on stderr"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Make the catalogue match a directory of YAML definitions (all or nothing); webhook
    sources (webhooks/NAME.yaml) are created or updated, never pruned."""
    from segflow.segments import files

    svc = _service(data_dir, config)
    try:
        changes = files.plan(svc, directory, prune=prune)
        hooks = _webhook_plan(directory, data_dir, config)
    except SegflowError as exc:
        raise _fail(exc, as_json=as_json, source=_file_text) from exc
    planned = files.future(svc, changes)
    pending = [c for c in changes if c.action != "same"]
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("sizes from the warehouse", total=len(pending))
        lines = []
        for c in pending:
            line = f"{c.action:7} {c.kind:7} {c.name}"
            if sizes and c.kind == "segment":
                line += _size_change(svc, c, planned)
            lines.append(line)
            bar.advance(task)
    for line, change in zip(lines, pending, strict=True):
        typer.echo(line)
        for edit in change.diff():
            typer.echo(f"    {edit}")
    hooks_pending = [h for h in hooks if h.action != "same"]
    for h in hooks_pending:
        typer.echo(f"{h.action:7} webhook {h.name} ({h.vendor})")
    count = len(pending) + len(hooks_pending)
    if dry_run or not count:
        typer.echo(f"{count} to change" + (" (dry run: nothing applied)" if dry_run else ""))
        return
    try:
        done = files.apply(svc, changes, actor=cli_actor())
        done += _webhook_apply(hooks_pending, data_dir, config)
    except SegflowError as exc:
        raise _fail(exc, as_json=as_json) from exc
    typer.echo(f"applied {done} changes")


def _webhook_plan(directory: Path, data_dir: Path | None, config: Path | None) -> list[Any]:
    import os

    from segflow.collect.webhooks import files as webhook_files

    if not (directory / webhook_files.FOLDER).is_dir():
        return []
    catalog = SourceCatalog(catalog_target(resolve_settings(data_dir, config)))
    try:
        return webhook_files.plan(catalog, directory, os.environ)
    finally:
        catalog.close()


def _webhook_apply(hooks: list[Any], data_dir: Path | None, config: Path | None) -> int:
    """Apply webhook sources; a new source's write key (or URL secret) is printed once."""
    from segflow.activate.secretbox import SecretBox
    from segflow.collect.webhooks import files as webhook_files
    from segflow.collect.webhooks.manage import public_source

    settings = resolve_settings(data_dir, config)
    catalog = SourceCatalog(catalog_target(settings))
    box = SecretBox.open(settings.data_path, settings.activate.secrets_key)
    audit = AuditLog(catalog_target(settings))
    try:
        done = webhook_files.apply(catalog, hooks, box)
        for change, key, made in done:
            shown = public_source(catalog.get(change.name))
            audit.record(cli_actor(), "source.webhook", change.name, None, shown)
            if key:
                typer.echo(f"source {change.name}: its write key (shown once): {key}")
            if made:
                typer.echo(f"source {change.name}: its URL secret (shown once): {made}")
    finally:
        catalog.close()
        audit.close()
    return len(done)


def _size_change(svc: SegmentService, change: Any, planned: tuple[Any, Any]) -> str:
    """`` 12 -> 30 profiles`` from the warehouse (blank when it cannot be read)."""
    segments, traits = planned
    try:
        before = svc.preview(change.old_rule, sample=1).count if change.old_rule else 0
        after = (
            svc.preview(change.rule, sample=1, segments=segments, traits=traits).count
            if change.action != "delete"
            else 0
        )
    except SegflowError:
        return ""
    return f"  ({before} -> {after} profiles)"


def export_definitions(
    directory: Path = typer.Argument(..., help="where to write segments/ and traits/"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Write every current segment and computed trait as a YAML file."""
    from segflow.segments import files

    written = files.export(_service(data_dir, config), directory)
    typer.echo(f"wrote {len(written)} files under {directory}")


def register(app: typer.Typer) -> None:
    app.add_typer(segments_app, name="segments")
    app.add_typer(traits_app, name="traits")
    app.command("apply")(apply_definitions)
    app.command("export-definitions")(export_definitions)

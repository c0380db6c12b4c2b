"""``segflow privacy delete|suppress|status|suppressions|unsuppress|compact``.

Regulations are queued in the catalog (the same service the API calls) and run by the
``segflow serve`` process of the data directory, which picks them up within a second;
``--wait`` polls until the regulation finished or failed. Identifiers given on a command line
end up in the shell's history: prefer ``--from-file`` for real requests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import typer

from segflow.cli.options import ConfigOption, DataDirOption, resolve_settings
from segflow.errors import SegflowError
from segflow.privacy.service import PrivacyService

privacy_app = typer.Typer(
    help="Deletion and suppression of a person (GDPR / CCPA): docs/privacy.md.",
    no_args_is_help=True,
)
IdOption = typer.Option([], "--id", help="an identifier as type:value (repeatable)")
UserIdOption = typer.Option([], "--user-id", help="a userId (repeatable)")
EmailOption = typer.Option([], "--email", help="an email (repeatable)")
AnonOption = typer.Option([], "--anonymous-id", help="an anonymousId (repeatable)")
FileOption = typer.Option(
    None, "--from-file", help='a JSON file: [{"type": "email", "value": "..."}]'
)
WaitOption = typer.Option(False, "--wait", help="poll until it finished or failed")
TimeoutOption = typer.Option(600.0, "--timeout", help="seconds --wait waits")


def _service(data_dir: Path | None, config: Path | None) -> PrivacyService:
    from segflow.catalog.audit import AuditLog
    from segflow.catalog.db import catalog_target
    from segflow.privacy.compose import regulations_unsupported
    from segflow.privacy.store import PrivacyStore

    settings = resolve_settings(data_dir, config)
    catalog = catalog_target(settings)
    return PrivacyService(
        PrivacyStore(catalog),
        rules=settings.identity,
        audit=AuditLog(catalog),
        unsupported=regulations_unsupported(settings),
    )


def _emit(data: Any) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(data), indent=2, default=str))


def _fail(exc: SegflowError) -> typer.Exit:
    typer.echo(json.dumps(exc.to_dict(), default=str), err=True)
    return typer.Exit(code=2)


def _identifiers(
    ids: list[str], user_ids: list[str], emails: list[str], anons: list[str], path: Path | None
) -> list[dict[str, str]]:
    out = [{"type": "user_id", "value": v} for v in user_ids]
    out += [{"type": "email", "value": v} for v in emails]
    out += [{"type": "anonymous_id", "value": v} for v in anons]
    for pair in ids:
        id_type, _, value = pair.partition(":")
        out.append({"type": id_type, "value": value})
    if path is not None:
        loaded = json.loads(path.read_text())
        out += loaded if isinstance(loaded, list) else [loaded]
    return out


def _submit(
    kind: str, idents: list[dict[str, str]], svc: PrivacyService, wait: bool, timeout: float
) -> None:
    from segflow.catalog.audit import cli_actor

    try:
        reg = svc.submit(kind, idents, actor=cli_actor())
    except SegflowError as exc:
        raise _fail(exc) from exc
    if wait:
        deadline = time.monotonic() + timeout
        while reg.status in ("pending", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            reg = svc.get(reg.id)
    _emit(reg)
    if reg.status == "failed":
        raise typer.Exit(code=1)


@privacy_app.command()
def delete(
    ids: list[str] = IdOption,
    user_id: list[str] = UserIdOption,
    email: list[str] = EmailOption,
    anonymous_id: list[str] = AnonOption,
    from_file: Path | None = FileOption,
    suppress: bool = typer.Option(False, "--suppress", help="also refuse their future events"),
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Erase a person everywhere (the profile, its events, memberships, deliveries...)."""
    idents = _identifiers(ids, user_id, email, anonymous_id, from_file)
    kind = "suppress_and_delete" if suppress else "delete"
    _submit(kind, idents, _service(data_dir, config), wait, timeout)


@privacy_app.command()
def suppress(
    ids: list[str] = IdOption,
    user_id: list[str] = UserIdOption,
    email: list[str] = EmailOption,
    anonymous_id: list[str] = AnonOption,
    from_file: Path | None = FileOption,
    wait: bool = WaitOption,
    timeout: float = TimeoutOption,
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Acknowledge and drop a person's future events (what is stored stays)."""
    idents = _identifiers(ids, user_id, email, anonymous_id, from_file)
    _submit("suppress", idents, _service(data_dir, config), wait, timeout)


@privacy_app.command()
def status(
    regulation_id: str | None = typer.Argument(None, help="one regulation (default: recent ones)"),
    limit: int = typer.Option(20, "--limit", help="how many recent regulations to show"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """A regulation's status (pending, running, finished, failed), step, counts and error."""
    svc = _service(data_dir, config)
    try:
        _emit(svc.get(regulation_id) if regulation_id else svc.regulations(limit=limit))
    except SegflowError as exc:
        raise _fail(exc) from exc


@privacy_app.command()
def suppressions(
    limit: int = typer.Option(100, "--limit", help="how many suppressions to show"),
    after: str = typer.Option("", "--after", help="page: the last hash of the previous page"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Suppressed identifiers (their type and keyed hash)."""
    _emit(_service(data_dir, config).suppressions(limit=limit, after=after))


@privacy_app.command()
def unsuppress(
    ids: list[str] = IdOption,
    user_id: list[str] = UserIdOption,
    email: list[str] = EmailOption,
    anonymous_id: list[str] = AnonOption,
    hash_hex: str | None = typer.Option(None, "--hash", help="a suppression's hash"),
    data_dir: Path | None = DataDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Lift suppressions (their later events are collected again)."""
    from segflow.catalog.audit import cli_actor

    svc = _service(data_dir, config)
    try:
        if hash_hex:
            svc.unsuppress(hash_hex, actor=cli_actor())
            _emit({"lifted": [hash_hex]})
            return
        idents = _identifiers(ids, user_id, email, anonymous_id, None)
        _emit({"lifted": svc.unsuppress_identifiers(idents, actor=cli_actor())})
    except SegflowError as exc:
        raise _fail(exc) from exc


@privacy_app.command()
def compact(data_dir: Path | None = DataDirOption, config: Path | None = ConfigOption) -> None:
    """Rewrite every store so erased rows leave no bytes (run with segflow serve stopped;
    serve compacts by itself after regulations)."""
    from segflow.privacy.compact import compact_data_dir

    _emit(compact_data_dir(resolve_settings(data_dir, config).data_path))


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")

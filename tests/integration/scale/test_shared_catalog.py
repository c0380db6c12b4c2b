"""Two hosts, one catalog: stores on separate PostgreSQL connections see each other's writes.

Each store instance opens its own connection, as a collector, a processor and the API on
different machines would with the same ``shared.dsn``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from segflow.catalog.audit import AuditLog
from segflow.catalog.db import SharedCatalog
from segflow.catalog.tokens import TokenStore
from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.collect.exceptions import SourceExists
from segflow.config import Settings, load_settings
from segflow.db.postgres import SharedStoreUnavailable
from segflow.privacy.store import HashedIdentifier, PrivacyStore, Work
from segflow.rules import SegmentProgram
from segflow.segments.service import DefinitionWatcher, SegmentService
from segflow.segments.store import DefinitionStore
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime


@pytest.fixture
def shared(postgres_dsn: str) -> SharedCatalog:
    return SharedCatalog(postgres_dsn, f"t_{uuid.uuid4().hex[:8]}")


def test_a_source_created_on_one_host_authenticates_on_another(shared: SharedCatalog) -> None:
    api, collector = SourceCatalog(shared), SourceCatalog(shared)
    try:
        source, key = api.create("web")
        assert collector.authenticate(key) == source
        api.configure("web", SourceConfig(event_names={"Signed Up": ["signup"]}))
        collector.refresh()  # what a running collector does when told of the change
        found = collector.authenticate(key)
        assert found is not None and found.config.event_names == {"Signed Up": ["signup"]}
        collector.record_violations(source.id, {("Signed Up", "unplanned"): 2})
        assert [(v.event, v.count) for v in api.violations("web")] == [("Signed Up", 2)]
    finally:
        api.close()
        collector.close()


def test_a_segment_defined_on_one_host_reaches_the_watcher_on_another(
    shared: SharedCatalog,
) -> None:
    api_store, processor_store = DefinitionStore(shared), DefinitionStore(shared)
    try:
        api = SegmentService(api_store)
        applied: list[SegmentProgram] = []
        watcher = DefinitionWatcher(SegmentService(processor_store), applied.append)
        watcher.refresh()
        api.put_segment("buyers", 'did "Order Completed"')
        assert watcher.refresh() and sorted(applied[-1].plan.order) == ["buyers"]
        # versions are numbered by the one shared table, whichever host writes
        assert (
            processor_store.put("segment", "buyers", 'did "Order Completed" in last 7 days').version
            == 2
        )
        assert api.get("segment", "buyers").version == 2
        assert watcher.refresh() and not watcher.refresh()
    finally:
        api_store.close()
        processor_store.close()


def test_a_token_issued_on_one_host_is_accepted_and_revoked_everywhere(
    shared: SharedCatalog,
) -> None:
    cli, api = TokenStore(shared), TokenStore(shared)
    try:
        info, token = cli.issue("editor", name="ci")
        verified = api.verify(token)
        assert verified is not None and verified.token_id == info.token_id
        assert api.revoke(info.token_id)
        assert cli.verify(token) is None and not cli.revoke(info.token_id)
    finally:
        cli.close()
        api.close()


def test_suppressions_and_the_hashing_key_are_one_for_all_hosts(shared: SharedCatalog) -> None:
    cli, serve = PrivacyStore(shared), PrivacyStore(shared)
    try:
        assert cli.key() == serve.key()  # one key: the same identifier hashes the same
        seen = serve.suppressions_version()
        cli.suppress([HashedIdentifier("email", "aa")], "reg_1")
        assert serve.suppressions_version() != seen and serve.suppressed_hashes() == {"aa"}
        reg = cli.create("delete", [HashedIdentifier("email", "aa")], Work(), actor="cli:ann")
        assert [r.id for r in serve.open_regulations()] == [reg.id]
    finally:
        cli.close()
        serve.close()


def test_every_host_appends_to_one_audit_log(shared: SharedCatalog) -> None:
    api, cli = AuditLog(shared), AuditLog(shared)
    try:
        api.record("token:t1 (ops)", "segment.create", "buyers", None, {"rule": "x"})
        cli.record("cli:ann", "segment.delete", "buyers", {"rule": "x"}, None)
        for log in (api, cli):
            assert [e.action for e in log.list(target="buyers")] == [
                "segment.delete",
                "segment.create",
            ]
    finally:
        api.close()
        cli.close()


def _shared_settings(data_dir: Path, shared: SharedCatalog) -> Settings:
    return load_settings(
        overrides={
            "server": {"data_dir": str(data_dir)},
            "shared": {"dsn": shared.dsn, "schema": shared.schema},
        }
    )


def test_serve_processes_with_one_shared_dsn_share_the_catalog(
    tmp_path: Path, shared: SharedCatalog
) -> None:
    """Two serve processes' assemblies (two data directories, as on two hosts)."""
    runtimes = [Runtime.open(_shared_settings(tmp_path / h, shared)) for h in ("a", "b")]
    parts = [assemble(r) for r in runtimes]
    try:
        (ra, rb), (pa, pb) = runtimes, parts
        source, key = ra.catalog.create("web")
        assert rb.catalog.authenticate(key) == source
        token = pa.tokens.create("admin", name="ops")
        assert pb.tokens.verify(token) is not None
        applied: list[SegmentProgram] = []
        watcher = DefinitionWatcher(pb.segments, applied.append)
        watcher.refresh()
        pa.segments.put_segment("buyers", 'did "Order Completed"', actor="cli:ann")
        assert watcher.refresh() and sorted(applied[-1].plan.order) == ["buyers"]
        assert pb.segments.audit is not None
        assert [e.actor for e in pb.segments.audit.list(target="buyers")] == ["cli:ann"]
        assert pa.privacy.store.key() == pb.privacy.store.key()
        assert not any(tmp_path.rglob("catalog.sqlite*"))  # nothing of the catalog on disk
    finally:
        for p, r in zip(parts, runtimes, strict=True):
            p.services[0].stop()
            r.close()


def test_the_cli_writes_to_the_shared_catalog(tmp_path: Path, shared: SharedCatalog) -> None:
    env = {"SEGFLOW_SHARED__DSN": shared.dsn, "SEGFLOW_SHARED__SCHEMA": shared.schema, "PATH": ""}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})  # this checkout

    def segflow(*args: str) -> str:
        cmd = [sys.executable, "-m", "segflow.cli.main", *args, "--data-dir", str(tmp_path)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    key = segflow("sources", "create", "web").strip().splitlines()[-1]
    token = segflow("tokens", "create", "--role", "read").strip().splitlines()[-1]
    catalog, tokens = SourceCatalog(shared), TokenStore(shared)
    try:
        found = catalog.authenticate(key)
        assert found is not None and found.name == "web"
        assert tokens.verify(token) is not None
    finally:
        catalog.close()
        tokens.close()
    assert "source.create" in segflow("audit")
    assert not any(tmp_path.rglob("catalog.sqlite*"))


def test_an_unreachable_shared_database_is_a_clear_cli_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"SEGFLOW_SHARED__DSN": f"host=127.0.0.1 port={port} user=x dbname=x", "PATH": ""}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    cmd = [sys.executable, "-m", "segflow.cli.main", "sources", "list", "--data-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 2
    assert json.loads(out.stderr)["code"] == "shared_store_unavailable"
    assert not any(tmp_path.rglob("catalog.sqlite*"))  # no silent fallback to a local file


def _wait_for(check: Callable[[], bool]) -> None:
    """Poll ``check`` until true (a condition, not a duration: gives up after 30 s)."""
    for _ in range(3000):
        if check():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the condition never held")


def test_a_dropped_connection_fails_one_call_then_reconnects(
    shared: SharedCatalog, postgres_dsn: str
) -> None:
    catalog = SourceCatalog(shared)
    admin = psycopg.connect(postgres_dsn, autocommit=True)
    try:
        catalog.create("web")
        pid = catalog._con.con.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        _wait_for(lambda: admin.execute(gone, [pid]).fetchone() == (0,))
        with pytest.raises(SharedStoreUnavailable):
            catalog.list()
        assert [s.name for s in catalog.list()] == ["web"]  # connected again
    finally:
        catalog.close()
        admin.close()


def test_concurrent_writers_on_two_hosts_wait_for_each_other(shared: SharedCatalog) -> None:
    """A host creating a source holds the store's lock from its name check to its insert: the
    other host's create waits, then sees the name taken (SourceExists, not a constraint error).
    """
    first, second = SourceCatalog(shared), SourceCatalog(shared)
    outcome: list[BaseException | None] = []

    def create() -> None:
        try:
            second.create("web")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    try:
        with first._con.write("sources"):
            first._con.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?)", ("src_1", "web", "h", 1, b"{}")
            )
            thread = threading.Thread(target=create)
            thread.start()
            probe = psycopg.connect(shared.dsn, autocommit=True)
            try:
                _wait_for(lambda: probe.execute(waiting).fetchone() == (1,))
            finally:
                probe.close()
        thread.join()
        assert len(outcome) == 1 and isinstance(outcome[0], SourceExists)
    finally:
        first.close()
        second.close()

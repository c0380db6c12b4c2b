"""Two hosts, one catalog: stores on separate PostgreSQL connections see each other's writes.

Each store instance opens its own connection, as a collector, a processor and the API on
different machines would with the same ``shared.dsn``.
"""

from __future__ import annotations

import uuid

import pytest

from segflow.api.auth import TokenStore
from segflow.audit import AuditLog
from segflow.catalogdb import SharedCatalog
from segflow.collect.catalog import SourceCatalog, SourceConfig
from segflow.privacy.store import HashedIdentifier, PrivacyStore, Work
from segflow.rules import SegmentProgram
from segflow.segments.service import DefinitionWatcher, SegmentService
from segflow.segments.store import DefinitionStore


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

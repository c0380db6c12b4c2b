"""Regulations, suppressions and the hashing key behave the same on SQLite and on shared
PostgreSQL (``catalog_target``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from segflow.catalog.db import CatalogTarget
from segflow.privacy.exceptions import RegulationNotFound
from segflow.privacy.store import HashedIdentifier, PrivacyStore, Work


@pytest.fixture
def store(catalog_target: CatalogTarget) -> Iterator[PrivacyStore]:
    store = PrivacyStore(catalog_target)
    yield store
    store.close()


def test_the_hashing_key_is_made_once(store: PrivacyStore, catalog_target: CatalogTarget) -> None:
    key = store.key()
    assert isinstance(key, bytes) and len(key) == 32
    again = PrivacyStore(catalog_target)
    try:
        assert again.key() == key
    finally:
        again.close()


def test_a_regulation_is_stored_resumed_and_finished(store: PrivacyStore) -> None:
    ids = [HashedIdentifier(type="email", hash="ab")]
    reg = store.create("delete", ids, Work(identifiers=[("email", "a@b.co")]), actor="cli:ann")
    assert store.get(reg.id) == reg and store.open_regulations() == [reg]
    assert store.work(reg.id).identifiers == [("email", "a@b.co")]
    reg.status, reg.step, reg.started_ms, reg.attempts = "running", "erase", 5, 1
    store.save(reg, Work(profile_ids=["p1"], exit_seq=7))
    assert store.get(reg.id).step == "erase" and store.work(reg.id).exit_seq == 7
    reg.status, reg.finished_ms, reg.result = "finished", 9, {"profiles": 1}
    store.save(reg, None)
    assert store.work(reg.id) == Work() and store.open_regulations() == []
    assert store.get(reg.id).result == {"profiles": 1}
    assert [r.id for r in store.recent(status="finished")] == [reg.id]
    assert store.recent(status="pending") == [] and len(store.recent(limit=1)) == 1
    with pytest.raises(RegulationNotFound):
        store.get("reg_missing")
    store.compact()  # the work in clear is rewritten away; the rows stay
    assert store.get(reg.id).status == "finished"


def test_suppressions_count_new_ones_and_bump_the_version(store: PrivacyStore) -> None:
    assert store.suppressions_version() == 0
    a, b = HashedIdentifier("email", "aa"), HashedIdentifier("user_id", "bb")
    assert store.suppress([a, b], "reg_1") == 2
    assert store.suppress([a], "reg_2") == 0 and store.suppress([], None) == 0
    assert store.suppressions_version() == 3
    assert store.suppressed_hashes() == {"aa", "bb"}
    listed = store.suppressions(limit=1)
    assert [(s.hash, s.type, s.regulation) for s in listed] == [("aa", "email", "reg_1")]
    assert [s.hash for s in store.suppressions(after="aa")] == ["bb"]
    assert store.unsuppress("aa") and not store.unsuppress("aa")
    assert store.suppressed_hashes() == {"bb"} and store.suppressions_version() == 5

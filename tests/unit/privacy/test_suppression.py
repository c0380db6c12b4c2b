"""The suppression list: which events it blocks, holds of running regulations, reloads."""

from __future__ import annotations

from segflow.catalog.db import CatalogTarget
from segflow.identity import ExternalId, Identifier, IdentityRules
from segflow.privacy.identifiers import identifier_hash
from segflow.privacy.store import HashedIdentifier, PrivacyStore
from segflow.privacy.suppression import SuppressionList
from segflow.spec import Event

KEY = b"k" * 32
RULES = IdentityRules(external_ids=(ExternalId(type="crm_id", path="context.crm"),))


def h(id_type: str, value: str) -> str:
    return identifier_hash(KEY, Identifier(id_type, value))


def event(**fields: object) -> Event:
    base: dict[str, object] = {
        "type": "track",
        "message_id": "m",
        "source_id": "s",
        "timestamp_ms": 1,
        "received_at_ms": 1,
        "event": "E",
    }
    return Event(**{**base, **fields})  # type: ignore[arg-type]


def test_any_identifier_of_an_event_blocks_it() -> None:
    s = SuppressionList(
        KEY, RULES, [h("email", "ann@x.io"), h("crm_id", "c-9"), h("anonymous_id", "old")]
    )
    assert s.blocks_event(event(anonymous_id="a", traits={"email": " ANN@x.io"}, type="identify"))
    assert s.blocks_event(event(anonymous_id="a", context={"traits": {"email": "ann@x.io"}}))
    assert s.blocks_event(event(user_id="u", context={"crm": "c-9"}))
    assert s.blocks_event(event(type="alias", user_id="new", previous_id="old", event=None))
    assert not s.blocks_event(event(user_id="bob", traits={"note": "ann@x.io"}))


def test_holds_block_while_a_regulation_runs() -> None:
    s = SuppressionList(KEY, RULES)
    ann = event(user_id="ann")
    assert not s.blocks_event(ann) and len(s) == 0
    s.hold("reg_1", [h("user_id", "ann")])
    s.hold("reg_2", [h("user_id", "ann")])
    assert s.blocks_event(ann)
    s.release("reg_1")
    assert s.blocks_event(ann)  # reg_2 still holds it
    s.release("reg_2")
    assert not s.blocks_event(ann)


def test_the_list_follows_the_store(catalog_target: CatalogTarget) -> None:
    store = PrivacyStore(catalog_target)
    s = SuppressionList(store.key(), RULES)
    hashed = HashedIdentifier("user_id", identifier_hash(store.key(), Identifier("user_id", "ann")))
    store.suppress([hashed], "reg_1")
    assert s.version != store.suppressions_version()
    s.replace(store.suppressed_hashes(), store.suppressions_version())
    assert s.blocks([Identifier("user_id", "ann")])
    store.unsuppress(hashed.hash)
    s.replace(store.suppressed_hashes(), store.suppressions_version())
    assert not s.blocks([Identifier("user_id", "ann")])
    store.close()

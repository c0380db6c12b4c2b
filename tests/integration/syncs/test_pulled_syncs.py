"""Pulled syncs against the vendors' documented pagination on loopback (tests/support/vendors.py),
with a real SQLite log, catalog and sync store."""

from __future__ import annotations

import dataclasses
import fcntl
import sys

import pytest
from tests.support.vendors import iso, person

from segflow.errors import ConflictError, TransientError
from segflow.stream import Processor, ProfileReader, SqliteStateStore
from segflow.syncs import fetch
from segflow.syncs.exceptions import DltMissing, VendorError
from segflow.syncs.vendors import VENDORS as VENDOR_SPECS

from .conftest import T0, World

VENDORS = ("hubspot", "zendesk", "stripe", "salesforce")


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_sync_reads_every_page_and_stores_identify_and_track_per_person(
    world: World, vendor: str
) -> None:
    obj = world.people(vendor, 7)
    world.sync(vendor, obj)
    result = world.runner.run(vendor)
    assert (result.objects, result.stored, result.duplicates) == (7, 14, 0)
    types = sorted(t for t, _ in world.events())
    assert types == ["identify"] * 7 + ["track"] * 7
    assert len(world.api.requests) >= 3  # pages of 3: the vendor's pagination was followed
    info = world.store.get(vendor)
    assert info.progress.state == "ok" and info.progress.total_objects == 7
    assert obj in info.cursors


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_resync_stores_nothing_twice_and_a_change_once(world: World, vendor: str) -> None:
    obj = world.people(vendor, 7)
    world.sync(vendor, obj)
    world.runner.run(vendor)
    stored = world.events()
    again = world.runner.run(vendor)
    assert again.stored == 0 and world.events() == stored
    # from the start (the cursors forgotten): every event is found already stored
    full = world.runner.run(vendor, full=True)
    assert (full.objects, full.stored, full.duplicates) == (7, 0, 14)
    # one person changes: one identify and one track more
    _, changed = person(vendor, 3, "p3-new@example.com", T0 + 60_000, **_change(vendor))
    world.api.add(vendor, obj, changed)
    after = world.runner.run(vendor)
    assert after.stored == 2 and len(world.events()) == len(stored) + 2


def _change(vendor: str) -> dict[str, object]:
    """A later version: Stripe has no update time (its cursor is ``created``)."""
    return {"created": (T0 + 99_000) // 1000} if vendor == "stripe" else {}


def test_an_exception_between_fetching_and_durability_leaves_the_cursor(world: World) -> None:
    obj = world.people("salesforce", 7)  # pages of 3: the cursor moves after each page
    world.sync("salesforce", obj)
    calls = {"n": 0}
    real = world.ingestor.ingest

    def crash_on_second_page(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the process died before the append was durable")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    world.ingestor.ingest = crash_on_second_page  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.runner.run("salesforce")
    after_first_page = world.store.cursor("salesforce", obj)
    assert after_first_page == str(T0 + 3000)  # the first page's, not the second's
    progress = world.store.get("salesforce").progress
    assert progress.state == "failed" and "died" in (progress.last_error or "")
    assert len(world.events()) == 6

    world.ingestor.ingest = real  # type: ignore[method-assign]
    result = world.runner.run("salesforce")
    assert result.stored == 8  # persons 4..7, each once
    assert len(set(world.events())) == len(world.events()) == 14
    assert world.store.get("salesforce").progress.last_success_ms is not None


def test_a_crash_in_a_newest_first_listing_commits_no_cursor(world: World) -> None:
    obj = world.people("stripe", 7)
    world.sync("stripe", obj)
    real = world.ingestor.ingest
    calls = {"n": 0}

    def crash_on_third_page(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("crash")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    world.ingestor.ingest = crash_on_third_page  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.runner.run("stripe")
    assert world.store.cursor("stripe", obj) is None  # Stripe lists newest first
    world.ingestor.ingest = real  # type: ignore[method-assign]
    assert world.runner.run("stripe").stored == 2  # the oldest person, the only one not stored
    assert len(world.events()) == 14


def test_hubspot_s_result_window_is_crossed_by_querying_again_from_the_cursor(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    contacts = VENDOR_SPECS["hubspot"].objects["contacts"]
    monkeypatch.setitem(
        VENDOR_SPECS["hubspot"].objects, "contacts", dataclasses.replace(contacts, query_limit=6)
    )
    world.api.hubspot_window = 6  # pages of 3: the third page of a query is refused
    world.people("hubspot", 14)
    world.sync("hubspot", "contacts")
    result = world.runner.run("hubspot")
    assert (result.objects, result.stored) == (14, 28)
    assert all(status == 200 for _, _, status in world.api.requests)


def test_a_429_is_retried_after_retry_after(world: World) -> None:
    obj = world.people("hubspot", 2)
    world.sync("hubspot", obj)
    world.api.queue.append((429, {"Retry-After": "1"}))
    result = world.runner.run("hubspot")
    assert result.stored == 4
    (t429, _, first), (t_retry, _, second) = world.api.requests[:2]
    assert (first, second) == (429, 200)
    assert t_retry - t429 >= 1.0  # it waited what Retry-After said (the backoff is 0.01 s)


def test_a_rate_limit_that_outlasts_the_retries_is_transient_and_recorded(world: World) -> None:
    obj = world.people("zendesk", 2)
    world.sync("zendesk", obj)
    world.api.queue.extend([(503, {})] * 3)
    with pytest.raises(TransientError):
        world.runner.run("zendesk")
    progress = world.store.get("zendesk").progress
    assert progress.state == "failed" and "503" in (progress.last_error or "")
    assert world.store.cursor("zendesk", obj) is None
    assert world.runner.run("zendesk").stored == 4  # and the next run succeeds


def test_a_refused_credential_is_a_vendor_error_with_its_status(world: World) -> None:
    obj = world.people("stripe", 1)
    world.sync("stripe", obj)
    world.api.token = "rotated"
    with pytest.raises(VendorError) as caught:
        world.runner.run("stripe")
    assert caught.value.status == 401
    assert "401" in (world.store.get("stripe").progress.last_error or "")
    assert len(world.api.requests) == 1  # a 401 is not retried


def test_an_object_that_cannot_be_mapped_is_a_dead_letter(world: World) -> None:
    world.api.add("zendesk", "users", {"email": "no-id@example.com", "updated_at": iso(T0)})
    world.people("zendesk", 1)
    world.sync("zendesk", "users")
    result = world.runner.run("zendesk")
    assert (result.stored, result.refused) == (2, 1)
    (letter,) = world.log.dead_letters(limit=10)
    assert letter.field == "zendesk.users" and "KeyError" in letter.reason


def test_a_zendesk_user_and_a_stripe_customer_with_one_email_are_one_profile(
    world: World,
) -> None:
    world.api.add("zendesk", "users", person("zendesk", 42, "Ann@Example.com", T0)[1])
    world.api.add("stripe", "customers", person("stripe", 7, "ann@example.com", T0)[1])
    world.sync("zendesk", "users")
    world.sync("stripe", "customers")
    world.runner.run("zendesk")
    world.runner.run("stripe")
    store = SqliteStateStore(world.data / "state.sqlite")
    processor = Processor(world.log, store, clock=world.clock)
    while processor.run_once() > 0:
        pass
    reader = ProfileReader(store.reader(), world.log)
    try:
        by_zendesk = reader.lookup("anonymous_id", "zendesk:user:42")
        by_stripe = reader.lookup("anonymous_id", "stripe:customer:cus_7")
        by_email = reader.lookup("email", "ann@example.com")
        assert by_zendesk is not None and by_stripe is not None and by_email is not None
        assert by_zendesk.profile_id == by_stripe.profile_id == by_email.profile_id
        by_vendor_id = reader.lookup("stripe_customer_id", "cus_7")  # as webhooks send it
        assert by_vendor_id is not None and by_vendor_id.profile_id == by_email.profile_id
        traits = reader.traits(by_email.profile_id)
        assert traits["zendeskId"] == "42" and traits["stripeId"] == "cus_7"
    finally:
        reader.close()
        store.close()


def test_a_sync_without_dlt_says_how_to_install_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dlt.sources.helpers", None)
    with pytest.raises(DltMissing) as caught, fetch.client("http://127.0.0.1:1", "t"):
        pass
    assert "segflow[sources]" in caught.value.message


def test_the_schedule_runs_what_is_due_and_what_was_asked_for(world: World) -> None:
    obj = world.people("hubspot", 1)
    world.sync("hubspot", obj)
    assert world.runner.due() == ["hubspot"]  # never ran
    world.runner.run("hubspot")
    assert world.runner.due() == []
    world.store.request_run("hubspot", at_ms=world.clock.now_ms())
    assert world.runner.due() == ["hubspot"]
    world.runner.run("hubspot")
    world.clock.advance(900_000)
    assert world.runner.due() == ["hubspot"]  # its interval passed


@pytest.mark.parametrize(
    ("vendor", "obj", "record", "owner", "event"),
    [
        ("zendesk", "tickets",
         {"id": 9, "requester_id": 42, "subject": "Refund", "created_at": iso(T0),
          "updated_at": iso(T0 + 5000)},
         "zendesk:user:42", "Zendesk Ticket Updated"),
        ("stripe", "charges",
         {"id": "ch_1", "customer": "cus_7", "amount": 500, "created": T0 // 1000},
         "stripe:customer:cus_7", "Stripe Charge Synced"),
        ("salesforce", "opportunities",
         {"Id": "006A", "Name": "Big", "ContactId": "003B", "CreatedDate": iso(T0, True),
          "SystemModstamp": iso(T0, True)},
         "salesforce:contact:003B", "Salesforce Opportunity Created"),
        ("hubspot", "deals",
         {"id": "77", "createdAt": iso(T0), "updatedAt": iso(T0 + 1),
          "properties": {"dealname": "Renewal", "amount": "900"}},
         "hubspot:deals:77", "HubSpot Deal Updated"),
    ],
)  # fmt: skip
def test_an_object_that_is_not_a_person_is_a_track_event_on_its_person(
    world: World, vendor: str, obj: str, record: dict[str, object], owner: str, event: str
) -> None:
    world.api.add(vendor, obj, record)
    world.sync(vendor, obj)
    assert world.runner.run(vendor).stored == 1
    (stored,) = [r.event for p in range(2) for r in world.log.read(p, 0)]
    assert (stored.type, stored.event, stored.anonymous_id) == ("track", event, owner)
    assert stored.properties["objectType"] == obj and stored.properties["vendor"] == vendor


def test_a_sync_running_elsewhere_is_a_conflict_and_keeps_its_progress(world: World) -> None:
    world.sync("stripe", world.people("stripe", 1))
    (world.data / "run").mkdir(exist_ok=True)
    with (world.data / "run" / "sync-stripe.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's run
        with pytest.raises(ConflictError):
            world.runner.run("stripe")
    assert world.store.get("stripe").progress.state == "idle"
    assert world.runner.run("stripe").stored == 2


def test_a_hubspot_deal_lands_on_the_profiles_of_its_associated_contacts(world: World) -> None:
    for n, email in ((51, "ann@example.com"), (52, "bob@example.com")):
        world.api.add("hubspot", *person("hubspot", n, email, T0))
    deal = {"id": "77", "createdAt": iso(T0), "updatedAt": iso(T0 + 1),
            "properties": {"dealname": "Renewal", "amount": "900"}}  # fmt: skip
    lonely = {"id": "78", "createdAt": iso(T0), "updatedAt": iso(T0 + 2), "properties": {}}
    world.api.add("hubspot", "deals", deal, lonely)
    world.api.associate("deals", "77", "contacts", "51", "52")
    world.sync("hubspot", "contacts", "deals")
    result = world.runner.run("hubspot")
    assert result.stored == 4 + 2 + 1  # two contacts (identify + track), the deal on each, 78
    deals = sorted(
        (e.anonymous_id, e.properties["objectId"])
        for e in world.stored()
        if e.event == "HubSpot Deal Updated"
    )
    assert deals == [("hubspot:contact:51", "77"), ("hubspot:contact:52", "77"),
                     ("hubspot:deals:78", "78")]  # fmt: skip
    assert any(
        p == "/crm/v4/associations/deals/contacts/batch/read" for _, p, _ in world.api.requests
    )
    assert world.runner.run("hubspot", full=True).stored == 0  # the same ids again

    store = SqliteStateStore(world.data / "state.sqlite")
    processor = Processor(world.log, store, clock=world.clock)
    while processor.run_once() > 0:
        pass
    reader = ProfileReader(store.reader(), world.log)
    try:
        ann = reader.lookup("email", "ann@example.com")
        by_contact = reader.lookup("hubspot_contact_id", "51")
        assert ann is not None and by_contact is not None
        assert ann.profile_id == by_contact.profile_id
        events = [r.event.event for r in reader.timeline(ann, limit=20).events]
        assert "HubSpot Deal Updated" in events
    finally:
        reader.close()
        store.close()


def test_a_deleted_zendesk_user_and_ticket_are_deleted_events_not_identify_calls(
    world: World,
) -> None:
    world.api.add("zendesk", "users", person("zendesk", 42, "ann@example.com", T0)[1])
    ticket = {"id": 9, "requester_id": 42, "status": "open", "created_at": iso(T0),
              "updated_at": iso(T0)}  # fmt: skip
    world.api.add("zendesk", "tickets", ticket)
    world.sync("zendesk", "users", "tickets")
    assert world.runner.run("zendesk").stored == 3
    # Zendesk lists a deleted user with active false, a deleted ticket with status deleted
    gone = {**person("zendesk", 42, "ann@example.com", T0)[1], "active": False,
            "updated_at": iso(T0 + 60_000)}  # fmt: skip
    world.api.add("zendesk", "users", gone)
    world.api.add(
        "zendesk", "tickets", {**ticket, "status": "deleted", "updated_at": iso(T0 + 61_000)}
    )
    assert world.runner.run("zendesk").stored == 2
    latest = sorted(world.stored(), key=lambda e: e.timestamp_ms)[-2:]
    assert [(e.type, e.event, e.anonymous_id) for e in latest] == [
        ("track", "Zendesk User Deleted", "zendesk:user:42"),
        ("track", "Zendesk Ticket Deleted", "zendesk:user:42"),
    ]
    assert latest[0].context["traits"]["email"] == "ann@example.com"


def test_an_archived_hubspot_contact_is_a_deleted_event_read_once(world: World) -> None:
    world.api.add("hubspot", *person("hubspot", 51, "ann@example.com", T0))
    world.sync("hubspot", "contacts")
    assert world.runner.run("hubspot").stored == 2
    archived = {**person("hubspot", 51, "ann@example.com", T0)[1], "archived": True,
                "archivedAt": iso(T0 + 60_000)}  # fmt: skip
    world.api.add("hubspot", "contacts", archived)
    result = world.runner.run("hubspot")
    assert result.stored == 1 and result.cursors["contacts.archived"] == str(T0 + 60_000)
    (deleted,) = [e for e in world.stored() if e.event == "HubSpot Contact Deleted"]
    assert (deleted.type, deleted.anonymous_id) == ("track", "hubspot:contact:51")
    assert (
        deleted.timestamp_ms == T0 + 60_000
        and deleted.context["traits"]["email"] == "ann@example.com"
    )
    assert any(p == "/crm/v3/objects/contacts" for _, p, _ in world.api.requests)
    # archived objects cannot be asked for by time: all are listed again, none stored again
    assert world.runner.run("hubspot").stored == 0
    assert world.runner.run("hubspot", full=True).stored == 0

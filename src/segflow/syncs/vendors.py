"""The vendors a sync can pull from, and how: endpoint, pagination, cursor and the person each
object belongs to.

Every object is read **incrementally** by the API's own cursor, oldest change first where the
API can sort (so the cursor can be committed after every page). A time cursor is inclusive
(``>=``: an object changed in the same millisecond as the last one read is not missed); the
versions read at the cursor are kept with it and skipped on the next run, so they are not
stored again even after the log's dedupe window has passed.

===========  =====================================  ==========================  ==============
vendor       objects                                pagination                  cursor
===========  =====================================  ==========================  ==============
hubspot      contacts, companies, deals             search API, ``after``       last modified
zendesk      tickets, users                         incremental export cursor   ``after_cursor``
stripe       customers, charges, subscriptions      ``starting_after`` +        ``created``
                                                    ``has_more``                (per run)
salesforce   contacts, leads, opportunities         SOQL ``nextRecordsUrl``     SystemModstamp
===========  =====================================  ==========================  ==============

>>> sorted(VENDORS)
['hubspot', 'salesforce', 'stripe', 'zendesk']
>>> obj = VENDORS["salesforce"].objects["contacts"]
>>> obj.request(None).params["q"]
'SELECT Id, Email, FirstName, LastName, Phone, CreatedDate, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id'
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

Record = Mapping[str, Any]


class PageRequest(NamedTuple):
    """The first request of an object's pages."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None


@dataclass(frozen=True)
class ObjectSpec:
    """One kind of object of a vendor (see the module docstring)."""

    name: str  # "contacts"
    label: str  # "Contact": events are named "<Vendor> <Label> Created|Updated"
    person: bool  # a person: identify calls with traits
    request: Callable[[str | None], PageRequest]  # cursor -> the first request
    paginator: Callable[[], Any]  # a new dlt paginator
    records: str  # where the page's objects are in the response (data selector)
    id_of: Callable[[Record], str]
    version_of: Callable[[Record], str]  # changes whenever the object does
    updated_ms: Callable[[Record], int | None]  # when it last changed (the event time)
    created_ms: Callable[[Record], int | None]
    owner_of: Callable[[Record], str | None]  # the person's key (anonymousId), if any
    traits_of: Callable[[Record], dict[str, Any]]  # a person's traits
    # the cursor after a page: (old cursor, its objects, dlt's page: .response, .paginator)
    next_cursor: Callable[[str | None, list[Record], Any], str | None]
    commit_each_page: bool = True  # False: the API lists newest first, commit after the last
    # the object's cursor value, where the cursor is the greatest of them (an inclusive bound:
    # the objects at the cursor are remembered, so the next run skips them; Zendesk: None)
    cursor_of: Callable[[Record], int | None] | None = None
    query_limit: int | None = None  # the most results one query pages through (HubSpot: 10,000)
    # HubSpot: the person object type this one is associated with (v4 associations API): the
    # object's event goes to each associated person (a deal to its contacts)
    associated: str | None = None
    # a deletion: the object's event is "<Vendor> <Label> Deleted" and a person gets no identify
    deleted_of: Callable[[Record], bool] = lambda r: False
    # the deleted objects, where the API lists them apart (HubSpot ``archived=true``): read after
    # this object with a cursor of their own (``cursor_name``)
    deletions: ObjectSpec | None = None
    cursor_name: str | None = None  # default: ``name``
    api_filters: bool = True  # False: the API cannot filter by the cursor; skip older here

    @property
    def cursor_key(self) -> str:
        return self.cursor_name or self.name


@dataclass(frozen=True)
class Vendor:
    name: str
    label: str
    base_url: str
    objects: dict[str, ObjectSpec] = field(default_factory=dict)


# -- helpers ---------------------------------------------------------------------------------


def iso_ms(value: Any) -> int | None:
    """Epoch ms of an ISO-8601 time (``Z``, ``+00:00`` or Salesforce's ``+0000``).

    >>> iso_ms("2024-01-01T00:00:01.500Z"), iso_ms("2024-01-01T00:00:00.000+0000"), iso_ms(None)
    (1704067201500, 1704067200000, None)
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


def content_version(record: Record) -> str:
    """A version for APIs without an update time (Stripe): a hash of the object's content."""
    return hashlib.blake2b(msgspec.json.encode(record, order="sorted"), digest_size=8).hexdigest()


def _max_cursor(
    key: Callable[[Record], int | None],
) -> Callable[[str | None, list[Record], Any], str | None]:
    def advance(old: str | None, page: list[Record], fetched: Any) -> str | None:
        values = [v for v in (key(r) for r in page) if v is not None]
        if old is not None:
            values.append(int(old))
        return str(max(values)) if values else old

    return advance


def _paginators() -> Any:
    from segflow.syncs import paginators  # imports dlt: see segflow.syncs.fetch

    return paginators


def _pick(record: Record, names: Mapping[str, str]) -> dict[str, Any]:
    return {trait: record[name] for name, trait in names.items() if record.get(name) is not None}


# -- HubSpot: CRM search API, sorted by last modified, paged by `after` ------------------------

_HUBSPOT_PROPS = {
    "contacts": ("lastmodifieddate", ("email", "firstname", "lastname", "phone", "company")),
    "companies": ("hs_lastmodifieddate", ("name", "domain", "industry")),
    "deals": ("hs_lastmodifieddate", ("dealname", "amount", "dealstage", "pipeline")),
}
_HUBSPOT_TRAITS = {"email": "email", "firstname": "firstName", "lastname": "lastName",
                   "phone": "phone", "company": "company"}  # fmt: skip


def _hubspot(name: str, label: str, person: bool) -> ObjectSpec:
    # a company's or a deal's events land on its contacts: fetch.associations
    modified, props = _HUBSPOT_PROPS[name]

    def request(cursor: str | None) -> PageRequest:
        body: dict[str, Any] = {
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": list(props),
            "limit": 100,
        }
        if cursor is not None:
            body["filterGroups"] = [
                {"filters": [{"propertyName": modified, "operator": "GTE", "value": cursor}]}
            ]
        return PageRequest("POST", f"/crm/v3/objects/{name}/search", json=body)

    return ObjectSpec(
        name=name, label=label, person=person, request=request,
        paginator=lambda: _paginators().hubspot(), records="results",
        id_of=lambda r: str(r["id"]),
        version_of=lambda r: str(r.get("updatedAt")),
        updated_ms=lambda r: iso_ms(r.get("updatedAt")),
        created_ms=lambda r: iso_ms(r.get("createdAt")),
        owner_of=(lambda r: f"hubspot:contact:{r['id']}") if person else (lambda r: None),
        traits_of=lambda r: _pick(r.get("properties") or {}, _HUBSPOT_TRAITS),
        next_cursor=_max_cursor(lambda r: iso_ms(r.get("updatedAt"))),
        cursor_of=lambda r: iso_ms(r.get("updatedAt")),
        query_limit=10_000,  # the search API refuses `after` beyond 10,000 results
        associated=None if person else "contacts",
        deletions=_hubspot_archived(name, label, person, props),
    )  # fmt: skip


def _hubspot_archived(name: str, label: str, person: bool, props: tuple[str, ...]) -> ObjectSpec:
    """HubSpot's archived (deleted) objects: the list API with ``archived=true``, which cannot
    filter by time: every archived object is listed, those archived before the cursor are
    skipped here, and the cursor (the latest ``archivedAt``) commits after the last page."""

    def request(cursor: str | None) -> PageRequest:
        params = {"archived": "true", "limit": 100, "properties": ",".join(props)}
        return PageRequest("GET", f"/crm/v3/objects/{name}", params=params)

    archived = lambda r: iso_ms(r.get("archivedAt"))  # noqa: E731
    return ObjectSpec(
        name=name, label=label, person=person, request=request,
        paginator=lambda: _paginators().hubspot_list(), records="results",
        id_of=lambda r: str(r["id"]),
        version_of=lambda r: f"archived@{r.get('archivedAt')}",
        updated_ms=archived,
        created_ms=lambda r: iso_ms(r.get("createdAt")),
        owner_of=(lambda r: f"hubspot:contact:{r['id']}") if person else (lambda r: None),
        traits_of=lambda r: _pick(r.get("properties") or {}, _HUBSPOT_TRAITS),
        next_cursor=_max_cursor(archived),
        cursor_of=archived,
        commit_each_page=False,  # listed by id, not by archivedAt
        deleted_of=lambda r: True,
        cursor_name=f"{name}.archived",
        api_filters=False,
    )  # fmt: skip


# -- Zendesk: cursor-based incremental export -------------------------------------------------


def _zendesk(name: str, label: str, person: bool) -> ObjectSpec:
    def request(cursor: str | None) -> PageRequest:
        params = {"start_time": 0} if cursor is None else {"cursor": cursor}
        return PageRequest("GET", f"/api/v2/incremental/{name}/cursor.json", params=params)

    def advance(old: str | None, page: list[Record], fetched: Any) -> str | None:
        found = getattr(fetched.paginator, "after_cursor", None)  # ZendeskCursorPaginator's
        return str(found) if found else old

    def owner(r: Record) -> str | None:
        person_id = r.get("id") if person else r.get("requester_id")
        return None if person_id is None else f"zendesk:user:{person_id}"

    return ObjectSpec(
        name=name, label=label, person=person, request=request,
        paginator=lambda: _paginators().zendesk(), records=name,
        id_of=lambda r: str(r["id"]),
        version_of=lambda r: str(r.get("updated_at")),
        updated_ms=lambda r: iso_ms(r.get("updated_at")),
        created_ms=lambda r: iso_ms(r.get("created_at")),
        owner_of=owner,
        traits_of=lambda r: _pick(r, {"email": "email", "name": "name", "phone": "phone"}),
        next_cursor=advance,
        # a deleted user is listed with ``active: false``, a deleted ticket with status deleted
        deleted_of=(lambda r: r.get("active") is False) if person
        else (lambda r: r.get("status") == "deleted"),
    )  # fmt: skip


# -- Stripe: list API, newest first, `starting_after` + `has_more` ---------------------------


def _stripe(name: str, label: str, person: bool) -> ObjectSpec:
    def request(cursor: str | None) -> PageRequest:
        params: dict[str, Any] = {"limit": 100}
        if name == "subscriptions":
            params["status"] = "all"  # canceled ones too
        if cursor is not None:
            params["created[gte]"] = int(cursor) // 1000
        return PageRequest("GET", f"/v1/{name}", params=params)

    def owner(r: Record) -> str | None:
        customer = r.get("id") if person else r.get("customer")
        return None if not isinstance(customer, str) else f"stripe:customer:{customer}"

    def created(r: Record) -> int | None:
        value = r.get("created")
        return value * 1000 if isinstance(value, int) else None

    return ObjectSpec(
        name=name, label=label, person=person, request=request,
        paginator=lambda: _paginators().stripe(), records="data",
        id_of=lambda r: str(r["id"]),
        version_of=content_version,
        updated_ms=lambda r: None,
        created_ms=created,
        owner_of=owner,
        traits_of=lambda r: _pick(r, {"email": "email", "name": "name", "phone": "phone"}),
        next_cursor=_max_cursor(created),
        cursor_of=created,
        commit_each_page=False,
    )  # fmt: skip


# -- Salesforce: SOQL ordered by SystemModstamp, `nextRecordsUrl` -----------------------------

_SOQL = {
    "contacts": ("Contact", "Id, Email, FirstName, LastName, Phone"),
    "leads": ("Lead", "Id, Email, FirstName, LastName, Phone, Company"),
    "opportunities": ("Opportunity", "Id, Name, StageName, Amount, ContactId"),
}
_SALESFORCE_API = "/services/data/v59.0"


def soql_time(ms: int) -> str:
    """A SOQL datetime literal.

    >>> soql_time(1704067200000)
    '2024-01-01T00:00:00.000Z'
    """
    from datetime import UTC

    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _salesforce(name: str, label: str, person: bool) -> ObjectSpec:
    table, columns = _SOQL[name]

    def request(cursor: str | None) -> PageRequest:
        where = "" if cursor is None else f" WHERE SystemModstamp >= {soql_time(int(cursor))}"
        soql = f"SELECT {columns}, CreatedDate, SystemModstamp FROM {table}{where}"
        return PageRequest(
            "GET", f"{_SALESFORCE_API}/query", {"q": soql + " ORDER BY SystemModstamp, Id"}
        )

    def owner(r: Record) -> str | None:
        if person:
            return f"salesforce:{table.lower()}:{r['Id']}"
        contact = r.get("ContactId")
        return None if not contact else f"salesforce:contact:{contact}"

    traits = {"Email": "email", "FirstName": "firstName", "LastName": "lastName",
              "Phone": "phone", "Company": "company"}  # fmt: skip
    return ObjectSpec(
        name=name, label=label, person=person, request=request,
        paginator=lambda: _paginators().salesforce(), records="records",
        id_of=lambda r: str(r["Id"]),
        version_of=lambda r: str(r.get("SystemModstamp")),
        updated_ms=lambda r: iso_ms(r.get("SystemModstamp")),
        created_ms=lambda r: iso_ms(r.get("CreatedDate")),
        owner_of=owner,
        traits_of=lambda r: _pick(r, traits),
        next_cursor=_max_cursor(lambda r: iso_ms(r.get("SystemModstamp"))),
        cursor_of=lambda r: iso_ms(r.get("SystemModstamp")),
    )  # fmt: skip


def _vendor(name: str, label: str, base_url: str, *objects: ObjectSpec) -> Vendor:
    return Vendor(name, label, base_url, {o.name: o for o in objects})


VENDORS: dict[str, Vendor] = {
    v.name: v
    for v in (
        _vendor(
            "hubspot", "HubSpot", "https://api.hubapi.com",
            _hubspot("contacts", "Contact", True),
            _hubspot("companies", "Company", False),
            _hubspot("deals", "Deal", False),
        ),
        _vendor(
            "zendesk", "Zendesk", "https://SUBDOMAIN.zendesk.com",
            _zendesk("tickets", "Ticket", False),
            _zendesk("users", "User", True),
        ),
        _vendor(
            "stripe", "Stripe", "https://api.stripe.com",
            _stripe("customers", "Customer", True),
            _stripe("charges", "Charge", False),
            _stripe("subscriptions", "Subscription", False),
        ),
        _vendor(
            "salesforce", "Salesforce", "https://INSTANCE.my.salesforce.com",
            _salesforce("contacts", "Contact", True),
            _salesforce("leads", "Lead", True),
            _salesforce("opportunities", "Opportunity", False),
        ),
    )
}  # fmt: skip

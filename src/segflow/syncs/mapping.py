"""An object from a vendor -> spec messages: an identify call with the traits of a person, and
a track event for the change, each with a **deterministic** ``messageId`` made of the vendor,
the object kind, the object id and its version. A re-sync of an unchanged object therefore
produces the same message ids, and the log stores it once (``segflow.log.dedupe``).

The person an object belongs to is its ``anonymousId`` (``stripe:customer:cus_1``,
``zendesk:user:42``): not a ``userId``, because a profile holds one ``userId`` and the same
person is a customer in Stripe and a user in Zendesk. The email in the traits (and in
``context.traits`` of the track event) is what joins them into one profile; the vendor's id
in ``context.externalIds`` (``stripe_customer_id``...) joins a sync's events to the webhook
sources' events of the same person.

>>> from segflow.syncs.vendors import VENDORS
>>> spec = VENDORS["zendesk"].objects["users"]
>>> user = {"id": 7, "email": "ann@example.com", "name": "Ann",
...         "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}
>>> identify, track = to_messages(VENDORS["zendesk"], spec, user)
>>> identify["anonymousId"], identify["traits"]["email"], track["event"]
('zendesk:user:7', 'ann@example.com', 'Zendesk User Created')
>>> to_messages(VENDORS["zendesk"], spec, user)[0]["messageId"] == identify["messageId"]
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from segflow.syncs.vendors import ObjectSpec, Record, Vendor

_MAX_PROPERTIES = 100
# the person's vendor id as the webhook sources name it (``identity.rules.VENDOR_ID_TYPES``), in
# ``context.externalIds``: a sync and a webhook of one customer resolve to one profile by it
_ID_TYPES = {
    "stripe:customer": "stripe_customer_id",
    "zendesk:user": "zendesk_user_id",
    "hubspot:contact": "hubspot_contact_id",
    "salesforce:contact": "salesforce_contact_id",
    "salesforce:lead": "salesforce_lead_id",
}
_SCALARS = (str, int, float, bool)


def message_id(vendor: str, obj: str, object_id: str, version: str, kind: str) -> str:
    """``sync-`` and 32 hex digits of ``(vendor, object, id, version, kind)`` (fits the
    collector's message id limit, whatever the vendor's ids look like).

    >>> len(message_id("stripe", "customers", "cus_1", "v1", "identify"))
    37
    """
    key = "\0".join((vendor, obj, object_id, version, kind)).encode()
    return "sync-" + hashlib.blake2b(key, digest_size=16).hexdigest()


def iso_time(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, as the wire format has it.

    >>> iso_time(1704067200123)
    '2024-01-01T00:00:00.123Z'
    """
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def properties_of(record: Record) -> dict[str, Any]:
    """The object's scalar fields (HubSpot's ``properties`` lifted up), at most 100: enough to
    segment on without copying whole nested objects into every event."""
    out = {k: v for k, v in record.items() if isinstance(v, _SCALARS)}
    nested = record.get("properties")
    if isinstance(nested, dict):
        out.update((k, v) for k, v in nested.items() if isinstance(v, _SCALARS))
    if len(out) > _MAX_PROPERTIES:
        out = dict(list(out.items())[:_MAX_PROPERTIES])
    return out


# the anonymousId prefix of an associated person, by (vendor, the person object)
_PERSON_KEYS = {("hubspot", "contacts"): "hubspot:contact"}


def to_messages(
    vendor: Vendor, spec: ObjectSpec, record: Record, people: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The messages of one object (see the module docstring). ``people``: the ids of the
    persons it is associated with (HubSpot's associations, ``spec.associated``): its track
    event goes to each of them, else to its ``owner_of`` or an identity of its own.

    >>> from segflow.syncs.vendors import VENDORS
    >>> deal = {"id": "77", "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z"}
    >>> hubspot = VENDORS["hubspot"]
    >>> [m["anonymousId"] for m in to_messages(hubspot, hubspot.objects["deals"], deal, ["51", "52"])]
    ['hubspot:contact:51', 'hubspot:contact:52']
    """
    object_id = spec.id_of(record)
    version = spec.version_of(record)
    if people and spec.associated is not None:
        prefix = _PERSON_KEYS[(vendor.name, spec.associated)]
        owners = [f"{prefix}:{p}" for p in dict.fromkeys(people)]
    else:
        owners = [spec.owner_of(record) or f"{vendor.name}:{spec.name}:{object_id}"]
    updated, created = spec.updated_ms(record), spec.created_ms(record)
    deleted = spec.deleted_of(record)
    if deleted:  # a track event on the person, not a deletion of the profile (docs/syncs.md)
        verb, at = "Deleted", updated
    elif updated is None:  # no update time (Stripe): the change happened by the time we saw it
        verb, at = "Synced", None
    else:
        verb, at = ("Created" if created == updated else "Updated"), updated
    props = properties_of(record)
    props.update(objectType=spec.name, objectId=object_id, vendor=vendor.name)
    traits = spec.traits_of(record) if spec.person else {}
    messages: list[dict[str, Any]] = []
    for owner in owners:
        common: dict[str, Any] = {"anonymousId": owner}
        if at is not None:
            common["timestamp"] = iso_time(at)
        context: dict[str, Any] = {}
        kind, _, owner_id = owner.rpartition(":")
        if kind in _ID_TYPES:
            context["externalIds"] = [{"id": owner_id, "type": _ID_TYPES[kind]}]
        if spec.person and not deleted:
            ids = {f"{vendor.name}Id": object_id}
            messages.append(
                {
                    **common,
                    "type": "identify",
                    "messageId": message_id(vendor.name, spec.name, object_id, version, "identify"),
                    "traits": {**traits, **ids},
                    **({"context": context} if context else {}),
                }
            )
        call = "track" if len(owners) == 1 and not people else f"track:{owner}"
        track: dict[str, Any] = {
            **common,
            "type": "track",
            "event": f"{vendor.label} {spec.label} {verb}",
            "messageId": message_id(vendor.name, spec.name, object_id, version, call),
            "properties": props,
        }
        if traits.get("email"):
            context = {**context, "traits": {"email": traits["email"]}}
        if context:
            track["context"] = context
        messages.append(track)
    return messages

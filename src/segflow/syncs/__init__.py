"""Pulled syncs: objects from the tools that hold user data (HubSpot, Zendesk, Stripe,
Salesforce) fetched incrementally through dlt's REST client and stored as spec events through
the same :class:`~segflow.collect.ingest.Ingestor` as every other message (docs/syncs.md).

Modules, in the order data flows:

- ``vendors``: each vendor's objects, endpoints, pagination and cursors (dlt paginators)
- ``auth``: a sync's :class:`Credential` -> how requests are signed (bearer, Zendesk API
  token, Salesforce's refresh-token flow)
- ``fetch``: pages of one object from a vendor's API (dlt's ``RESTClient``; 429 + Retry-After),
  and HubSpot's associations
- ``mapping``: an object -> an identify (traits) and a track event, with deterministic ids
- ``store``: sync definitions, encrypted credentials, cursors and progress (``syncs.sqlite``)
- ``runner``: fetch -> map -> durable append -> commit the cursor; the schedule inside ``serve``
- ``destination``: segflow as a dlt destination (``@dlt.destination``)

The public names are below (pinned by tests/unit/test_public_names.py); importing them does not
import dlt, which a run needs (the ``sources`` extra).

>>> from segflow.syncs import SyncDefinition, open_store
>>> SyncDefinition(name="crm", vendor="hubspot", source="crm").object_names()
('contacts', 'companies', 'deals')
"""

from segflow.syncs.auth import Credential
from segflow.syncs.destination import segflow_destination
from segflow.syncs.exceptions import DltMissing, SyncExists, SyncInvalid, UnknownSync, VendorError
from segflow.syncs.runner import SyncResult, SyncRunner, SyncSchedule
from segflow.syncs.store import SyncDefinition, SyncInfo, SyncProgress, SyncStore, open_store
from segflow.syncs.vendors import VENDORS

__all__ = [
    "VENDORS",
    "Credential",
    "DltMissing",
    "SyncDefinition",
    "SyncExists",
    "SyncInfo",
    "SyncInvalid",
    "SyncProgress",
    "SyncResult",
    "SyncRunner",
    "SyncSchedule",
    "SyncStore",
    "UnknownSync",
    "VendorError",
    "open_store",
    "segflow_destination",
]

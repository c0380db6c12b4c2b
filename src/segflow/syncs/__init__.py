"""Pulled syncs: objects from the tools that hold user data (HubSpot, Zendesk, Stripe,
Salesforce) fetched incrementally through dlt's REST client and stored as spec events through
the same :class:`~segflow.collect.ingest.Ingestor` as every other message (docs/syncs.md).

Modules, in the order data flows:

- ``vendors``: each vendor's objects, endpoints, pagination and cursors (dlt paginators)
- ``fetch``: pages of one object from a vendor's API (dlt's ``RESTClient``; 429 + Retry-After)
- ``mapping``: an object -> an identify (traits) and a track event, with deterministic ids
- ``store``: sync definitions, encrypted credentials, cursors and progress (``syncs.sqlite``)
- ``runner``: fetch -> map -> durable append -> commit the cursor; the schedule inside ``serve``
- ``destination``: segflow as a dlt destination (``@dlt.destination``)
"""

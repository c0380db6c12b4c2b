"""Vendor webhooks as sources: ``POST /v1/webhooks/{vendor}`` (see docs/webhooks.md).

Each vendor's adapter (``stripe``, ``zendesk``, ``hubspot``, ``salesforce``, ``sendgrid``,
``mailchimp``, ``generic``) verifies the vendor's signature scheme and maps its payloads to
spec messages; :mod:`segflow.collect.webhooks.receiver` authenticates a delivery, runs its
adapter and ingests the messages through the :class:`~segflow.collect.ingest.Ingestor`.
"""

from segflow.collect.webhooks.config import VENDORS, GenericMapping, WebhookConfig

__all__ = ["VENDORS", "GenericMapping", "WebhookConfig"]

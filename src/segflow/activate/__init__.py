"""segflow.activate: destinations, the durable delivery queue, retries, signing, SSRF guard.

See docs/activation.md. The pieces ``segflow serve`` wires together::

    store = DeliveryStore(data_dir / "delivery.sqlite")
    guard = UrlGuard(settings.activate.allow_list)
    worker = DeliveryWorker(store, change_feed, profile_lookup, guard=guard)
    service = ActivationService(store, guard=guard, lookup=profile_lookup)
    routes = destination_routes(service, authorize)   # segflow.api.destinations
"""

from segflow.activate.feeder import Feeder
from segflow.activate.models import Delivery, Destination, Subscription
from segflow.activate.payloads import DictProfiles, ProfileLookup
from segflow.activate.service import ActivationService
from segflow.activate.ssrf import UrlGuard
from segflow.activate.store import DeliveryStore
from segflow.activate.worker import DeliveryWorker

__all__ = [
    "ActivationService",
    "Delivery",
    "DeliveryStore",
    "DeliveryWorker",
    "Destination",
    "DictProfiles",
    "Feeder",
    "ProfileLookup",
    "Subscription",
    "UrlGuard",
]

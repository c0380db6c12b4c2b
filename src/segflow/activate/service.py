"""The activation service: what the API and the CLI call.

>>> import tempfile, os
>>> svc = ActivationService(DeliveryStore(os.path.join(tempfile.mkdtemp(), "delivery.sqlite")),
...                         guard=UrlGuard(resolver=lambda host: ["93.184.216.34"]))
>>> dest, secret = svc.create_destination({"name": "crm", "url": "https://crm.example/hook"})
>>> secret.startswith("whsec_"), [d.name for d in svc.list_destinations()]
(True, ['crm'])
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from segflow.activate.exceptions import (
    InvalidDestinationError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)
from segflow.activate.feeder import Feeder
from segflow.activate.files import (
    ExportRoot,
    FileSink,
    LocalWriter,
    snapshot_rows,
    write_snapshot,
)
from segflow.activate.models import SCORE_PREFIX, Delivery, Destination, Subscription
from segflow.activate.payloads import ChangeContext, ProfileLookup, build_payload, phone_rules
from segflow.activate.secretbox import SecretBox
from segflow.activate.senders import RequestPool, WebhookSender
from segflow.activate.signing import new_secret
from segflow.activate.ssrf import UrlGuard, pinned_pool
from segflow.activate.store import DeliveryStore
from segflow.clock import Clock, WallClock

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DAY_MS = 86_400_000
_READ_ONLY = frozenset({"name", "created_ms", "updated_ms", "disabled_reason"})


class ActivationService:
    """Destinations, subscriptions, delivery logs and dead letters over one ``DeliveryStore``."""

    def __init__(
        self,
        store: DeliveryStore,
        *,
        guard: UrlGuard,
        lookup: ProfileLookup | None = None,
        clock: Clock | None = None,
        secret_overlap_ms: int = DAY_MS,
        pools: Callable[[int], RequestPool] | None = None,
        exports: ExportRoot | None = None,
    ) -> None:
        self.store = store
        self.exports = exports  # where file destinations may write (None: anywhere)
        self.guard = guard
        self.lookup = lookup
        self.clock = clock or WallClock()
        self.secret_overlap_ms = secret_overlap_ms
        self.pools = pools or (lambda size: pinned_pool(guard, size))

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        allow_list: Sequence[str] = (),
        secrets_key: str | None = None,
        export_root: str | Path | None = None,
        **kwargs: Any,
    ) -> ActivationService:
        """The service on ``DATA_DIR/delivery.sqlite`` (secrets encrypted with ``secrets_key``,
        else with ``DATA_DIR/secrets.key``; file destinations inside ``export_root``, else
        ``DATA_DIR/exports``)."""
        box = SecretBox.open(data_dir, secrets_key)
        store = DeliveryStore(Path(data_dir) / "delivery.sqlite", box=box)
        exports = ExportRoot(export_root or Path(data_dir) / "exports")
        return cls(store, guard=UrlGuard(allow_list), exports=exports, **kwargs)

    # -- destinations --------------------------------------------------------------------
    def _validate(self, dest: Destination) -> Destination:
        if not NAME.match(dest.name):
            raise InvalidDestinationError("name", "letters, digits, '_', '-', '.'; at most 64")
        if dest.kind == "webhook":
            if not dest.url:
                raise InvalidDestinationError("url", "a webhook destination needs a url")
            self.guard.check(dest.url)
        if dest.kind == "file" and not dest.directory:
            raise InvalidDestinationError("directory", "a file destination needs a directory")
        if dest.kind == "file" and dest.directory and self.exports is not None:
            dest = msgspec.structs.replace(dest, directory=self.exports.place(dest.directory))
        for field, value in (
            ("concurrency", dest.concurrency),
            ("batch_max", dest.batch_max),
            ("timeout_ms", dest.timeout_ms),
            ("horizon_ms", dest.horizon_ms),
            ("backoff_base_ms", dest.backoff_base_ms),
        ):
            if value < 1:
                raise InvalidDestinationError(field, "must be at least 1")
        if dest.rate_limit_per_s is not None and dest.rate_limit_per_s <= 0:
            raise InvalidDestinationError("rate_limit_per_s", "must be positive")
        code = (dest.phone_country_code or "0").removeprefix("+")
        if not code.isdigit() or len(code) > 3:
            raise InvalidDestinationError("phone_country_code", "1 to 3 digits, e.g. 44")
        return dest

    def _convert(self, data: Mapping[str, Any]) -> Destination:
        try:
            return msgspec.convert(dict(data), Destination)
        except msgspec.ValidationError as exc:
            raise InvalidDestinationError("destination", str(exc)) from exc

    def create_destination(self, spec: Mapping[str, Any]) -> tuple[Destination, str]:
        """Create a destination; returns it and its signing secret (shown only now)."""
        now_ms = self.clock.now_ms()
        fields = {k: v for k, v in spec.items() if k not in _READ_ONLY - {"name"}}
        dest = self._validate(self._convert({**fields, "created_ms": now_ms, "updated_ms": now_ms}))
        self.store.put_destination(dest, create=True)
        secret = new_secret()
        self.store.add_secret(dest.name, secret, self._wall_ms(), overlap_ms=0)
        return dest, secret

    def update_destination(
        self, name: str, changes: Mapping[str, Any], *, resync: bool = False
    ) -> Destination:
        """Change a destination; ``enabled: true`` re-enables one that a 410 disabled."""
        current = self.store.destination(name)
        data = msgspec.to_builtins(current)
        data.update({k: v for k, v in changes.items() if k not in _READ_ONLY})
        data["updated_ms"] = self.clock.now_ms()
        if data.get("enabled"):
            data["disabled_reason"] = None
        dest = self._validate(self._convert(data))
        self.store.put_destination(dest, create=False)
        if resync:
            self.initial_sync(name)
        return dest

    def delete_destination(self, name: str) -> None:
        self.store.delete_destination(name)

    def list_destinations(self) -> list[Destination]:
        return self.store.destinations()

    def show(self, name: str) -> dict[str, Any]:
        """A destination with its subscriptions, delivery stats, secrets (prefixes) and notices."""
        return {
            "destination": self.store.destination(name),
            "subscriptions": self.store.subscriptions(name),
            "stats": self.store.stats(name),
            "secrets": self.store.secret_infos(name, self._wall_ms()),
            "notices": self.store.notices(name),
        }

    def rotate_secret(self, name: str) -> str:
        """A new secret; the old ones keep signing (a second signature) for the overlap."""
        self.store.destination(name)
        secret = new_secret()
        self.store.add_secret(name, secret, self._wall_ms(), overlap_ms=self.secret_overlap_ms)
        return secret

    def _wall_ms(self) -> int:
        return int(time.time() * 1000)

    # -- subscriptions -------------------------------------------------------------------
    def subscribe(
        self,
        destination: str,
        segment: str,
        *,
        kinds: Sequence[str] = ("entered", "exited"),
        traits: Sequence[str] = (),
        initial_sync: bool = False,
    ) -> tuple[Subscription, int]:
        """Connect ``destination`` to ``segment``; returns the subscription and rows queued."""
        self.store.destination(destination)
        if segment.startswith(SCORE_PREFIX):  # a model's live score changes, not a segment
            kinds = ("score_changed",) if tuple(kinds) == ("entered", "exited") else kinds
            if list(kinds) != ["score_changed"]:
                raise InvalidDestinationError(
                    "kinds", f"a subscription to {SCORE_PREFIX}MODEL takes score_changed only"
                )
            if initial_sync:
                raise InvalidDestinationError(
                    "initial_sync", f"a subscription to {SCORE_PREFIX}MODEL has no members"
                )
        elif not kinds or any(k not in ("entered", "exited") for k in kinds):
            raise InvalidDestinationError("kinds", "a non-empty subset of entered, exited")
        sub = msgspec.convert(
            {
                "destination": destination,
                "segment": segment,
                "kinds": list(kinds),
                "traits": list(traits),
                "created_ms": self.clock.now_ms(),
            },
            Subscription,
        )
        self.store.put_subscription(sub)
        return sub, (self.initial_sync(destination, segment) if initial_sync else 0)

    def unsubscribe(self, destination: str, segment: str) -> bool:
        return self.store.delete_subscription(destination, segment)

    def initial_sync(self, destination: str, segment: str | None = None) -> int:
        """Queue ``entered`` for the current members (once; members already told are skipped)."""
        if self.lookup is None:
            raise InvalidDestinationError("initial_sync", "no profile lookup is configured")
        return Feeder(self.store, self.lookup, self.clock).initial_sync(destination, segment)

    def snapshot(self, destination: str, segment: str) -> list[str]:
        """Write the current members of ``segment`` to a file destination (Parquet and CSV)."""
        dest = self.store.destination(destination)
        if dest.kind != "file" or not dest.directory or self.lookup is None:
            raise InvalidDestinationError(
                "destination", "snapshots need a file destination and profiles"
            )
        sub = next((s for s in self.store.subscriptions(destination) if s.segment == segment), None)
        traits = sub.traits if sub else ()
        lookup = self.lookup
        rows = snapshot_rows(
            lookup.members(segment),
            lookup.identities,
            lookup.traits,
            traits,
            hashed=dest.identifiers == "hashed",
            phone=phone_rules(dest),
        )
        # checked again now (a link may have been made since): 400 on directory
        directory = self.exports.place(dest.directory) if self.exports else dest.directory
        return write_snapshot(LocalWriter(directory), segment, rows, self.clock.now_ms())

    # -- delivery log, dead letters ------------------------------------------------------
    def deliveries(
        self, name: str, *, status: str | None = None, since_ms: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The delivery log: each change with its attempts (status, latency, next retry)."""
        self.store.destination(name)
        rows = self.store.deliveries(name, status=status, since_ms=since_ms, limit=limit)
        return [{"delivery": d, "attempts": self.store.attempts(d.id)} for d in rows]

    def dead_letters(
        self, name: str, *, since_ms: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self.deliveries(name, status="dead", since_ms=since_ms, limit=limit)

    def replay(self, name: str, *, since_ms: int = 0, ids: Sequence[int] = ()) -> dict[str, int]:
        """Re-send dead letters (since ``since_ms`` by the time they died): how many were
        queued again and how many a later delivered change superseded (not re-sent)."""
        self.store.destination(name)
        return self.store.replay(name, since_ms=since_ms, ids=ids)

    async def test_send(self, name: str) -> dict[str, Any]:
        """Send a synthetic ``segment.entered`` now (not queued); report the outcome."""
        dest = self.store.destination(name)
        now_ms = self.clock.now_ms()
        ctx = ChangeContext(
            profile_id="segflow-test",
            segment="segflow-test",
            kind="entered",
            at_ms=now_ms,
            sequence=0,
            identities=[("user_id", "segflow-test")],
            traits={},
            webhook_id=f"msg_test_{now_ms}",
        )
        delivery = Delivery(
            id=0,
            destination=name,
            profile_id=ctx.profile_id,
            webhook_id=ctx.webhook_id,
            segment=ctx.segment,
            kind="entered",
            sequence=0,
            at_ms=now_ms,
            payload=build_payload(dest, ctx),
            status="pending",
            attempts=0,
            created_ms=now_ms,
        )
        t0 = time.perf_counter()
        try:
            if dest.kind == "file":
                status: int | None = FileSink(exports=self.exports).write(dest, [delivery], now_ms)
            else:
                pool = self.pools(1)
                try:
                    sender = WebhookSender(
                        pool, lambda n: self.store.live_secrets(n, self._wall_ms())
                    )
                    status = await asyncio.to_thread(sender.send, dest, [delivery])
                finally:
                    pool.close()
            ok, error = True, None
        except (RetryableDeliveryError, RejectedDeliveryError) as exc:
            status, ok, error = getattr(exc, "status", None), False, exc.message
        return {
            "ok": ok,
            "status": status,
            "error": error,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            "webhook_id": ctx.webhook_id,
        }

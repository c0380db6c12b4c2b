"""From the processor's change feed to the delivery queue.

:class:`Feeder` reads the :class:`~segflow.spec.ChangeFeed` after its cursor, turns each
``MembershipChange`` into one queued delivery per subscribed destination, and stores the rows
and the new cursor in one transaction: after a crash the feed is re-read from the last
committed cursor, so nothing is lost and nothing is queued twice.

It also remembers what each destination has been told (``sent_state``), which makes initial
syncs and live changes meet without duplicates, and each profile's consent as of the feed's
position (from ``ConsentChanged``): a withdrawal sends consent-aware destinations ``exited``
for every segment they believe the profile is in; a grant after a withdrawal sends
``entered`` for the subscribed segments the profile is in at that moment.
"""

from __future__ import annotations

from sqlite3 import Connection
from typing import Any, NamedTuple

from segflow.activate.models import SCORE_PREFIX, ChangeKind, Destination, Subscription
from segflow.activate.payloads import (
    ChangeContext,
    ProfileLookup,
    build_payload,
    consent_denied,
    phone_rules,
    select_traits,
    webhook_id,
)
from segflow.activate.store import DeliveryStore, NewDelivery
from segflow.clock import Clock, WallClock
from segflow.spec import (
    CONSENT_TRAIT,
    AnyChange,
    ChangeFeed,
    ConsentChanged,
    MembershipChange,
    ScoreChanged,
)

CURSOR = "change_feed"
Routes = dict[str, list[tuple[Destination, Subscription]]]


class PumpResult(NamedTuple):
    read: int
    queued: int


_UNKNOWN: Any = object()


class _Profile:
    """What the payloads need of one profile. ``consent`` is as of the feed's position once the
    feed has told one (``stored``), else the profile's current trait."""

    def __init__(self, lookup: ProfileLookup, profile_id: str, stored: Any = _UNKNOWN) -> None:
        self.identities = list(lookup.identities(profile_id))
        self.traits: dict[str, Any] = dict(lookup.traits(profile_id))
        self.stored = stored
        self.consent = self.traits.get(CONSENT_TRAIT) if stored is _UNKNOWN else stored


class Feeder:
    """Queues membership changes for the destinations subscribed to their segments.

    >>> import tempfile, os
    >>> from segflow.activate.payloads import DictProfiles
    >>> store = DeliveryStore(os.path.join(tempfile.mkdtemp(), "d.sqlite"))
    >>> class EmptyFeed:
    ...     def read(self, after_seq, limit=1000): return []
    >>> Feeder(store, lookup=DictProfiles()).pump(EmptyFeed())
    PumpResult(read=0, queued=0)
    >>> store.close()
    """

    def __init__(
        self, store: DeliveryStore, lookup: ProfileLookup, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.lookup = lookup
        self.clock = clock or WallClock()

    def pump(self, feed: ChangeFeed, limit: int = 1000) -> PumpResult:
        """Queue the next ``limit`` changes of ``feed``: how many were read, how many rows queued."""
        after = self.store.cursor(CURSOR)
        batch = feed.read(after, limit)
        if not batch:
            return PumpResult(0, 0)
        routes = self._routes()
        consent_dests = [d for d in self.store.destinations() if d.enabled and d.consent_purpose]
        changes = [c for _, c in batch if _relevant(c, routes)]
        pids = {
            c.profile_id
            for c in changes
            if isinstance(c, MembershipChange | ConsentChanged | ScoreChanged)
        }
        now_ms = self.clock.now_ms()
        with self.store.transaction() as con:
            if self.store.cursor(CURSOR) != after:
                return PumpResult(0, 0)  # another feeder moved the cursor meanwhile
            known = self.store.consents(con, pids)
            profiles = {p: _Profile(self.lookup, p, known.get(p, _UNKNOWN)) for p in pids}
            queued = 0
            for change in changes:
                if isinstance(change, ConsentChanged):
                    rows = self._consent(con, change, profiles[change.profile_id], consent_dests)
                    queued += self.store.enqueue(con, rows, now_ms)
                elif isinstance(change, MembershipChange):
                    for dest, sub in routes[change.segment]:
                        profile = profiles[change.profile_id]
                        rows = self._rows(con, dest, sub, change, profile, now_ms)
                        queued += self.store.enqueue(con, rows, now_ms)
                elif isinstance(change, ScoreChanged):
                    for dest, sub in routes[SCORE_PREFIX + change.model]:
                        rows = _score_rows(dest, sub, change, profiles[change.profile_id])
                        queued += self.store.enqueue(con, rows, now_ms)
            self.store.set_cursor(con, CURSOR, batch[-1][0])
        return PumpResult(len(batch), queued)

    def initial_sync(self, destination: str, segment: str | None = None) -> int:
        """Queue ``entered`` for current members the destination has not been told about."""
        dest = self.store.destination(destination)
        subs = [s for s in self.store.subscriptions(destination) if segment in (None, s.segment)]
        now_ms = self.clock.now_ms()
        queued = 0
        for sub in subs:
            if "entered" not in sub.kinds:
                continue
            members = list(self.lookup.members(sub.segment))
            with self.store.transaction() as con:
                known = self.store.consents(con, members)
                for pid in members:
                    profile = _Profile(self.lookup, pid, known.get(pid, _UNKNOWN))
                    change = MembershipChange(
                        profile_id=pid,
                        segment=sub.segment,
                        kind="entered",
                        at_ms=now_ms,
                        sequence=0,
                    )
                    rows = self._rows(con, dest, sub, change, profile, now_ms, sync=True)
                    queued += self.store.enqueue(con, rows, now_ms)
        return queued

    def _routes(self) -> Routes:
        dests = {d.name: d for d in self.store.destinations() if d.enabled}
        routes: Routes = {}
        for sub in self.store.subscriptions():
            if sub.destination in dests:
                routes.setdefault(sub.segment, []).append((dests[sub.destination], sub))
        return routes

    def _consent(
        self,
        con: Connection,
        change: ConsentChanged,
        profile: _Profile,
        dests: list[Destination],
    ) -> list[NewDelivery]:
        """Withdraw or resume consent-aware destinations; remember the consent for later changes."""
        pid = change.profile_id
        before = None if profile.stored is _UNKNOWN else profile.stored  # unknown: not denied
        self.store.set_consent(con, pid, change.consent)
        profile.stored = profile.consent = change.consent
        rows: list[NewDelivery] = []
        for dest in dests:
            if consent_denied(change.consent, dest.consent_purpose):
                rows += self._withdraw(con, dest, pid, profile, change.at_ms, change.sequence)
            elif consent_denied(before, dest.consent_purpose):
                rows += self._resume(con, dest, change, profile)
        return rows

    def _resume(
        self, con: Connection, dest: Destination, change: ConsentChanged, profile: _Profile
    ) -> list[NewDelivery]:
        """``entered`` for the subscribed segments the profile is in now and the destination
        has not been told about (it was sent ``exited`` when consent was withdrawn)."""
        subs = {s.segment: s for s in self.store.subscriptions(dest.name) if "entered" in s.kinds}
        pid, out = change.profile_id, []
        for segment in sorted(set(self.lookup.segments(pid)) & set(subs)):
            if self.store.sent_kind(con, dest.name, pid, segment) == "entered":
                continue
            tag = f"consent-resume:{change.sequence}:{change.at_ms}"
            out.append(
                _new(
                    dest,
                    subs[segment],
                    pid,
                    segment,
                    "entered",
                    change.at_ms,
                    change.sequence,
                    profile,
                    tag,
                )
            )
        return out

    def _rows(
        self,
        con: Connection,
        dest: Destination,
        sub: Subscription,
        change: MembershipChange,
        profile: _Profile,
        now_ms: int,
        *,
        sync: bool = False,
    ) -> list[NewDelivery]:
        pid = change.profile_id
        if consent_denied(profile.consent, dest.consent_purpose):
            return self._withdraw(con, dest, pid, profile, change.at_ms, change.sequence)
        if self.store.sent_kind(con, dest.name, pid, change.segment) == change.kind:
            return []  # the destination already knows (initial sync met a live change)
        if change.kind not in sub.kinds:
            self.store.set_sent(con, dest.name, pid, change.segment, change.kind)
            return []
        tag = f"sync:{now_ms}" if sync else change.kind
        return [
            _new(
                dest,
                sub,
                pid,
                change.segment,
                change.kind,
                change.at_ms,
                change.sequence,
                profile,
                tag,
                recorded_at_ms=None if sync else change.recorded_at_ms,
            )
        ]

    def _withdraw(
        self,
        con: Connection,
        dest: Destination,
        pid: str,
        profile: _Profile,
        at_ms: int,
        sequence: int,
    ) -> list[NewDelivery]:
        out: list[NewDelivery] = []
        subs = {s.segment: s for s in self.store.subscriptions(dest.name)}
        for segment in self.store.entered_segments(con, dest.name, pid):
            sub = subs.get(segment) or Subscription(destination=dest.name, segment=segment)
            tag = f"consent:{sequence}:{at_ms}"
            out.append(
                _new(dest, sub, pid, segment, "exited", at_ms, sequence, profile, tag, consent=True)
            )
        return out


def _relevant(change: AnyChange, routes: Routes) -> bool:
    if isinstance(change, MembershipChange):
        return change.segment in routes
    if isinstance(change, ScoreChanged):
        return SCORE_PREFIX + change.model in routes
    return isinstance(change, ConsentChanged)


def _score_rows(
    dest: Destination, sub: Subscription, change: ScoreChanged, profile: _Profile
) -> list[NewDelivery]:
    """A live score change for a destination subscribed to ``score:MODEL`` (none while the
    profile's consent denies the destination's purpose: nothing to withdraw, it is not sent)."""
    if consent_denied(profile.consent, dest.consent_purpose):
        return []
    score = {"model": change.model, "old": change.old, "new": change.new}
    segment = SCORE_PREFIX + change.model
    return [
        _new(dest, sub, change.profile_id, segment, "score_changed", change.at_ms,
             change.sequence, profile, "score_changed", score=score)
    ]  # fmt: skip


def _new(
    dest: Destination,
    sub: Subscription,
    pid: str,
    segment: str,
    kind: ChangeKind,
    at_ms: int,
    sequence: int,
    profile: _Profile,
    tag: str,
    *,
    consent: bool = False,
    recorded_at_ms: int | None = None,
    score: dict[str, Any] | None = None,
) -> NewDelivery:
    wid = webhook_id(dest.name, pid, segment, tag, sequence)
    hashed = dest.identifiers == "hashed"
    traits = (
        {}
        if consent
        else select_traits(profile.traits, sub.traits, hashed=hashed, phone=phone_rules(dest))
    )
    ctx = ChangeContext(
        profile_id=pid,
        segment=segment,
        kind=kind,
        at_ms=at_ms,
        sequence=sequence,
        identities=profile.identities,
        traits=traits,
        webhook_id=wid,
        recorded_at_ms=recorded_at_ms,
        score=score,
    )
    return NewDelivery(
        destination=dest.name,
        profile_id=pid,
        webhook_id=wid,
        segment=segment,
        kind=kind,
        sequence=sequence,
        at_ms=at_ms,
        payload=build_payload(dest, ctx),
    )

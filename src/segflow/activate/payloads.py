"""What a destination receives for one membership change, in the destination's format.

Formats: ``segflow`` (Standard Webhooks' ``{type, timestamp, data}`` envelope),
``segment_track`` (Segment Engage's ``Audience Entered``/``Audience Exited`` track calls) and
``segment_identify`` (an identify with ``{audience_key: true|false}``).

>>> ctx = ChangeContext(profile_id="p1", segment="vip", kind="entered", at_ms=0, sequence=3,
...     identities=[("user_id", "u1")], traits={"plan": "pro"}, webhook_id="msg_1")
>>> build_payload(Destination(name="d", url="https://x"), ctx)["type"]
'segment.entered'
>>> build_payload(Destination(name="d", url="https://x", payload_format="segment_track"), ctx)["event"]
'Audience Entered'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from segflow.activate.identifiers import (
    EMAIL_TYPES,
    PHONE_TYPES,
    PhoneRules,
    hash_email,
    hash_phone,
    hashed_identifier,
)
from segflow.activate.models import ChangeKind, Destination
from segflow.spec.normalize import iso_ms


class ProfileLookup(Protocol):
    """What activation needs to know about a profile (adapted from the processor's reader)."""

    def identities(self, profile_id: str) -> list[tuple[str, str]]:
        """``(type, value)`` pairs, e.g. ``("email", "a@b.co")``, ``("user_id", "u1")``."""
        ...

    def traits(self, profile_id: str) -> Mapping[str, Any]: ...

    def members(self, segment: str) -> Iterable[str]:
        """The profile ids currently in ``segment`` (for initial syncs)."""
        ...

    def segments(self, profile_id: str) -> Iterable[str]:
        """The segments the profile is in now (to resume after consent is granted again)."""
        ...


class DictProfiles:
    """A :class:`ProfileLookup` over dicts (tests, demos, file imports).

    >>> p = DictProfiles(identities={"p1": [("email", "a@b.co")]}, members={"vip": ["p1"]})
    >>> p.identities("p1"), list(p.members("vip")), dict(p.traits("p1")), p.segments("p1")
    ([('email', 'a@b.co')], ['p1'], {}, ['vip'])
    """

    def __init__(
        self,
        identities: Mapping[str, list[tuple[str, str]]] | None = None,
        traits: Mapping[str, Mapping[str, Any]] | None = None,
        members: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.identity_map: dict[str, list[tuple[str, str]]] = dict(identities or {})
        self.trait_map: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (traits or {}).items()}
        self.member_map: dict[str, list[str]] = {k: list(v) for k, v in (members or {}).items()}

    def identities(self, profile_id: str) -> list[tuple[str, str]]:
        return list(self.identity_map.get(profile_id, []))

    def traits(self, profile_id: str) -> Mapping[str, Any]:
        return self.trait_map.get(profile_id, {})

    def members(self, segment: str) -> Iterable[str]:
        return list(self.member_map.get(segment, []))

    def segments(self, profile_id: str) -> list[str]:
        return sorted(s for s, pids in self.member_map.items() if profile_id in pids)


class ChangeContext(msgspec.Struct, frozen=True, kw_only=True):
    """A membership change with the profile facts captured when it was queued: valid from
    ``at_ms`` (event time, as the processor knew it), recorded at ``recorded_at_ms``
    (processing time; ``None``: the same as ``at_ms``, e.g. a synthetic or initial-sync change)."""

    profile_id: str
    segment: str
    kind: ChangeKind
    at_ms: int
    sequence: int
    identities: list[tuple[str, str]]
    traits: dict[str, Any]
    webhook_id: str
    recorded_at_ms: int | None = None
    score: dict[str, Any] | None = None  # a score change: its model, old and new score


def webhook_id(destination: str, profile_id: str, segment: str, kind: str, sequence: int) -> str:
    """The idempotency key of a change for a destination: stable across retries and re-queues.

    >>> webhook_id("d", "p", "s", "entered", 1) == webhook_id("d", "p", "s", "entered", 1)
    True
    """
    key = f"{destination}\x1f{profile_id}\x1f{segment}\x1f{kind}\x1f{sequence}"
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def iso(at_ms: int) -> str:
    """``2024-01-01T00:00:00.000Z`` for epoch milliseconds."""
    return iso_ms(at_ms)


def consent_denied(consent: Any, purpose: str | None) -> bool:
    """True if a profile's ``consent`` trait value explicitly denies ``purpose``.

    Reads ``{"advertising": false}`` and Segment's ``{"categoryPreferences": {...}}``;
    purposes match case-insensitively. No answer means not denied.

    >>> consent_denied({"Advertising": False}, "advertising")
    True
    >>> consent_denied({"categoryPreferences": {"advertising": "denied"}}, "advertising")
    True
    >>> consent_denied(None, "advertising"), consent_denied({"advertising": True}, "advertising")
    (False, False)
    """
    if purpose is None or not isinstance(consent, Mapping):
        return False
    prefs = consent.get("categoryPreferences", consent)
    if not isinstance(prefs, Mapping):
        return False
    for key, value in prefs.items():
        if str(key).lower() == purpose.lower():
            return value is False or str(value).lower() in ("false", "denied", "no", "0")
    return False


def phone_rules(dest: Destination) -> PhoneRules:
    """How ``dest`` wants phone numbers hashed."""
    return PhoneRules(dest.phone_format, dest.phone_country_code)


def select_traits(
    traits: Mapping[str, Any],
    names: Iterable[str],
    *,
    hashed: bool,
    phone: PhoneRules = PhoneRules(),
) -> dict[str, Any]:
    """The traits a subscription selects, with email/phone hashed when asked."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in traits:
            continue
        value = traits[name]
        if hashed and isinstance(value, str) and name.lower() in EMAIL_TYPES:
            out[f"{name}_sha256"] = hash_email(value)
        elif hashed and isinstance(value, str) and name.lower() in PHONE_TYPES:
            out[f"{name}_sha256"] = hash_phone(value, phone)
        else:
            out[name] = value
    return out


def _identities(dest: Destination, ctx: ChangeContext) -> list[tuple[str, str]]:
    if dest.identifiers == "hashed":
        return [hashed_identifier(t, v, phone_rules(dest)) for t, v in ctx.identities]
    return list(ctx.identities)


def _first(identities: list[tuple[str, str]], *types: str) -> str | None:
    for id_type, value in identities:
        if id_type in types:
            return value
    return None


def build_payload(dest: Destination, ctx: ChangeContext) -> dict[str, Any]:
    """The JSON object sent for one change (already trait-selected in ``ctx.traits``).

    ``segflow``'s ``data`` carries both times of the change (docs/activation.md):
    ``valid_at_ms``, the event time it holds from as the processor knew it, and
    ``recorded_at_ms``, when segflow committed it; ``at_ms`` (kept for compatibility) is
    ``valid_at_ms``, as is the envelope's ``timestamp`` and Segment's ``timestamp``.

    >>> ctx = ChangeContext(profile_id="p", segment="s", kind="exited", at_ms=5, sequence=1,
    ...     identities=[], traits={}, webhook_id="w", recorded_at_ms=9)
    >>> data = build_payload(Destination(name="d", url="https://x"), ctx)["data"]
    >>> data["at_ms"], data["valid_at_ms"], data["recorded_at_ms"]
    (5, 5, 9)
    """
    identities = _identities(dest, ctx)
    recorded = ctx.at_ms if ctx.recorded_at_ms is None else ctx.recorded_at_ms
    if dest.payload_format == "segflow" and ctx.score is not None:
        return _score_payload(ctx, identities, recorded)
    if dest.payload_format == "segflow":
        return {
            "type": f"segment.{ctx.kind}",
            "timestamp": iso(ctx.at_ms),
            "data": {
                "id": ctx.webhook_id,
                "profile_id": ctx.profile_id,
                "identifiers": [{"type": t, "value": v} for t, v in identities],
                "segment": ctx.segment,
                "kind": ctx.kind,
                "at_ms": ctx.at_ms,
                "valid_at_ms": ctx.at_ms,
                "recorded_at_ms": recorded,
                "sequence": ctx.sequence,
                "traits": ctx.traits,
            },
        }
    return _segment_payload(dest, ctx, identities)


def _score_payload(
    ctx: ChangeContext, identities: list[tuple[str, str]], recorded: int
) -> dict[str, Any]:
    """segflow's shape of a live score change (``score.changed``): the model, old and new."""
    assert ctx.score is not None
    return {
        "type": "score.changed",
        "timestamp": iso(ctx.at_ms),
        "data": {
            "id": ctx.webhook_id,
            "profile_id": ctx.profile_id,
            "identifiers": [{"type": t, "value": v} for t, v in identities],
            **ctx.score,
            "at_ms": ctx.at_ms,
            "recorded_at_ms": recorded,
            "sequence": ctx.sequence,
            "traits": ctx.traits,
        },
    }


def _segment_payload(
    dest: Destination, ctx: ChangeContext, identities: list[tuple[str, str]]
) -> dict[str, Any]:
    entered = ctx.kind == "entered"
    base: dict[str, Any] = {
        "messageId": ctx.webhook_id,
        "timestamp": iso(ctx.at_ms),
        "userId": _first(identities, "user_id", "userId"),
        "anonymousId": _first(identities, "anonymous_id", "anonymousId") or ctx.profile_id,
        "context": {
            "personas": {
                "computation_class": "audience",
                "computation_key": ctx.segment,
                "space_id": "segflow",
            },
            "traits": {t: v for t, v in identities if t not in ("user_id", "anonymous_id")},
        },
    }
    if ctx.score is not None:  # Segment's shapes: a track, or the score as a trait
        model, new = ctx.score["model"], ctx.score["new"]
        if dest.payload_format == "segment_track":
            props = {**ctx.score, **ctx.traits}
            return {"type": "track", "event": "Score Changed", "properties": props, **base}
        return {"type": "identify", "traits": {f"{model}_score": new, **ctx.traits}, **base}
    if dest.payload_format == "segment_track":
        props = {"audience_key": ctx.segment, ctx.segment: entered, **ctx.traits}
        event = "Audience Entered" if entered else "Audience Exited"
        return {"type": "track", "event": event, "properties": props, **base}
    return {"type": "identify", "traits": {ctx.segment: entered, **ctx.traits}, **base}

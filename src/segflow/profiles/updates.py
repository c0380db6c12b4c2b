"""How events and merges change a profile: last write wins by event time, counters add up.

>>> from segflow.spec import Event
>>> p = Profile(profile_id="p", created_ms=0)
>>> apply_event(p, Event(type="identify", message_id="m2", source_id="s", timestamp_ms=20,
...             received_at_ms=20, user_id="u", traits={"plan": "pro"}))
>>> apply_event(p, Event(type="identify", message_id="m1", source_id="s", timestamp_ms=10,
...             received_at_ms=30, user_id="u", traits={"plan": "free"}))
>>> p.traits["plan"], p.event_counts["identify"], p.first_seen_ms
('pro', 2, 10)
"""

from __future__ import annotations

from typing import Any

from segflow.profiles.profile import HISTORY_CAP, Profile, TraitChange
from segflow.spec.events import Event


def event_key(event: Event) -> str:
    """The name events are counted under: the track name, else ``type`` (``page``, ``identify``)."""
    return event.event if event.type == "track" and event.event else event.type


def _set_traits(
    traits: dict[str, Any],
    versions: dict[str, tuple[int, str]],
    new: dict[str, Any],
    version: tuple[int, str],
) -> list[str]:
    changed = []
    for key, value in new.items():
        current = versions.get(key)
        if current is not None and current >= version:
            continue
        versions[key] = version
        if traits.get(key, _MISSING) != value:
            changed.append(key)
        traits[key] = value
    return changed


_MISSING = object()


def _record_history(profile: Profile, keys: list[str], event: Event) -> None:
    for key in keys:
        profile.trait_history.append(
            TraitChange(key, profile.traits[key], event.timestamp_ms, event.message_id)
        )
    if len(profile.trait_history) > HISTORY_CAP:
        del profile.trait_history[: len(profile.trait_history) - HISTORY_CAP]


def apply_event(profile: Profile, event: Event) -> None:
    """Update counts, first/last seen and traits (``identify``; ``group`` into ``group_traits``)."""
    ts = event.timestamp_ms
    profile.first_seen_ms = ts if profile.first_seen_ms is None else min(profile.first_seen_ms, ts)
    profile.last_seen_ms = ts if profile.last_seen_ms is None else max(profile.last_seen_ms, ts)
    key = event_key(event)
    profile.event_counts[key] = profile.event_counts.get(key, 0) + 1
    if not event.traits:
        return
    version = (ts, event.message_id)
    if event.type == "identify":
        changed = _set_traits(profile.traits, profile.trait_versions, event.traits, version)
        _record_history(profile, changed, event)
    elif event.type == "group" and event.group_id:
        group = profile.group_traits.setdefault(event.group_id, {})
        for key, value in event.traits.items():
            vkey = f"group:{event.group_id}:{key}"
            current = profile.trait_versions.get(vkey)
            if current is None or version > current:
                profile.trait_versions[vkey] = version
                group[key] = value


def merge_into(survivor: Profile, absorbed: Profile) -> None:
    """Combine ``absorbed`` into ``survivor`` (rule state and memberships are the caller's).

    Traits by event time, counters summed, identities unioned (earliest first-seen), histories
    interleaved by time, scores and clusters kept from the survivor when both have them.
    """
    for key, version in absorbed.trait_versions.items():
        current = survivor.trait_versions.get(key)
        if current is None or version > current:
            survivor.trait_versions[key] = version
            if not key.startswith("group:"):
                survivor.traits[key] = absorbed.traits.get(key)
    for gid, traits in absorbed.group_traits.items():
        _merge_group(survivor, gid, traits, absorbed)
    for name, count in absorbed.event_counts.items():
        survivor.event_counts[name] = survivor.event_counts.get(name, 0) + count
    for entry in absorbed.identities:
        survivor.add_identity(entry.type, entry.value, entry.first_seen_ms)
    history = sorted(
        [*survivor.trait_history, *absorbed.trait_history], key=lambda c: (c.at_ms, c.message_id)
    )
    survivor.trait_history = history[-HISTORY_CAP:]
    survivor.first_seen_ms = _pick(min, survivor.first_seen_ms, absorbed.first_seen_ms)
    survivor.last_seen_ms = _pick(max, survivor.last_seen_ms, absorbed.last_seen_ms)
    survivor.scores = {**absorbed.scores, **survivor.scores}
    survivor.clusters = {**absorbed.clusters, **survivor.clusters}
    survivor.cluster_ids = {**absorbed.cluster_ids, **survivor.cluster_ids}
    survivor.merge_count += 1 + absorbed.merge_count
    survivor.absorbed = [*survivor.absorbed, absorbed.profile_id, *absorbed.absorbed]
    survivor.excluded = sorted({*survivor.excluded, *absorbed.excluded})


def _merge_group(survivor: Profile, gid: str, traits: dict[str, Any], absorbed: Profile) -> None:
    group = survivor.group_traits.setdefault(gid, {})
    for key, value in traits.items():
        vkey = f"group:{gid}:{key}"
        theirs = absorbed.trait_versions.get(vkey)
        if key not in group or (
            theirs is not None and theirs >= survivor.trait_versions.get(vkey, theirs)
        ):
            group[key] = value


def _pick(fn: Any, a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return int(fn(a, b))

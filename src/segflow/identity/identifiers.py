"""Identifiers: what an event says about who sent it.

An identifier is a ``(type, value)`` pair. Types: ``user_id``, ``anonymous_id``, ``email``
(from ``traits.email`` or ``context.traits.email``, trimmed and lower-cased), ``group_id``
(when ``link_group_id`` is on) and the external ids declared in the rules.

>>> from segflow.spec import Event
>>> e = Event(type="identify", message_id="m", source_id="s", timestamp_ms=1, received_at_ms=1,
...           user_id="u1", anonymous_id="a1", traits={"email": " Ann@Example.COM "})
>>> [str(i) for i in extract_identifiers(e, IdentityRules())]
['user_id:u1', 'email:ann@example.com', 'anonymous_id:a1']
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from segflow.identity.rules import BUILTIN_TYPES, IdentityRules, blocked_set
from segflow.spec.events import Event


class Identifier(NamedTuple):
    """One identifier; ``str()`` gives the ``type:value`` key used by indexes and the API."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, key: str) -> Identifier:
        """Inverse of ``str()``: ``Identifier.parse("email:a@b.c") == Identifier("email", "a@b.c")``."""
        id_type, sep, value = key.partition(":")
        if not sep:
            raise ValueError(f"not a type:value identifier: {key!r}")
        return cls(id_type, value)


def normalise(id_type: str, value: Any) -> str | None:
    """The canonical text of a value: strings trimmed, emails lower-cased; None when unusable.

    >>> normalise("email", " A@B.C "), normalise("user_id", 42), normalise("user_id", {})
    ('a@b.c', '42', None)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    text: str = value.strip()
    return text.lower() if id_type == "email" else text


def _dotted(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _email(event: Event) -> Any:
    email = event.traits.get("email") if event.traits else None
    if email is None:
        ctx_traits = event.context.get("traits") if event.context else None
        if isinstance(ctx_traits, dict):
            email = ctx_traits.get("email")
    return email


def _external(event: Event, rules: IdentityRules) -> list[tuple[str, Any]]:
    root = {"context": event.context, "traits": event.traits, "properties": event.properties}
    return [(x.type, _dotted(root, x.path)) for x in rules.external_ids if x.path]


def _listed(listed: Any, types: frozenset[str]) -> list[tuple[str, Any]]:
    """Segment's ``context.externalIds`` (``[{id, type}]``), for the types in ``types``."""
    if not isinstance(listed, list):
        return []
    return [
        (item["type"], item.get("id"))
        for item in listed
        if isinstance(item, dict) and item.get("type") in types
    ]


def extract_identifiers(event: Event, rules: IdentityRules) -> list[Identifier]:
    """The usable identifiers of ``event``, strongest first (rules' priority), blocked ones dropped.

    ``alias`` links ``previous_id`` to ``user_id``: ``previous_id`` is read as an ``anonymous_id``
    unless it is already known as a ``user_id`` (the resolver decides that; here it is typed
    ``anonymous_id``).
    """
    return extractor(rules)(event)


def extractor(rules: IdentityRules) -> Extractor:
    """The :class:`Extractor` of ``rules`` (built once per rules object)."""
    found = _EXTRACTORS.get(id(rules))
    if found is None or found.rules is not rules:
        if len(_EXTRACTORS) > 16:
            _EXTRACTORS.clear()
        found = _EXTRACTORS[id(rules)] = Extractor(rules)
    return found


_EXTRACTORS: dict[int, Extractor] = {}


class Extractor:
    """:func:`extract_identifiers` with the rules' blocked values and ranks worked out once
    (it runs for every event the processor reads).

    >>> from segflow.spec import Event
    >>> e = Event(type="track", message_id="m", source_id="s", timestamp_ms=1, received_at_ms=1,
    ...           user_id=" u1 ", anonymous_id="null", context={"traits": {"email": "A@b.c"}})
    >>> [str(i) for i in Extractor(IdentityRules())(e)]
    ['user_id:u1', 'email:a@b.c']
    """

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self.blocked = blocked_set(rules.blocked_values)
        ranks = _ranks(rules.priority_order)
        types = rules.id_types()
        self.ranks = {t: ranks[t] if t in ranks else rules.priority(t) for t in types}
        # user_id, email, anonymous_id come in that order: no sort when the ranks agree
        self.in_order = self.ranks["user_id"] <= self.ranks["email"] <= self.ranks["anonymous_id"]
        self.extras = any(x.path for x in rules.external_ids) or rules.link_group_id
        self.listed = frozenset(rules.id_types()[len(BUILTIN_TYPES) :])

    def _rank(self, ident: Identifier) -> int:
        rank = self.ranks.get(ident.type)
        return self.rules.priority(ident.type) if rank is None else rank

    def __call__(self, event: Event) -> list[Identifier]:
        return self.keyed(event)[0]

    def keyed(self, event: Event) -> tuple[list[Identifier], list[str]]:
        """The identifiers of ``event`` (as calling the extractor) and their keys, ``str()``
        of each (``type:value``, what the owner index is keyed by).

        >>> from segflow.spec import Event
        >>> e = Event(type="track", message_id="m", source_id="s", timestamp_ms=1,
        ...           received_at_ms=1, user_id="u1", anonymous_id="a1")
        >>> Extractor(IdentityRules()).keyed(e)[1]
        ['user_id:u1', 'anonymous_id:a1']
        """
        context = event.context
        if self.extras or event.type == "alias" or (context and "externalIds" in context):
            found = self._general(event)
            return found, [f"{t}:{v}" for t, v in found]
        # the usual event: user_id, email, anonymous_id only; three distinct types, so no
        # duplicate to drop (the general path gives the same list: test_attribute_all.py)
        blocked = self.blocked
        found, keys = [], []
        value: Any = event.user_id
        if value is not None:
            text = value.strip() if type(value) is str else normalise("user_id", value)
            if text is not None and text.lower() not in blocked:
                found.append(_ident(Identifier, ("user_id", text)))
                keys.append("user_id:" + text)
        traits = event.traits
        value = traits.get("email") if traits else None
        if value is None and context:
            ctx_traits = context.get("traits")
            if isinstance(ctx_traits, dict):
                value = ctx_traits.get("email")
        if value is not None:
            text = value.strip().lower() if type(value) is str else normalise("email", value)
            if text is not None and text not in blocked:
                found.append(_ident(Identifier, ("email", text)))
                keys.append("email:" + text)
        value = event.anonymous_id
        if value is not None:
            text = value.strip() if type(value) is str else normalise("anonymous_id", value)
            if text is not None and text.lower() not in blocked:
                found.append(_ident(Identifier, ("anonymous_id", text)))
                keys.append("anonymous_id:" + text)
        if len(found) > 1 and not self.in_order:
            found.sort(key=self._rank)
            keys = [f"{t}:{v}" for t, v in found]
        return found, keys

    def _general(self, event: Event) -> list[Identifier]:
        raw: list[tuple[str, Any]] = [
            ("user_id", event.user_id),
            ("email", _email(event)),
            ("anonymous_id", event.anonymous_id),
        ]
        if event.type == "alias":
            raw.append(("anonymous_id", event.previous_id))
        if self.extras:
            if self.rules.link_group_id and event.group_id is not None:
                raw.append(("group_id", event.group_id))
            if self.rules.external_ids:
                raw.extend(_external(event, self.rules))
        if self.listed and event.context and "externalIds" in event.context:
            raw.extend(_listed(event.context["externalIds"], self.listed))
        blocked = self.blocked
        found: list[Identifier] = []
        for id_type, value in raw:
            if value is None:
                continue
            if type(value) is str:  # the usual case, normalise() inlined
                text = value.strip()
                if id_type == "email":
                    text = text.lower()
            else:
                text = normalise(id_type, value)  # type: ignore[assignment]
                if text is None:
                    continue
            if text.lower() in blocked:
                continue
            ident = Identifier(id_type, text)
            if ident not in found:
                found.append(ident)
        if len(found) > 1 and (self.extras or not self.in_order or len(raw) > 3):
            found.sort(key=self._rank)
        return found


_ident = tuple.__new__  # Identifier(t, v) without its Python-level __new__ (the hot path)


@functools.lru_cache(maxsize=16)
def _ranks(order: tuple[str, ...]) -> dict[str, int]:
    return {t: i for i, t in enumerate(order)}

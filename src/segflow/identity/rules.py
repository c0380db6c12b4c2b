"""Merge rules: per-type limits (optionally windowed), priorities, caps and blocked values.

Defaults follow Segment's identity resolution: one ``user_id`` per profile, five of every other
type, priority ``user_id > email > external ids > anonymous_id``.

>>> rules = IdentityRules()
>>> rules.limit_for("user_id").max_values
1
>>> rules.priority("user_id") < rules.priority("anonymous_id")
True
>>> rules.is_blocked("email", "  NULL ")
True
"""

from __future__ import annotations

import functools

import msgspec

from segflow.identity.exceptions import IdentityConfigError

BUILTIN_TYPES = ("user_id", "email", "anonymous_id", "group_id")
DEFAULT_BLOCKED = ("", "null", "none", "undefined", "0", "anonymous", "nan", "unknown", "n/a")
# the vendor ids the webhook sources (segflow.collect.webhooks) put in ``context.externalIds``
VENDOR_ID_TYPES = (
    "stripe_customer_id",
    "zendesk_user_id",
    "hubspot_contact_id",
    "salesforce_contact_id",
    "salesforce_lead_id",
    "mailchimp_member_id",
)


class TypeLimit(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``max_values`` values of one type per profile (within ``window_ms`` when set).

    A windowed limit counts only the values linked in the trailing window (e.g. 5 per week).
    """

    max_values: int
    window_ms: int | None = None


class ExternalId(msgspec.Struct, frozen=True, kw_only=True):
    """A custom identifier read from the event: ``path`` is dotted (``context.device.id``).

    ``context.externalIds`` (Segment's list of ``{id, type}``) is read for every declared type.
    """

    type: str
    path: str | None = None


class IdentityRules(msgspec.Struct, frozen=True, kw_only=True):
    """All identity settings (the ``[identity]`` section of the settings)."""

    limits: dict[str, TypeLimit] = msgspec.field(
        default_factory=lambda: {"user_id": TypeLimit(max_values=1)}
    )
    default_limit: int = 5
    priority_order: tuple[str, ...] = ("user_id", "email", "anonymous_id")
    blocked_values: tuple[str, ...] = DEFAULT_BLOCKED
    external_ids: tuple[ExternalId, ...] = ()
    # types read from ``context.externalIds`` with no declaration (the webhook sources' ids)
    listed_id_types: tuple[str, ...] = VENDOR_ID_TYPES
    link_group_id: bool = False
    max_identifiers: int = 100
    max_merges: int = 50

    def __post_init__(self) -> None:
        for name, limit in self.limits.items():
            if limit.max_values < 1:
                raise IdentityConfigError(f"limits.{name}.max_values", "must be >= 1")
            if limit.window_ms is not None and limit.window_ms <= 0:
                raise IdentityConfigError(f"limits.{name}.window_ms", "must be > 0")
        if self.max_identifiers < 1 or self.max_merges < 0:
            raise IdentityConfigError("max_identifiers", "caps must be positive")

    def limit_for(self, id_type: str) -> TypeLimit:
        """The limit of ``id_type`` (``default_limit`` values, unwindowed, when not configured)."""
        return self.limits.get(id_type) or TypeLimit(max_values=self.default_limit)

    def priority(self, id_type: str) -> int:
        """Rank of ``id_type``: lower is stronger; unlisted types rank after listed ones
        except ``anonymous_id``, which is always weakest unless listed explicitly."""
        try:
            return self.priority_order.index(id_type)
        except ValueError:
            return len(self.priority_order) + (1 if id_type == "anonymous_id" else 0)

    def is_blocked(self, id_type: str, value: str) -> bool:
        """Blocked values never link anything (compared trimmed and lower-cased)."""
        return value.strip().lower() in blocked_set(self.blocked_values)

    def id_types(self) -> tuple[str, ...]:
        """Every identifier type these rules know."""
        declared = tuple(x.type for x in self.external_ids)
        listed = tuple(t for t in self.listed_id_types if t not in declared)
        return (*BUILTIN_TYPES, *declared, *listed)


@functools.lru_cache(maxsize=16)
def blocked_set(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values)

"""Namespaces and key layouts of the processor's state (sortable text keys).

=========  ==========================================  ==================================
ns         key                                         value
=========  ==========================================  ==================================
profile    ``{profile_id}``                            msgpack :class:`~segflow.profiles.Profile`
owner      ``{type}:{value}``                          profile id (utf-8)
alias      ``{absorbed_profile_id}``                   surviving profile id (utf-8)
timeline   ``{profile_id}|{ts:016x}|{part:04x}|{off:016x}``  empty (points into the log)
timer      ``{due_ms:016x}|{profile_id}``              empty
member     ``{segment}|{profile_id}``                  empty (segment -> members index)
merge      ``{profile_id}|{seq:016x}``                 msgpack :class:`MergeRecord`
conflict   ``{profile_id}|{seq:016x}``                 msgpack :class:`ConflictRecord`
outbox     ``{seq:016x}``                              msgpack row of changes (:mod:`~segflow.stream.outbox`)
dead       ``{part:04x}|{off:016x}``                   reason (utf-8)
dropped    ``{part:04x}|{off:016x}``                   empty (a suppressed event to erase from the log)
seen       ``{part:04x}|{bucket:012x}|{digest}``       first ``received_at_ms`` (:mod:`~segflow.stream.dedupe`)
meta       ``outbox_seq`` / ``record_seq``             decimal text
=========  ==========================================  ==================================

>>> timeline_key("p1", 5, 0, 9)
'p1|0000000000000005|0000|0000000000000009'
>>> parse_timeline_key(timeline_key("p1", 5, 0, 9))
('p1', 5, 0, 9)
"""

from __future__ import annotations

import msgspec

PROFILE = "profile"
OWNER = "owner"
ALIAS = "alias"
TIMELINE = "timeline"
TIMER = "timer"
MEMBER = "member"
MERGE = "merge"
CONFLICT = "conflict"
OUTBOX = "outbox"
DEAD = "dead"
DROPPED = "dropped"
SEEN = "seen"
META = "meta"


def timeline_key(profile_id: str, ts_ms: int, partition: int, offset: int) -> str:
    return f"{profile_id}|{max(ts_ms, 0):016x}|{partition:04x}|{offset:016x}"


def parse_timeline_key(key: str) -> tuple[str, int, int, int]:
    pid, ts, part, off = key.rsplit("|", 3)
    return pid, int(ts, 16), int(part, 16), int(off, 16)


def timer_key(due_ms: int, profile_id: str) -> str:
    return f"{max(due_ms, 0):016x}|{profile_id}"


def seq_key(seq: int) -> str:
    return f"{seq:016x}"


class MergeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Why two profiles are one: the event and identifier that linked them and the rule."""

    survivor: str
    absorbed: str
    identifier: str
    rule: str
    message_id: str
    partition: int
    offset: int
    at_ms: int
    absorbed_identities: list[str] = []


class ConflictRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A link the merge rules refused: ``identifier`` stayed with ``owner``."""

    profile_id: str
    identifier: str
    owner: str | None
    rule: str
    message_id: str
    at_ms: int

"""Random identifiers for the hot path that never give up the interpreter lock.

``secrets.token_hex`` and ``uuid.uuid4`` read ``os.urandom``, a system call that releases the
GIL. In a served process whose other threads (log writer, processor, loader) are CPU bound,
taking the GIL back costs up to a switch interval (5 ms): profiled under ``/v1/batch`` load,
``secrets.token_hex`` for the request id was 40% of the event loop's samples. These ids come
from a Mersenne Twister seeded from ``os.urandom`` once per process (and again in a forked
child, so parent and child never share a sequence): unique, not unguessable. Use ``secrets``
for anything that must stay secret (write keys, tokens).

>>> len(random_hex(64)), random_hex(64) != random_hex(64)
(16, True)
>>> u = uuid4()
>>> (u.version, u != uuid4())
(4, True)
"""

from __future__ import annotations

import os
import random
import uuid

_rng = random.Random()


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def random_hex(bits: int) -> str:
    """``bits`` random bits (a multiple of 4) as lower-case hex, zero-padded."""
    return f"{_rng.getrandbits(bits):0{bits // 4}x}"


def uuid4() -> uuid.UUID:
    """A version-4 UUID (RFC 4122 layout) from the process-local generator."""
    return uuid.UUID(int=_rng.getrandbits(128), version=4)

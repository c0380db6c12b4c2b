"""Hot-path ids: unique, well-formed, and never shared between a process and its fork."""

from __future__ import annotations

import os
import uuid

import pytest

from segflow.spec import ids
from segflow.spec.normalize import new_message_id


def test_random_hex_is_zero_padded_to_its_width_and_does_not_repeat() -> None:
    values = {ids.random_hex(64) for _ in range(10_000)}
    assert len(values) == 10_000
    assert all(len(v) == 16 and int(v, 16) >= 0 for v in values)


def test_uuid4_has_the_rfc_4122_version_and_variant() -> None:
    u = ids.uuid4()
    assert (u.version, u.variant) == (4, uuid.RFC_4122)
    assert uuid.UUID(str(u)) == u


def test_generated_message_ids_are_uuid4s() -> None:
    generated = new_message_id()
    assert generated.startswith("segflow-")
    assert uuid.UUID(generated.removeprefix("segflow-")).version == 4


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_draws_a_different_sequence_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next ids, then leave at once
        os.write(write, " ".join(ids.random_hex(64) for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    mine = [ids.random_hex(64) for _ in range(3)]
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode().split()
    assert len(theirs) == 3 and not set(theirs) & set(mine)

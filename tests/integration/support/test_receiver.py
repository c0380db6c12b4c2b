"""The tests' webhook receiver (tests/support/receivers.py) on a real loopback port: it records
each request and answers with the status and after the delay the test set."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.support.receivers import Receiver
from tests.support.wait import until


def test_it_records_each_request_and_answers_the_status_set_while_it_runs(
    receiver_factory: Callable[..., Receiver],
) -> None:
    hook = receiver_factory()
    assert httpx.post(hook.url, content=b"one", headers={"X-Id": "1"}).status_code == 200
    hook.status = 503
    assert httpx.post(hook.url, content=b"two").status_code == 503
    assert [(r.body, r.status) for r in hook.requests] == [(b"one", 200), (b"two", 503)]
    assert hook.requests[0].headers["x-id"] == "1"  # header names lower-cased
    assert hook.bodies == [b"one"]  # only what it accepted


def test_a_delayed_answer_holds_the_request_until_the_receiver_closes(
    receiver_factory: Callable[..., Receiver],
) -> None:
    hook = receiver_factory(delay_s=60.0)
    with pytest.raises(httpx.ReadTimeout):  # a hanging receiver, as segflow sees one
        httpx.post(hook.url, content=b"held", timeout=0.5)
    hook.close()  # ends the delay: the request is recorded with what it would have answered
    assert until(lambda: hook.requests)[0].body == b"held"


def test_a_behaviour_decides_per_request(receiver_factory: Callable[..., Receiver]) -> None:
    hook = receiver_factory(lambda n, headers, body: (500 if n == 0 else 201, {"x-n": str(n)}, 0))
    first, second = httpx.post(hook.url), httpx.post(hook.url)
    assert (first.status_code, first.headers["x-n"]) == (500, "0")
    assert (second.status_code, second.headers["x-n"]) == (201, "1")
    assert len(hook.ok()) == 1

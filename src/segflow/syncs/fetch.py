"""Pages of one object from a vendor's API, through dlt's ``RESTClient``.

dlt earns its place here: its paginators follow each vendor's documented pagination, and its
retrying session retries 429 and 5xx answers and connection errors, waiting what
``Retry-After`` says (else an exponential backoff). What it does not do here is keep the
cursor: dlt's pipeline state is committed with *its* destination's load, and segflow commits a
cursor only after the events are durable in *its* log (``segflow.syncs.runner``).

An answer that retrying will not fix (401, 403, 404, a 4xx) raises :class:`VendorError`; one
that stayed 429/5xx through every attempt, or no answer, raises ``TransientError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from segflow.errors import TransientError
from segflow.syncs.auth import Credential, requests_auth
from segflow.syncs.exceptions import DltMissing, VendorError
from segflow.syncs.vendors import ObjectSpec, Record, Vendor


@dataclass(frozen=True)
class Retries:
    """How the session retries: attempts, the backoff factor (s) and the longest wait (s)."""

    attempts: int = 5
    backoff_s: float = 1.0
    max_delay_s: float = 300.0


def _dlt() -> Any:
    try:
        from dlt.sources.helpers import rest_client
        from dlt.sources.helpers.requests import retry
    except ImportError as exc:
        raise DltMissing(exc) from exc
    return rest_client, retry


@contextlib.contextmanager
def client(
    base_url: str,
    credential: str | Credential,
    retries: Retries = Retries(),
    *,
    vendor: str = "",
    on_refresh: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """A dlt ``RESTClient`` on ``base_url`` that signs its requests with ``credential`` (a
    string: a bearer token; else ``segflow.syncs.auth``: Zendesk API tokens, Salesforce's
    refresh flow, whose new tokens go to ``on_refresh``); its connections are closed when the
    block ends."""
    rest_client, retry = _dlt()
    session = retry.Client(
        raise_for_status=False,
        request_max_attempts=retries.attempts,
        request_backoff_factor=retries.backoff_s,
        request_max_retry_delay=retries.max_delay_s,
    ).session
    if isinstance(credential, str):
        credential = Credential(token=credential)
    auth = requests_auth(vendor, base_url, credential, session, on_refresh)
    try:
        yield rest_client.RESTClient(base_url=base_url, auth=auth, session=session)
    finally:
        session.close()


def _checked_and_decoded_once(response: Any, *args: Any, **kwargs: Any) -> None:
    """A response hook: an error status raises ``HTTPError`` (as dlt's default hook does), and
    the body is decoded once, with msgspec, for dlt's data selector and the paginator alike
    (each calls ``response.json()``: two parses a page otherwise, ~10% of a sync's time)."""
    response.raise_for_status()
    body = msgspec.json.decode(response.content)
    response.json = lambda **_: body


@contextlib.contextmanager
def _answers(vendor: Vendor, what: str) -> Iterator[None]:
    """Map ``requests``' and msgspec's errors to segflow's (see the module docstring)."""
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        if exc.response is not None:
            exc.response.close()
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and (status == 429 or status >= 500):
            raise TransientError(
                f"{vendor.name} {what}: HTTP {status} after every retry",
                details={"vendor": vendor.name, "status": status},
            ) from exc
        text = exc.response.text[:300] if exc.response is not None else str(exc)
        raise VendorError(vendor.name, status, f"{what}: HTTP {status}: {text}") from exc
    except msgspec.DecodeError as exc:
        raise VendorError(vendor.name, 200, f"{what}: the answer is not JSON: {exc}") from exc
    except requests.RequestException as exc:
        raise TransientError(
            f"{vendor.name} {what}: {exc}", details={"vendor": vendor.name}
        ) from exc


def pages(
    api: Any, vendor: Vendor, spec: ObjectSpec, cursor: str | None
) -> Iterator[tuple[list[Record], Any]]:
    """``(objects, page)`` per page of ``spec`` changed since ``cursor`` (``page``: dlt's
    ``PageData``, with the ``response`` and the ``paginator`` after it)."""
    first = spec.request(cursor)
    with _answers(vendor, spec.name):
        for page in api.paginate(
            first.path,
            method=first.method,
            params=first.params,
            json=first.json,
            paginator=spec.paginator(),
            data_selector=spec.records,
            hooks={"response": [_checked_and_decoded_once]},
        ):
            yield list(page), page


ASSOCIATIONS_BATCH = 1000  # HubSpot's v4 batch read takes at most 1,000 inputs


def associations(
    api: Any, vendor: Vendor, spec: ObjectSpec, records: list[Record]
) -> dict[str, list[str]]:
    """The ids of the ``spec.associated`` objects of each of ``records``, by the record's id
    (HubSpot's v4 associations API, ``POST /crm/v4/associations/{from}/{to}/batch/read``; the
    first page of each object's associations, up to 500).

    The answer's shape: ``{"results": [{"from": {"id": "77"}, "to": [{"toObjectId": 51}]}]}``.
    """
    if spec.associated is None or not records:
        return {}
    path = f"/crm/v4/associations/{spec.name}/{spec.associated}/batch/read"
    found: dict[str, list[str]] = {}
    ids = [spec.id_of(r) for r in records if r.get("id") is not None]
    for start in range(0, len(ids), ASSOCIATIONS_BATCH):
        inputs = [{"id": i} for i in ids[start : start + ASSOCIATIONS_BATCH]]
        with _answers(vendor, f"{spec.name} associations"):
            answer = api.post(
                path, json={"inputs": inputs}, hooks={"response": [_checked_and_decoded_once]}
            )
            for result in answer.json().get("results") or ():
                to = [str(t["toObjectId"]) for t in result.get("to") or () if "toObjectId" in t]
                if to:
                    found.setdefault(str(result["from"]["id"]), []).extend(to)
    return found

"""segflow as a dlt destination: any dlt pipeline a team already has can load into segflow's
log, through the same :class:`~segflow.collect.ingest.Ingestor` as every other message.

Each row becomes one message of the source named in :func:`segflow_destination`:

- a row that is already a spec message (``type`` is track/identify/page/screen/group/alias)
  goes in as it is;
- otherwise a row of a table listed in ``identify`` becomes an identify call (the row as its
  traits), and any other row a track event named after its table (the row as its properties).
  ``userId`` comes from the ``user_id`` column, else ``anonymousId`` is ``dlt:<table>:<row>``.

The ``messageId`` of a row without one is a hash of its table and content, so loading the same
rows again stores nothing twice (within the log's dedupe window). dlt marks a batch loaded only
when the function returns, and it returns once the batch is durable in the log; refused rows
are dead letters, as they are at ``/v1/batch``.

Example (``pip install 'segflow[sources]'``)::

    import dlt
    from segflow.serving.runtime import Runtime
    from segflow.config import load_settings
    from segflow.syncs.destination import segflow_destination

    runtime = Runtime.open(load_settings(overrides={"server": {"data_dir": "./segflow-data"}}))
    pipeline = dlt.pipeline("crm", destination=segflow_destination(runtime.ingestor, "crm"))
    pipeline.run([{"user_id": "u1", "plan": "pro"}], table_name="accounts")
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec

from segflow.collect.ingest import Ingestor
from segflow.syncs.exceptions import DltMissing

_CALLS = frozenset({"track", "identify", "page", "screen", "group", "alias"})


def row_message(
    table: str, row: Mapping[str, Any], *, identify: Collection[str] = (), user_id: str = "user_id"
) -> dict[str, Any]:
    """The spec message of one row (see the module docstring).

    >>> m = row_message("orders", {"user_id": "u1", "total": 5})
    >>> m["type"], m["event"], m["userId"], m["properties"]["total"], m["messageId"][:4]
    ('track', 'orders', 'u1', 5, 'dlt-')
    >>> row_message("people", {"email": "a@b.c"}, identify={"people"})["traits"]
    {'email': 'a@b.c'}
    """
    values = {k: v for k, v in row.items() if not k.startswith("_dlt")}
    digest = hashlib.blake2b(
        msgspec.json.encode([table, values], order="sorted"), digest_size=16
    ).hexdigest()
    if values.get("type") in _CALLS:
        return {"messageId": f"dlt-{digest}", **values}
    message: dict[str, Any] = {"messageId": f"dlt-{digest}"}
    who = values.get(user_id)
    if who not in (None, ""):
        message["userId"] = str(who)
    else:
        message["anonymousId"] = f"dlt:{table}:{digest[:16]}"
    if table in identify:
        message.update(type="identify", traits=values)
    else:
        message.update(type="track", event=table, properties=values)
    return message


def segflow_destination(
    ingestor: Ingestor,
    source: str,
    *,
    identify: Sequence[str] = (),
    user_id: str = "user_id",
    batch_size: int = 1000,
) -> Any:
    """A dlt destination that appends rows to ``ingestor``'s log as source ``source``'s
    messages (raises :class:`DltMissing` without dlt)."""
    try:
        import dlt
    except ImportError as exc:
        raise DltMissing(exc) from exc
    target = ingestor.source(source)  # UnknownSource before any row is read
    tables = frozenset(identify)

    def load(items: Any, table: Any) -> None:
        name = table["name"]
        messages = [row_message(name, row, identify=tables, user_id=user_id) for row in items]
        ingestor.ingest(target, messages, received_at_ms=time.time_ns() // 1_000_000)

    factory = dlt.destination(
        load, name="segflow", batch_size=batch_size, loader_file_format="typed-jsonl"
    )
    return factory()

"""Child process for the crash test: loads the log into the warehouse in small batches forever,
with the file kept open (``kept``) or held between batches as a started loader does (``held``:
checkpointed only at ``HELD_CHECKPOINT_THRESHOLD``)."""

from __future__ import annotations

import sys

from segflow.clock import WallClock
from segflow.config import WarehouseSettings
from segflow.log.sqlite import SqliteEventLog
from segflow.warehouse.loader import WarehouseLoader

log = SqliteEventLog(sys.argv[1], partitions=4)
loader = WarehouseLoader(
    log,
    None,
    sys.argv[2],
    WallClock(),
    WarehouseSettings(batch_max_events=400, release_between_batches=sys.argv[3] == "held"),
)
if sys.argv[3] == "held":
    loader.watch_release_requests()
while True:
    info = loader.run_once()
    print(info.events_loaded, flush=True)

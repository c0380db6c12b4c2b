"""Child process for the crash test: loads the log into the warehouse in small batches forever."""

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
    WarehouseSettings(batch_max_events=400, release_between_batches=False),
)
while True:
    info = loader.run_once()
    print(info.events_loaded, flush=True)

"""The stream processor: log -> identity -> profile state -> rules -> changes outbox.

>>> from segflow.stream import Processor, MemoryStateStore, NullEvaluator
"""

from segflow.rules.incremental.executor import ProfileView
from segflow.stream.evaluator import EvalResult, Evaluation, NullEvaluator, SegmentEvaluator
from segflow.stream.keys import ConflictRecord, MergeRecord
from segflow.stream.outbox import StateChangeFeed
from segflow.stream.processor import Processor, ProcessorSettings
from segflow.stream.reader import ProfileReader, TimelinePage
from segflow.stream.state import MemoryStateStore, RocksStateStore, SqliteStateStore, StateStore

__all__ = [
    "ConflictRecord",
    "EvalResult",
    "Evaluation",
    "MemoryStateStore",
    "MergeRecord",
    "NullEvaluator",
    "Processor",
    "ProcessorSettings",
    "ProfileReader",
    "ProfileView",
    "RocksStateStore",
    "SegmentEvaluator",
    "SqliteStateStore",
    "StateChangeFeed",
    "StateStore",
    "TimelinePage",
]

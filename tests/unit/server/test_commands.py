"""The command queue between the admin API and the process that owns the processor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.errors import NotFoundError, TransientError, ValidationError
from segflow.server.commands import (
    CommandFailed,
    CommandQueue,
    CommandRunner,
    QueuedSink,
    QueuedSplitter,
    handlers,
)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[CommandQueue]:
    q = CommandQueue(tmp_path / "commands.sqlite")
    yield q
    q.close()


class FakeProcessor:
    def __init__(self) -> None:
        self.scores: list[tuple[str, list[tuple[str, float]], int]] = []
        self.clusters: list[tuple[str, list[tuple[str, str, int]], int]] = []

    def put_scores(self, model: str, values: list[tuple[str, float]], at_ms: int) -> None:
        self.scores.append((model, values, at_ms))

    def put_clusters(self, model: str, values: list[tuple[str, str, int]], at_ms: int) -> None:
        self.clusters.append((model, values, at_ms))


def test_queued_scores_and_clusters_reach_the_owning_processor_in_order(
    queue: CommandQueue,
) -> None:
    processor = FakeProcessor()
    sink = QueuedSink(queue)
    sink.put_scores("churn", [("p1", 0.25), ("p2", 0.75)], 10)
    sink.put_clusters("segments", [("p1", "big spenders", 3)], 11)
    assert CommandRunner(queue, handlers(processor)).run_pending() == 2  # type: ignore[arg-type]
    assert processor.scores == [("churn", [("p1", 0.25), ("p2", 0.75)], 10)]
    assert processor.clusters == [("segments", [("p1", "big spenders", 3)], 11)]
    assert queue.claim() is None  # each command runs once


def test_a_queued_live_model_reaches_the_owning_processor(
    queue: CommandQueue, tmp_path: Path
) -> None:
    from segflow.clock import ManualClock
    from segflow.stream import MemoryStateStore, Processor

    class NoLog:
        partitions = 1

    processor = Processor(NoLog(), MemoryStateStore(), clock=ManualClock(0))  # type: ignore[arg-type]
    export = {"model": "segs", "kind": "kmeans", "run_id": "r", "features": {"n": "count(any event)"},
              "log1p": [True], "mean": [0.0], "scale": [1.0], "centroids": [[0.0], [2.0]],
              "cluster_ids": [4, 7], "names": {"4": "Quiet", "7": "Busy"}}  # fmt: skip
    QueuedSink(queue).put_live_model(export)
    assert CommandRunner(queue, handlers(processor)).run_pending() == 1
    assert processor.live.models()["segs"].names == {4: "Quiet", 7: "Busy"}


def test_a_large_score_set_is_queued_in_chunks(queue: CommandQueue) -> None:
    QueuedSink(queue).put_scores("churn", [(f"p{n}", 0.5) for n in range(12_001)], 1)
    sizes = []
    while (command := queue.claim()) is not None:
        sizes.append(len(command.args["values"]))
    assert sizes == [5000, 5000, 2001]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ValidationError("identifiers", "name some"), ValidationError),
        (NotFoundError("no profile p9"), NotFoundError),
        (RuntimeError("boom"), CommandFailed),
    ],
)
def test_a_failed_command_raises_its_error_again_for_the_caller(
    queue: CommandQueue, raised: Exception, expected: type[Exception]
) -> None:
    def split(args: dict[str, Any]) -> Any:
        raise raised

    ident = queue.submit("split", {"profile_id": "p1", "identifiers": ["email:a@b.c"]})
    CommandRunner(queue, {"split": split}).run_pending()
    with pytest.raises(expected) as caught:
        queue.wait(ident, timeout_s=5)
    if isinstance(raised, ValidationError):
        assert isinstance(caught.value, ValidationError) and caught.value.field == "identifiers"


def test_a_split_nobody_runs_times_out_and_is_cancelled(queue: CommandQueue) -> None:
    with pytest.raises(TransientError) as caught:
        QueuedSplitter(queue, timeout_s=0.1).split("p1", ["email:a@b.c"])
    assert caught.value.details["state"] == "queued"
    assert queue.claim() is None  # a pipeline started later does not run it


def test_finished_commands_are_purged_and_queued_ones_kept(queue: CommandQueue) -> None:
    done = queue.submit("split", {"profile_id": "p1", "identifiers": []})
    claimed = queue.claim()
    assert claimed is not None and claimed.id == done
    queue.finish(done, {"ok": True})
    waiting = queue.submit("split", {"profile_id": "p2", "identifiers": []})
    queue.purge(older_than_ms=2**62)
    with pytest.raises(TransientError):  # gone: read as cancelled
        queue.wait(done, timeout_s=0)
    claimed = queue.claim()
    assert claimed is not None and claimed.id == waiting

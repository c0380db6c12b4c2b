"""The scaled-out layout on one machine: 2 collectors, 3 processors and a loader as separate
``segflow serve --role ...`` processes on the Kafka driver (a real Tansu broker), real HTTP
traffic whose identity merges cross partitions, one processor SIGKILLed mid-stream. At the end
the profiles and memberships equal those of the embedded single-process run over the same
events, and every event is counted exactly once."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import httpx
import pytest
from tests.support.kafka import Broker, kafka_broker
from tests.support.net import free_port
from tests.support.state import consumed, consumed_shared
from tests.support.wait import until

from segflow.clock import ManualClock
from segflow.log.base import partition_for
from segflow.log.sqlite import SqliteEventLog
from segflow.profiles import decode_profile
from segflow.rules import compile_segments
from segflow.stream import Processor, SqliteStateStore
from segflow.stream.state.base import StateReader, iter_scan

__all__ = ["kafka_broker"]
pytestmark = pytest.mark.slow

PARTITIONS = 6
PEOPLE = 80
EVENTS = 3000
SEGMENTS = {
    "buyers": 'did "Order Completed" at least 2 times',
    "pro": 'trait plan = "pro"',
    "browsers": 'count("Viewed") >= 3',
}
Summary = dict[frozenset[str], tuple[tuple[str, ...], tuple[tuple[str, Any], ...], int]]


def generate(n: int, t0_ms: int, seed: int = 11) -> list[dict[str, Any]]:
    """Segment messages: anonymous browsing on two devices per person, logins linking a device
    to the user id and email, orders by user id, support tickets linked by email only. The keys
    (anonymousId, userId) of one person fall on different partitions, so merges cross them.
    No person reaches a merge-rule limit (3 anonymous ids, 1 user id, 1 email), so the
    profiles do not depend on the order the partitions are interleaved in."""
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        p = rnd.randrange(PEOPLE)
        msg: dict[str, Any] = {
            "messageId": f"mp-{i:06d}",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((t0_ms + i * 1000) / 1000))
            + "Z",
        }
        roll = rnd.random()
        if roll < 0.55:
            msg |= {"type": "track", "anonymousId": f"dev-{p}-{rnd.randrange(2)}",
                    "event": rnd.choice(["Viewed", "Added"])}  # fmt: skip
        elif roll < 0.75:
            msg |= {"type": "identify", "anonymousId": f"dev-{p}-{rnd.randrange(2)}",
                    "userId": f"user-{p}",
                    "traits": {"email": f"p{p}@example.com", "plan": rnd.choice(["free", "pro"])}}  # fmt: skip
        elif roll < 0.92:
            msg |= {"type": "track", "userId": f"user-{p}", "event": "Order Completed",
                    "properties": {"revenue": rnd.randrange(100)}}  # fmt: skip
        else:
            msg |= {"type": "track", "anonymousId": f"desk-{p}", "event": "Support Ticket Created",
                    "context": {"traits": {"email": f"p{p}@example.com"}}}  # fmt: skip
        out.append(msg)
    return out


def summary(state: Path) -> Summary:
    """Per profile (by its identifiers) of a ``state.sqlite``: see :func:`summarise`."""
    store = SqliteStateStore(state)
    reader = store.reader()
    try:
        return summarise(reader)
    finally:
        reader.close()
        store.close()


def summarise(reader: StateReader) -> Summary:
    """Per profile (by its identifiers): memberships, traits, events counted."""
    out: Summary = {}
    for _, raw in iter_scan(reader, "profile", "", "\U0010ffff"):
        p = decode_profile(raw)
        key = frozenset(p.identity_keys())
        traits = tuple(sorted((k, repr(v)) for k, v in p.traits.items()))
        out[key] = (tuple(sorted(p.members)), traits, sum(p.event_counts.values()))
    return out


def last_assignment(log: str) -> set[int]:
    """The partitions a processor's last ``owns partitions (...)`` line names."""
    found = re.findall(r"owns partitions \(([\d, ]*)\)", log)
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()


def warehouse_events(path: Path) -> int:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:  # the loader holds the file
        return -1
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
    except duckdb.Error:
        return -1
    finally:
        con.close()


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class Cluster:
    """The segflow processes of the test, each with its own log file."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, tuple[str, int | None, Path | None]] = {}  # role, port, data
        self.files: list[BinaryIO] = []

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "segflow.cli.main", *args, "--data-dir", str(self.data)],
            env=self.env, check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    def start(
        self, name: str, role: str, port: int | None = None, data: Path | None = None
    ) -> None:
        """``segflow serve --role role`` on ``data`` (default: the cluster's one data dir)."""
        self.started[name] = (role, port, data)
        where = str(data or self.data)
        args = ["serve", "--role", role, "--data-dir", where, "--log-level", "info"]
        if port is not None:
            args += ["--port", str(port)]
        log = (self.data.parent / f"{name}.log").open("wb")
        self.files.append(log)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "segflow.cli.main", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log_of(self, name: str) -> str:
        return (self.data.parent / f"{name}.log").read_text(errors="replace")

    def wait_healthy(self, name: str, port: int, deadline_s: float = 180) -> int:
        """Wait until the process ``name`` answers ``/health`` on ``port`` and return the port it
        listens on. When it exits because another socket took the port meanwhile (a free port
        is only free when it is picked), it is started again on a new one; when it exits for
        another reason, or the deadline passes, the test fails with its log."""
        for _ in range(3):
            proc = self.procs[name]

            def answered(proc: subprocess.Popen[bytes] = proc, port: int = port) -> bool:
                return proc.poll() is not None or healthy(port)

            try:
                until(answered, deadline_s, f"{name} on {port}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; its log:\n{self.log_of(name)[-4000:]}") from None
            if proc.poll() is None:
                return port
            log = self.log_of(name)
            if "already in use" not in log:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log[-4000:]}")
            role, _, data = self.started[name]
            port = free_port()
            self.start(name, role, port, data)
        raise AssertionError(f"{name} found no free port in 3 tries")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.files:
            log.close()


@pytest.fixture
def cluster(tmp_path: Path, kafka_broker: Broker) -> Iterator[Cluster]:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "SEGFLOW_LOG__DRIVER": "kafka",
        "SEGFLOW_LOG__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SEGFLOW_LOG__TOPIC": f"mp-{uuid.uuid4().hex[:8]}",
        # a consumer group per test: the broker outlives the tests, and a group whose members
        # were killed in an earlier test would first have to expire them
        "SEGFLOW_STREAM__GROUP": f"processor-{uuid.uuid4().hex[:8]}",
        "SEGFLOW_LOG__PARTITIONS": str(PARTITIONS),
        "SEGFLOW_LOG__SESSION_TIMEOUT_MS": "6000",
        "SEGFLOW_STREAM__BATCH_SIZE": "50",
        "SEGFLOW_STREAM__POLL_INTERVAL_MS": "50",
        "SEGFLOW_WAREHOUSE__FLUSH_INTERVAL_MS": "200",
        "SEGFLOW_ML__SCHEDULE_ENABLED": "false",
    }
    found = Cluster(data, env)
    yield found
    found.stop()


@pytest.mark.long  # ~25 s: several processes and a rebalance (make test-long, CI)
def test_two_collectors_three_processors_a_loader_and_a_sigkill(cluster: Cluster) -> None:
    write_key = cluster.cli("sources", "create", "web")
    for name, rule in SEGMENTS.items():
        cluster.cli("segments", "create", name, rule)
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        cluster.start(f"collector{i}", "collect", port)
    for i in range(3):
        cluster.start(f"processor{i}", "process")
    cluster.start("loader", "load")

    ports = [cluster.wait_healthy(f"collector{i}", port) for i, port in enumerate(ports)]
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{p}", auth=(write_key, ""), timeout=60)
        for p in ports
    ]
    t0_ms = (int(time.time()) - 86_400) * 1000
    messages = generate(EVENTS, t0_ms)
    batches = [messages[i : i + 50] for i in range(0, EVENTS, 50)]
    state = cluster.data / "state.sqlite"
    victim = "processor1"
    try:
        for n, batch in enumerate(batches):
            answer = clients[n % 2].post("/v1/batch", json={"batch": batch})
            assert answer.status_code == 200 and answer.json()["success"], answer.text
            if n == len(batches) // 2:
                until(lambda: "owns partitions (" in cluster.log_of(victim)
                      and consumed(state) > 0, 180, "the victim owns partitions")  # fmt: skip
                cluster.procs[victim].send_signal(signal.SIGKILL)
                cluster.procs[victim].wait(10)
    finally:
        for c in clients:
            c.close()

    until(lambda: consumed(state) >= EVENTS, 240, f"processors consumed {EVENTS} events")
    until(
        lambda: warehouse_events(cluster.data / "warehouse.duckdb") == EVENTS,
        60,
        "the loader loaded every event",
    )

    def survivors_own() -> set[int]:
        return last_assignment(cluster.log_of("processor0")) | last_assignment(
            cluster.log_of("processor2")
        )

    # the survivors took the victim's share: the rebalance may still be finishing when the last
    # events are consumed (a survivor that already read its partitions to the end has nothing
    # to wait for), so its outcome is awaited, not sampled
    until(lambda: survivors_own() == set(range(PARTITIONS)), 60, "the survivors own all partitions")
    cluster.stop()
    assert consumed(state) == EVENTS
    assert last_assignment(cluster.log_of(victim))  # it owned partitions before it was killed

    embedded = replay_embedded(cluster)
    distributed = summary(state)
    assert sum(c for _, _, c in distributed.values()) == EVENTS  # each event counted once
    assert distributed == embedded
    merged = [k for k in distributed if len(k) >= 3]
    assert len(merged) > PEOPLE // 2  # merges happened (crossing partitions: checked below)
    crossing = [
        k for k in merged
        if len({partition_for(i.split(":", 1)[1], PARTITIONS) for i in k
                if i.startswith(("user_id:", "anonymous_id:"))}) > 1
    ]  # fmt: skip
    assert len(crossing) > PEOPLE // 2
    assert {m for ms, _, _ in distributed.values() for m in ms} == set(SEGMENTS)


def replay_embedded(cluster: Cluster) -> Summary:
    """The same stored events through the embedded single-process driver."""
    from segflow.config import load_settings
    from segflow.log.drivers import open_key_table
    from segflow.log.kafka import KafkaEventLog
    from segflow.log.reservations import ReservationStore
    from segflow.log.shredding import Shredder

    env = cluster.env
    root = cluster.data.parent / "embedded"
    root.mkdir()
    settings = load_settings(env=env, overrides={"server": {"data_dir": str(cluster.data)}})
    kafka = KafkaEventLog(
        env["SEGFLOW_LOG__BOOTSTRAP_SERVERS"],
        dedupe=ReservationStore(root / "unused.sqlite", window_ms=1),
        topic=env["SEGFLOW_LOG__TOPIC"],
        shredder=Shredder(open_key_table(settings)),  # the records are sealed
    )
    log = SqliteEventLog(root / "log.sqlite", partitions=PARTITIONS)
    try:
        for p in range(PARTITIONS):
            records = kafka.read(p, 0, 100_000)
            assert [r.offset for r in records] == list(range(len(records)))
            log.append([r.event for r in records])
        store = SqliteStateStore(root / "state.sqlite", synchronous="OFF")
        program = compile_segments(SEGMENTS)
        proc = Processor(log, store, evaluator=program, clock=ManualClock(int(time.time() * 1000)))
        while proc.run_once() > 0:
            pass
        store.close()
    finally:
        log.close()
        kafka.close()
    return summary(root / "state.sqlite")


@pytest.mark.long  # ~25 s: two "hosts" of processes on Kafka + PostgreSQL (make test-long, CI)
def test_processors_on_two_hosts_share_their_state_in_postgres(
    cluster: Cluster, postgres_dsn: str
) -> None:
    """Two "hosts" (data directories that share no file), each running a collector and a
    processor, the loader on the second; the catalog, the collectors' dedupe reservations and
    the processors' state are in one PostgreSQL database (``shared.dsn``). The first host's processor is SIGKILLed mid-stream: the second takes its
    partitions over from the state it left in the database, and the profiles at the end equal
    the embedded single-process run's."""
    schema = f"mp_{uuid.uuid4().hex[:8]}"
    cluster.env |= {"SEGFLOW_SHARED__DSN": postgres_dsn, "SEGFLOW_SHARED__SCHEMA": schema}
    write_key = cluster.cli("sources", "create", "web")
    for name, rule in SEGMENTS.items():
        cluster.cli("segments", "create", name, rule)
    hosts = [cluster.data.parent / "host-a", cluster.data.parent / "host-b"]
    ports = [free_port(), free_port()]
    for i, (host, port) in enumerate(zip(hosts, ports, strict=True)):
        cluster.start(f"collector{i}", "collect", port, data=host)
        cluster.start(f"processor{i}", "process", data=host)
    cluster.start("loader", "load", data=hosts[1])
    ports = [cluster.wait_healthy(f"collector{i}", port) for i, port in enumerate(ports)]
    messages = generate(EVENTS, (int(time.time()) - 86_400) * 1000, seed=5)
    batches = [messages[i : i + 50] for i in range(0, EVENTS, 50)]
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{p}", auth=(write_key, ""), timeout=60)
        for p in ports
    ]
    try:
        for n, batch in enumerate(batches):
            answer = clients[n % 2].post("/v1/batch", json={"batch": batch})
            assert answer.status_code == 200 and answer.json()["success"], answer.text
            if n == len(batches) // 2:
                until(lambda: "owns partitions (" in cluster.log_of("processor0")
                      and consumed_shared(postgres_dsn, schema) > 0, 180,
                      "the first host's processor owns partitions")  # fmt: skip
                cluster.procs["processor0"].send_signal(signal.SIGKILL)
                cluster.procs["processor0"].wait(10)
    finally:
        for c in clients:
            c.close()
    until(lambda: consumed_shared(postgres_dsn, schema) >= EVENTS, 240, f"consumed {EVENTS} events")
    until(
        lambda: warehouse_events(hosts[1] / "warehouse.duckdb") == EVENTS,
        60,
        "the loader loaded every event",
    )
    until(lambda: last_assignment(cluster.log_of("processor1")) == set(range(PARTITIONS)), 60,
          "the second host's processor owns every partition")  # fmt: skip
    cluster.stop()
    assert consumed_shared(postgres_dsn, schema) == EVENTS
    for host in hosts:  # what the hosts share is in the database, not in their files
        assert not {"state.sqlite", "catalog.sqlite", "dedupe.sqlite"} & {
            p.name for p in host.iterdir()
        }

    from segflow.stream.state.postgres import postgres_reader

    reader = postgres_reader(postgres_dsn, schema)
    try:
        distributed = summarise(reader)
    finally:
        reader.close()
    assert sum(c for _, _, c in distributed.values()) == EVENTS  # each event counted once
    assert distributed == replay_embedded(cluster)
    assert len([k for k in distributed if len(k) >= 3]) > PEOPLE // 2  # merges happened
    assert {m for ms, _, _ in distributed.values() for m in ms} == set(SEGMENTS)

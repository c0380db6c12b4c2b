"""Which serve processes freeze the processor's survivors out of the garbage collector's walks
(segflow.stream.garbage, docs/engine.md): only one that serves no HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from segflow.config import load_settings
from segflow.server.compose import assemble
from segflow.serving.runtime import Runtime


@pytest.mark.parametrize(
    ("roles", "frozen"),
    [(["process", "load"], True), (["process"], True), (["collect", "api"], False), ([], False)],
)
def test_only_a_process_without_http_freezes(
    tmp_path: Path, roles: list[str], frozen: bool
) -> None:
    settings = load_settings(overrides={"server": {"data_dir": str(tmp_path), "roles": roles}})
    runtime = Runtime.open(settings)
    try:
        parts = assemble(runtime)
        try:
            assert parts.processor.gc_policy.freeze is frozen
        finally:
            parts.services[0].stop()  # the stores' closer
    finally:
        runtime.close()

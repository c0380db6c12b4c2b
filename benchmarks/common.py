"""Shared helpers of the collection benchmarks: medians, machine, markdown rows."""

from __future__ import annotations

import platform
import statistics
import subprocess
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in out.splitlines()
                if line.startswith("Model name")
            ),
            "?",
        )
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or "?"
    import os

    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"

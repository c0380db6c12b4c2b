"""The compiled rule kernel: the incremental executor in C++ (built by ``setup.py`` with Cython).

``AVAILABLE`` says whether the extension was built and may be used (``SEGFLOW_KERNEL=0`` turns
it off at run time). Without it segflow runs :mod:`segflow.rules.incremental.program`, the
pure-Python evaluator, which gives the same answers.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("segflow.rules.incremental.kernel._kernel")
    except ImportError:  # not built: no compiler at install time, or SEGFLOW_NO_KERNEL=1
        return None


_kernel = _load()
AVAILABLE = _kernel is not None and os.environ.get("SEGFLOW_KERNEL", "1") != "0"

__all__ = ["AVAILABLE"]

"""Builds segflow's optional compiled extension: the rule kernel (C++ through Cython).

Everything else is declared in pyproject.toml. Where no C++ compiler is available, or
``SEGFLOW_NO_KERNEL=1`` is set, the extension is skipped with a warning and segflow runs its
pure-Python evaluator, which gives the same answers (docs/engine.md).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL = "segflow.rules.incremental.kernel._kernel"
SOURCES = ["src/segflow/rules/incremental/kernel/_kernel.pyx"]
HEADERS = ["src/segflow/rules/incremental/kernel/kernel.hpp"]


class OptionalBuildExt(build_ext):
    """A failed compile is a warning, not a failed install (the kernel is an accelerator)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure falls back to Python
            _warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            _warn(exc)


def _warn(exc: BaseException) -> None:
    print(
        f"WARNING: segflow's rule kernel was not built ({exc}); "
        "segflow will use its pure-Python evaluator (same answers, slower)",
        file=sys.stderr,
    )


def _extensions() -> list[Extension]:
    if os.environ.get("SEGFLOW_NO_KERNEL") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _warn(exc)
        return []
    ext = Extension(
        KERNEL,
        SOURCES,
        language="c++",
        depends=HEADERS,
        extra_compile_args=["-O3", "-std=c++17", "-fvisibility=hidden"],
    )
    return cythonize([ext], language_level=3, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})

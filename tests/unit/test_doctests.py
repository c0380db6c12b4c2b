"""Every docstring example in ``src/segflow`` runs, one test per module (they are documentation
that must stay true)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import segflow

MODULES = [
    *sorted(
        m.name for m in pkgutil.walk_packages(segflow.__path__, prefix="segflow.") if not m.ispkg
    ),
    "segflow",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {name}"

"""One BLAS/OpenMP thread per test: on a shared 2-core machine, OpenMP's spinning threads in
scikit-learn's gradient boosting slow tiny fits down a hundredfold when the cores are busy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(1):
        yield

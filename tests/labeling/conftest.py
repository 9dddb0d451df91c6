"""One torch thread per labelling test (shared CI cores; two threads per process oversubscribe them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hashguard.testing import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield

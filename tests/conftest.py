"""Suite-wide: the order in which ``make test``'s two workers take the test files.

``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``: each file runs
whole on one worker (its module fixtures are built once), and a worker that finishes a
file takes the next one in collection order. Longest first keeps the two workers
finishing together instead of one starting the 3-minute demo build while the other idles:
the longest files lead (measured), then every file with a ``slow`` test, then the rest,
each group in the usual order. A run without workers keeps the usual order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the long poles of make test, longest first (a real demo build, a browser and a server,
# SIGKILL trials with a subprocess each, Ray clusters)
_FIRST = (
    "serving/test_demo.py",
    "serving/test_http_explain.py",
    "indexing/test_crash_kill.py",
    "indexing/test_distributed_build.py",
    "serving/test_sharded_search.py",
)
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> tuple[int, int]:
        try:
            name = item.path.resolve().relative_to(_TESTS).as_posix()
        except ValueError:
            name = ""
        if name in _FIRST:
            return 0, _FIRST.index(name)
        return (1 if item.path in slow_files else 2), 0

    items.sort(key=rank)  # stable: each group keeps the collection order

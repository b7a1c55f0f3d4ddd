"""Small helpers shared by the search stages (the searcher and the prefetcher)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mvr.errors import ConfigError

__all__ = ["tick", "check_k"]


def tick(timings: dict[str, float], name: str, t0: float) -> float:
    """Add the seconds since ``t0`` to ``timings[name]``; returns now."""
    t1 = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + t1 - t0
    return t1


def check_k(k: Any, name: str) -> None:
    """Refuse anything but an int >= 1 (bools included) with a ConfigError naming ``name``."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"{name}: expected an int >= 1, got {k!r}")

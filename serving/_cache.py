"""A byte-budgeted, thread-safe cache of decoded re-ranking records (CLOCK eviction).

The SSD token store keeps only what this cache holds resident: every entry is
one document's decoded token array, charged at its ``nbytes``. CLOCK (second
chance) approximates LRU without reordering on hits, so a hit is one dict
lookup and one flag write under the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

import numpy as np

from mvr.errors import ConfigError

__all__ = ["ClockCache"]


class ClockCache:
    """Map keys (document rows) to arrays under a byte budget.

    Parameters
    ----------
    capacity_bytes : int
        Budget; ``0`` disables caching (every ``get`` misses, ``put`` drops).
        An array larger than the budget is never admitted.

    Notes
    -----
    Eviction is CLOCK: entries sit in a ring with a reference bit set on every
    hit; the hand clears set bits and evicts the first entry whose bit is
    clear. All methods are safe to call from several threads.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ConfigError(f"cache_bytes: expected >= 0, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self._lock = threading.Lock()
        self._slots: dict[Hashable, int] = {}
        self._ring_keys: list[Any] = []
        self._ring_vals: list[np.ndarray | None] = []
        self._ring_ref: list[bool] = []
        self._free: list[int] = []
        self._hand = 0
        self._used = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.insertions = 0

    # ------------------------------------------------------------------ lookups
    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached array for ``key`` (marking it recently used), or None."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                self.misses += 1
                return None
            self._ring_ref[slot] = True
            self.hits += 1
            return self._ring_vals[slot]

    def peek(self, key: Hashable) -> np.ndarray | None:
        """Like :meth:`get` but without touching counters or reference bits."""
        with self._lock:
            slot = self._slots.get(key)
            return None if slot is None else self._ring_vals[slot]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._slots

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    @property
    def used_bytes(self) -> int:
        return self._used

    # ------------------------------------------------------------------ updates
    def put(self, key: Hashable, value: np.ndarray) -> bool:
        """Insert ``value`` (evicting as needed); returns whether it was admitted."""
        size = int(value.nbytes)
        if size > self.capacity_bytes:
            return False
        with self._lock:
            if key in self._slots:
                slot = self._slots[key]
                self._ring_ref[slot] = True
                return True
            while self._used + size > self.capacity_bytes:
                self._evict_one()
            slot = self._free.pop() if self._free else self._append_slot()
            self._ring_keys[slot] = key
            self._ring_vals[slot] = value
            self._ring_ref[slot] = False
            self._slots[key] = slot
            self._used += size
            self.insertions += 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self._ring_keys.clear()
            self._ring_vals.clear()
            self._ring_ref.clear()
            self._free.clear()
            self._hand = 0
            self._used = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "policy": "clock",
                "capacity_bytes": self.capacity_bytes,
                "used_bytes": self._used,
                "entries": len(self._slots),
                "hits": self.hits,
                "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else 0.0,
                "insertions": self.insertions,
                "evictions": self.evictions,
            }

    # ------------------------------------------------------------------ internals
    def _append_slot(self) -> int:
        self._ring_keys.append(None)
        self._ring_vals.append(None)
        self._ring_ref.append(False)
        return len(self._ring_keys) - 1

    def _evict_one(self) -> None:
        """Advance the hand to the first unreferenced entry and drop it (lock held)."""
        n = len(self._ring_keys)
        while True:
            if self._hand >= n:
                self._hand = 0
            slot = self._hand
            self._hand += 1
            value = self._ring_vals[slot]
            if value is None:
                continue
            if self._ring_ref[slot]:
                self._ring_ref[slot] = False
                continue
            del self._slots[self._ring_keys[slot]]
            self._ring_keys[slot] = None
            self._ring_vals[slot] = None
            self._free.append(slot)
            self._used -= int(value.nbytes)
            self.evictions += 1
            return

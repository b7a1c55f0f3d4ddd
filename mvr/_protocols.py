"""The interfaces the stages plug into. Backends are passed in as objects.

* :class:`Encoder` (implemented in ``encoders/``): text -> token vectors.
* :class:`FirstStage` (``indexing/`` builds, ``serving/`` queries): MIPS over FDEs.
* :class:`TokenStore` (``serving/``): the re-ranking table, doc index -> token vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mvr._multivectors import MultiVectors

__all__ = ["Encoder", "FirstStage", "TokenStore", "SearchResults"]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised token vectors."""

    @property
    def dim(self) -> int: ...

    @property
    def identity(self) -> dict[str, Any]:
        """Stable identity: ``{"name": ..., "config": {...}, "weights_sha256": ...}``.

        An index records it; a searcher refuses to encode queries with an encoder
        whose identity differs."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> MultiVectors: ...

    def encode_documents(self, texts: Sequence[str]) -> MultiVectors: ...


@runtime_checkable
class FirstStage(Protocol):
    """Maximum-inner-product search over document FDEs (row i = internal doc i)."""

    @property
    def ntotal(self) -> int: ...

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` rows per query.

        Parameters
        ----------
        queries : np.ndarray
            Shape: (n_queries, fde_dim), float32.
        n : int
            Candidates per query (clipped to the number of rows).
        allowed : np.ndarray, optional
            Shape: (ntotal,), bool; False rows (tombstones) are never returned.

        Returns
        -------
        scores, rows : np.ndarray
            Shape: (n_queries, n'), float32 descending, and int64 rows; -1 pads.
        """
        ...


@runtime_checkable
class TokenStore(Protocol):
    """The re-ranking table: internal document rows -> pooled token vectors."""

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """Shape: (len(rows),) int64 token counts."""
        ...

    def get(self, rows: np.ndarray) -> MultiVectors:
        """Token vectors of ``rows`` (shape (m,), int64), in that order, float16 or float32."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SearchResults:
    """Per-query ranked results.

    ``ids[q]`` are document ids, best first; ``scores[q]`` (float32, same length)
    their scores (exact MaxSim after re-ranking, FDE inner product otherwise).
    """

    ids: list[list[str]]
    scores: list[np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

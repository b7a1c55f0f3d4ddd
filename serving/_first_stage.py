"""Exact first stage (blocked GEMM over the FDEs) and the merge over segments.

Both implement :class:`mvr.FirstStage`: ``search(queries, n, allowed=None)`` returns
``(scores, rows)`` of shape (n_queries, n'), scores descending, ties broken by the
lower row (so results are deterministic), ``-1`` rows (and ``-inf`` scores) pad.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvr.errors import DimensionMismatchError

__all__ = ["ExactFirstStage", "SegmentedFirstStage", "top_n", "merge_top_n"]


def top_n(scores: np.ndarray, n: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``n`` per row of ``scores`` (shape (q, m)), descending, ties by lower row id.

    ``rows`` (shape (q, m) or (m,)) maps columns to row ids (default: column index).
    -inf entries are returned as row -1.
    """
    q, m = scores.shape
    if rows is None:
        rows = np.broadcast_to(np.arange(m, dtype=np.int64), (q, m))
    elif rows.ndim == 1:
        rows = np.broadcast_to(rows, (q, m))
    n = min(n, m)
    if n == 0:
        return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
    if n < m:
        # keep every column tied with the n-th score so the tie-break stays exact
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        out_s = np.empty((q, n), np.float32)
        out_r = np.empty((q, n), np.int64)
        for i in range(q):
            cols = np.flatnonzero(scores[i] >= kth[i])
            order = np.lexsort((rows[i, cols], -scores[i, cols]))[:n]
            out_s[i] = scores[i, cols[order]]
            out_r[i] = rows[i, cols[order]]
    else:
        order = _lexsort_rows(scores, rows)
        out_s = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
        out_r = np.take_along_axis(rows, order, axis=1).astype(np.int64, copy=False)
    out_r = np.where(np.isneginf(out_s), -1, out_r)
    return out_s, out_r


def _lexsort_rows(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.stack([np.lexsort((rows[i], -scores[i])) for i in range(scores.shape[0])])


def merge_top_n(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-part ``(scores, rows)`` (each (q, n_i)) into the global top ``n``."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
    return top_n(scores, n, rows)


class ExactFirstStage:
    """Exact maximum inner product over an in-memory FDE matrix, in row blocks.

    Parameters
    ----------
    fdes : np.ndarray
        Shape: (n_docs, fde_dim), float32.
    block_rows : int
        Rows per GEMM block (bounds the (n_queries, block_rows) score buffer).
    """

    kind = "exact"

    def __init__(self, fdes: np.ndarray, *, block_rows: int = 32768) -> None:
        self.fdes = np.ascontiguousarray(fdes, dtype=np.float32)
        self.block_rows = block_rows

    @property
    def ntotal(self) -> int:
        return int(self.fdes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.fdes.shape[1])

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries, self.dim)
        parts = []
        for lo in range(0, max(self.ntotal, 1), self.block_rows):
            block = self.fdes[lo : lo + self.block_rows]
            scores = queries @ block.T
            if allowed is not None:
                scores[:, ~allowed[lo : lo + block.shape[0]]] = -np.inf
            s, r = top_n(scores, n)
            parts.append((s, np.where(r >= 0, r + lo, -1)))
        if len(parts) == 1:
            return parts[0]
        return merge_top_n(parts, n)


def _check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise DimensionMismatchError(
            f"query FDEs: expected shape (n_queries, {dim}), got {queries.shape}"
        )
    return queries


class SegmentedFirstStage:
    """One first stage per block of consecutive rows (a segment or merged exact segments);
    results are merged by score. Global rows are ``base + local row``."""

    def __init__(self, parts: list[tuple[int, Any]], ntotal: int) -> None:
        self.parts = parts
        self._ntotal = ntotal

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def kinds(self) -> list[str]:
        return [p.kind for _, p in self.parts]

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        results = []
        for base, stage in self.parts:
            sub = None if allowed is None else allowed[base : base + stage.ntotal]
            s, r = stage.search(queries, n, allowed=sub)
            results.append((s, np.where(r >= 0, r + base, -1)))
        if len(results) == 1:
            return results[0]
        return merge_top_n(results, n)

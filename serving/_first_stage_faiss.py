"""faiss first stages (HNSW, IVF-PQ) loaded from a segment's ``first_stage.faiss``.

Tombstones are honoured inside faiss with an ``IDSelectorBitmap`` of the allowed
rows, so a search still returns ``n`` live candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mvr._index_config import FirstStageConfig
from serving._first_stage import _check_queries

__all__ = ["FaissFirstStage"]


class FaissFirstStage:
    """A faiss index over one segment's FDEs (inner product).

    Parameters
    ----------
    path : Path
        The saved index (``faiss.write_index``).
    kind : {"faiss", "flat", "hnsw", "ivfpq"}
        ``faiss``: built from ``config.factory``; its IVF (if any) is probed
        ``ivf_nprobe`` lists, its HNSW (if any) searched with ``hnsw_ef_search``.
        ``flat``: exact.
    config : FirstStageConfig
        Search parameters (``hnsw_ef_search``, ``ivf_nprobe``).
    """

    def __init__(self, path: Path, kind: str, config: FirstStageConfig) -> None:
        import faiss

        from indexing._first_stage_build import ivf_params

        from mvr.errors import CorruptIndexError

        self._faiss = faiss
        self.kind = kind
        try:
            self.index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise CorruptIndexError(f"first stage {path}: faiss cannot read it ({e})") from e
        self.config = config
        self._size = int(Path(path).stat().st_size)
        self._ivf = None
        if kind in ("ivfpq", "faiss"):
            try:
                self._ivf = faiss.extract_index_ivf(self.index)
            except RuntimeError:
                self._ivf = None
        self._hnsw = kind == "hnsw" or (kind == "faiss" and hasattr(self.index, "hnsw"))
        self._no_params = (
            self._ivf is None and not self._hnsw and isinstance(self.index, faiss.IndexFastScan)
        )
        self.nprobe = 1
        if self._ivf is not None:
            self.nprobe = ivf_params(config, self.ntotal)[1]
            self.nprobe = min(max(self.nprobe, 1), int(self._ivf.nlist))

    def _search_overfetch(
        self, queries: np.ndarray, n: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` allowed rows: ask for ``n`` + the number of disallowed rows, drop those
        (exact: at most that many of the answers can be disallowed)."""
        dead = 0 if allowed is None else int((~allowed).sum())
        kk = min(self.ntotal, n + dead)
        scores, rows = self.index.search(queries, kk)
        rows = rows.astype(np.int64)
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        if dead:
            ok = (rows >= 0) & allowed[np.maximum(rows, 0)]
            order = np.argsort(~ok, axis=1, kind="stable")[:, :n]
            rows = np.where(np.take_along_axis(ok, order, 1), np.take_along_axis(rows, order, 1), -1)
            scores = np.where(rows >= 0, np.take_along_axis(scores, order, 1), -np.inf)
            return scores.astype(np.float32), rows
        return scores[:, :n], rows[:, :n]

    @property
    def nbytes(self) -> int:
        """RAM the index holds (its serialised size: codes, lists, centroids)."""
        return self._size

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def _params(
        self, n: int, allowed: np.ndarray | None, nprobe: int | None = None
    ) -> tuple[Any, Any]:
        faiss = self._faiss
        sel, keep = None, None
        if allowed is not None and not allowed.all():
            keep = np.packbits(allowed.astype(bool), bitorder="little")
            sel = faiss.IDSelectorBitmap(self.ntotal, faiss.swig_ptr(keep))
        params: Any
        if self._hnsw:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.config.hnsw_ef_search, n)
        elif self._ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe if nprobe is None else min(nprobe, int(self._ivf.nlist))
        elif sel is not None:
            params = faiss.SearchParameters()
        else:
            params = None  # fast-scan flat indexes take no parameters
        if sel is not None and params is not None:
            params.sel = sel
        return params, (sel, keep)

    def search(
        self, queries: np.ndarray, n: int, *, allowed: np.ndarray | None = None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries, self.dim)
        n = min(n, self.ntotal)
        if n == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self._no_params:  # a flat fast-scan index takes no parameters (no selector):
            return self._search_overfetch(queries, n, allowed)
        params, _alive = self._params(n, allowed, nprobe)
        if params is None:
            scores, rows = self.index.search(queries, n)
        else:
            scores, rows = self.index.search(queries, n, params=params)
        rows = rows.astype(np.int64)
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return scores, rows

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

__all__ = ["FaissFirstStage", "OVERFETCH"]

#: An index without a selector is first asked for this many times the answers that the
#: share of allowed rows predicts would hold ``n`` allowed ones.
OVERFETCH = 1.5


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
        """Top ``n`` allowed rows of an index that takes no selector: ask for more, drop the
        disallowed ones. ``n`` + the number of disallowed rows always suffices (at most
        that many answers can be disallowed), but asking a 700k-row index for 630k answers
        (a filter keeping 10%) costs 3-4x the search; so first ask for what the share of
        allowed rows predicts (``OVERFETCH`` times ``n / share``) and double that for the
        queries left with fewer than ``n`` allowed rows, up to the sure bound."""
        dead = 0 if allowed is None else int((~allowed).sum())
        cap = min(self.ntotal, n + dead)
        if not dead:
            scores, rows = self.index.search(queries, cap)
            rows = rows.astype(np.int64)
            return np.where(rows < 0, -np.inf, scores).astype(np.float32)[:, :n], rows[:, :n]
        assert allowed is not None
        alive = max(self.ntotal - dead, 1)
        kk = min(cap, int(np.ceil(OVERFETCH * n * self.ntotal / alive)) + 64)
        out_s = np.full((len(queries), n), -np.inf, dtype=np.float32)
        out_r = np.full((len(queries), n), -1, dtype=np.int64)
        todo = np.arange(len(queries))
        while todo.size:
            scores, rows = self.index.search(queries[todo], kk)
            rows = rows.astype(np.int64)
            ok = (rows >= 0) & allowed[np.maximum(rows, 0)]
            done = (ok.sum(axis=1) >= n) | (kk >= cap)
            order = np.argsort(~ok, axis=1, kind="stable")[:, :n]
            r = np.where(np.take_along_axis(ok, order, 1), np.take_along_axis(rows, order, 1), -1)
            sc = np.where(r >= 0, np.take_along_axis(scores, order, 1), -np.inf)
            w = min(n, r.shape[1])
            out_r[todo[done], :w] = r[done]
            out_s[todo[done], :w] = sc[done]
            todo = todo[~done]
            kk = min(cap, 2 * kk)
        return out_s, out_r

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

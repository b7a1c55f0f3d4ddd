"""Sharded search: K shards over disjoint runs of segments, merged into exactly the
single-process answer.

A :class:`ShardSearcher` opens one snapshot's segments ``[a, b)`` (its first stages,
centroid ids, centroid inverted lists built from its own ids, and token table) and
answers in *global* rows (``row + base``, the rows a :class:`~serving.Searcher` over
the whole index uses). :class:`ShardedSearcher` holds no index data: it encodes the
query once and runs the single-process search path as two fan-outs::

    1. every shard: first stage top-N; its top C from its centroid lists
       (``centroid_candidates``) with their list scores; the approximate MaxSim of both
       merge -> the global top-N (``merge_top_n``: score, then lower row) and the
          global top C of the lists (the same merge), their union, then its best
          ``rerank_candidates`` by approximate score (``top_n``), as the searcher
    2. each shard: exact MaxSim of its rows among them
       merge -> top-k (``top_n`` over the candidates in the same order)

Equal, not a superset: the first-stage score, the list score (per query token, the
best probed centroid among the row's tokens, probes chosen from the query and the
shared codec alone) and the approximate and exact MaxSim are each a function of the
query and one document, and every cut keeps the same total order (score, then lower
row; :func:`mvr._approx.centroid_candidates` cuts its lists that way too), so a row in
the global top C is in its shard's top C and the merge of the shards' cuts is the
single process's cut. The result equals ``Searcher.search`` on the whole index: ids,
and scores up to float rounding, at any settings, defaults included. A shard that
fails answers :class:`ShardUnavailableError` (503), or with ``partial_results=True`` the
others' merge, flagged ``partial`` with the missing shards listed. Transport-agnostic:
shards are objects with these methods, local here, Ray Serve handles in
:mod:`serving._ray_serve`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvr._approx import union_rows
from mvr._index_config import IndexConfig
from mvr._manifest import read_manifest
from mvr._multivectors import MultiVectors
from mvr._protocols import SearchResults
from mvr.errors import ConfigError, DocumentNotFoundError, MVRError
from serving._first_stage import merge_top_n, top_n
from serving._stages import check_k

__all__ = [
    "ShardUnavailableError", "ShardedResults", "ShardSearcher", "ShardedSearcher",
    "assign_shards", "open_local_shards",
]


class ShardUnavailableError(MVRError, RuntimeError):
    """A shard did not answer; nothing partial is presented as complete (HTTP 503)."""

    retry_after_s = 1

    def __init__(self, shards: list[int], reason: str) -> None:
        super().__init__(f"shard(s) {shards} unavailable ({reason}); retry, or ask "
                         "partial_results=true for the other shards' results")
        self.shards = shards


@dataclass(frozen=True)
class ShardedResults(SearchResults):
    """Search results, with ``partial`` set when shards were missing from the merge."""

    partial: bool = False
    missing_shards: list[int] = field(default_factory=list)


def assign_shards(manifest: dict[str, Any], k: int) -> list[tuple[int, int]]:
    """Split the manifest's segments into ``k`` runs ``[a, b)`` of consecutive segments,
    about equal in documents (each at least one segment)."""
    segs = manifest["segments"]
    if not isinstance(k, int) or k < 1 or k > len(segs):
        raise ConfigError(
            f"shards: expected 1 <= K <= {len(segs)} (the index's segments), got {k!r}; an "
            "index built with `mvr index --ray` has one segment per --segment-size documents"
        )
    docs = np.cumsum([s["documents"] for s in segs])
    cuts = [0]
    for i in range(1, k):
        target = docs[-1] * i / k
        cut = int(np.searchsorted(docs, target) + 1)
        cuts.append(min(max(cut, cuts[-1] + 1), len(segs) - (k - i)))
    cuts.append(len(segs))
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _sub_manifest(manifest: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    """The snapshot restricted to segments ``[a, b)`` (tombstones applied afterwards)."""
    segs = manifest["segments"][a:b]
    if not all(s.get("has_acodes") for s in manifest["segments"]):
        # as the single process (Searcher._load_codec): codes in every segment or none used,
        # so no shard scores with codes or builds token lists where another cannot
        segs = [{**s, "has_acodes": False} for s in segs]
    prefixes = tuple(f"segments/{s['name']}/" for s in segs)
    files = {k: v for k, v in manifest["files"].items()
             if k.startswith(prefixes) or k == manifest.get("codec")}
    return {**manifest, "segments": segs, "files": files, "tombstones": None}


class ShardSearcher:
    """Segments ``[a, b)`` of one index snapshot, answering in global rows."""

    def __init__(self, path: str | Path, manifest: dict[str, Any], span: tuple[int, int],
                 shard: int = 0, *, mode: str = "memory", **store_options: Any) -> None:
        from serving._searcher import Searcher

        a, b = span
        self.shard, self.span = shard, (a, b)
        self.base = int(sum(s["documents"] for s in manifest["segments"][:a]))
        self.searcher = Searcher._open_snapshot(
            Path(path), _sub_manifest(manifest, a, b), None, mode, None, store_options)
        self._apply_tombstones(Path(path), manifest)

    def _apply_tombstones(self, root: Path, manifest: dict[str, Any]) -> None:
        if manifest["tombstones"] is None:
            return
        from mvr._json_files import read_tombstones

        s = self.searcher
        docs = {seg["name"]: int(seg["documents"]) for seg in manifest["segments"]}
        dead = read_tombstones(root / manifest["tombstones"], docs)
        for i, seg in enumerate(s.manifest["segments"]):
            rows = np.asarray(dead.get(seg["name"], []), dtype=np.int64)
            s.allowed[s._seg_starts[i] + rows] = False
        s._id_to_row = {s.ids[r]: r for r in np.flatnonzero(s.allowed).tolist()}
        s._live_rows = np.flatnonzero(s.allowed)
        s._filter = None if s.allowed.all() else s.allowed

    # ------------------------------------------------------------------ the two phases
    def first(self, qf: np.ndarray, q: MultiVectors, n: int, approx: bool,
              centroid_n: int = 0, tree: Any = None) -> dict[str, Any]:
        """First-stage top ``n`` (global rows, -1 pads); with ``centroid_n``, this shard's
        top ``centroid_n`` rows from its centroid inverted lists and their list scores
        (``cand_rows``, ``cand_scores``: ties by the lower row, as the single process
        cuts); when ``approx``, the approximate MaxSim of all of them (-inf for pads).
        ``tree``: a parsed filter (checked by the ingress); only the rows it keeps."""
        s = self.searcher
        mask = s._filter
        if tree is not None:
            from serving._sharded_filtered import shard_mask

            keep = shard_mask(self, tree)
            mask = None if keep.all() else keep
        scores, rows = s.first_stage.search(qf, n, allowed=mask)
        out: dict[str, Any] = {"scores": scores, "rows": _to_global(rows, self.base),
                               "approx": None, "cand_rows": None, "cand_scores": None,
                               "cand_approx": None}
        if s._cids is None or s.codec is None or not (approx or centroid_n):
            return out
        from mvr._approx import query_centroid_similarities, scored_centroid_candidates

        st = query_centroid_similarities(q.vectors, s.codec.centroids)
        cand = None
        if centroid_n and s._tokens is not None:  # the ingress merges them (two fan-outs)
            from serving._sharded_tokens import shard_token_lists

            out["tok_lists"] = shard_token_lists(s, q, st, mask, self.base)
        elif centroid_n and s._lists is not None:
            cand, cs = scored_centroid_candidates(
                st, q.offsets, s._lists[0], s._lists[1], len(s.ids), centroid_n,
                s.config.centroid_nprobe, mask)
            out["cand_rows"], out["cand_scores"] = _to_global(cand, self.base), cs
        if approx:  # the searcher's own approximate MaxSim (approximate codes where present)
            prepared = s._prepare_pq(q, st)
            for key, r in (("approx", rows), ("cand_approx", cand)):
                if r is not None:
                    a = np.asarray(s._approx_scores(q, st, r, prepared), dtype=np.float32)
                    out[key] = np.where(r >= 0, a, -np.inf).astype(np.float32)
        return out

    def exact(self, q: MultiVectors, rows: np.ndarray) -> dict[str, Any]:
        """Exact MaxSim of each query against its global ``rows`` of this shard (shape
        (n_q, m), -1 pads): scores (-inf for pads) and the rows' ids."""
        s = self.searcher
        local = np.where(rows >= 0, rows - self.base, -1)
        valid = local >= 0
        flat = local[valid]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(valid.sum(axis=1), out=offsets[1:])
        scores = np.full(rows.shape, -np.inf, dtype=np.float32)
        if flat.size:
            scores[valid] = s._score(q, s._fetch(flat), offsets)
        return {"scores": scores, "ids": [s.ids[r] for r in flat.tolist()]}

    def approx_rows(self, q: MultiVectors, rows: np.ndarray) -> dict[str, Any]:
        """Approximate MaxSim of each query against its global ``rows`` of this shard
        (shape (n_q, m), -1 pads; other shards' rows -1 in the answer): ``rows``,
        ``approx`` (-inf for pads)."""
        from serving._sharded_tokens import shard_approx_rows

        return shard_approx_rows(self, q, rows)

    # filters and hybrid fusion: the shard's side of serving._sharded_filtered
    def count(self, tree: Any) -> int:
        from serving._sharded_filtered import shard_mask

        return int(shard_mask(self, tree).sum())

    def exact_all(self, q: MultiVectors, tree: Any, k: int) -> dict[str, Any]:
        from serving._sharded_filtered import shard_exact_all

        return shard_exact_all(self, q, tree, k)

    def approx_all(self, q: MultiVectors, tree: Any, n2: int) -> dict[str, Any]:
        from serving._sharded_filtered import shard_approx_all

        return shard_approx_all(self, q, tree, n2)

    def bm25(self, texts: list[str], tree: Any, depth: int, rows: np.ndarray) -> dict[str, Any]:
        from serving._sharded_filtered import shard_bm25

        return shard_bm25(self, texts, tree, depth, rows)

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the live ``ids`` this shard holds (what it scores)."""
        m = self.searcher._id_to_row
        held = [d for d in ids if d in m]
        got = self.searcher.store.get(np.asarray([m[d] for d in held], dtype=np.int64))
        return {d: np.asarray(got[i], dtype=np.float32) for i, d in enumerate(held)}

    def ids_of(self, rows: np.ndarray) -> list[str]:
        return [self.searcher.ids[int(r) - self.base] for r in rows]

    def rows_of(self, ids: list[str]) -> dict[str, int]:
        """Global rows of the live ``ids`` this shard holds."""
        m = self.searcher._id_to_row
        return {d: m[d] + self.base for d in ids if d in m}

    def texts(self, ids: list[str]) -> dict[str, str | None]:
        held = [d for d in ids if d in self.searcher._id_to_row]
        return dict(zip(held, self.searcher.get_texts(held), strict=True))

    def stats(self) -> dict[str, Any]:
        s = self.searcher
        return {"shard": self.shard, "segments": [g["name"] for g in s.manifest["segments"]],
                "documents": s.num_documents, "base_row": self.base,
                "first_stage": s.first_stage.kinds, "store": s.store.stats()
                if hasattr(s.store, "stats") else {}, "counters": dict(s._stats)}

    def close(self) -> None:
        self.searcher.close()


def _call(shards: list[Any], indices: list[int], method: str, args: list[tuple[Any, ...]],
          timeout_s: float) -> tuple[dict[int, Any], dict[int, str]]:
    """``shards[i].<method>(*args[j])`` for each i (concurrently when the shard gives
    ``submit``); returns answers and failures by shard."""
    pending = {}
    failed: dict[int, str] = {}
    for i, a in zip(indices, args, strict=True):
        try:
            if hasattr(shards[i], "submit"):
                pending[i] = shards[i].submit(method, *a)
            else:
                pending[i] = getattr(shards[i], method)(*a)
        except Exception as e:  # a shard's fault, reported per shard
            failed[i] = f"{type(e).__name__}: {e}"
    answers = {}
    for i, p in pending.items():
        try:
            answers[i] = shards[i].result(p, timeout_s) if hasattr(shards[i], "submit") else p
        except Exception as e:
            failed[i] = f"{type(e).__name__}: {e}"
    return answers, failed


class ShardedSearcher:
    """The ingress: the :class:`~serving.Searcher` API the HTTP app uses, over shards.

    Parameters
    ----------
    path : str or Path
        The index (its manifest: config, encoder, the snapshot the shards open).
    spans : list of (a, b)
        The segments of each shard (:func:`assign_shards`).
    shards : list
        One object per shard with :class:`ShardSearcher`'s methods (or ``submit`` /
        ``result`` to call them remotely).
    manifest : dict, optional
        The snapshot (default: read now); the shards must serve the same one.
    timeout_s : float
        How long a shard may take to answer before it counts as down.
    """

    supports_partial = True

    def __init__(self, path: str | Path, shards: list[Any], spans: list[tuple[int, int]], *,
                 manifest: dict | None = None, encoder: Any = None,
                 timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        segs = self.manifest["segments"]
        self._bases = np.asarray([sum(s["documents"] for s in segs[:a]) for a, _ in spans],
                                 dtype=np.int64)
        self.config = IndexConfig.from_dict(self.manifest["config"])
        assert self.config.fde is not None
        # as Searcher._load_codec: centroid ids with a codec, inverted lists when asked
        self._has_cids = self.manifest.get("codec") is not None
        self._has_lists = self._has_cids and self.config.centroid_candidates > 0
        # as serving._token_candidates.open_extra_candidates: token lists in their place
        # where every segment has approximate codes (an even number of bytes)
        ap = self.config.approx_pq
        self._has_tokens = (self._has_cids and self.config.token_candidates > 0 and ap > 0
                            and ap % 2 == 0 and all(g.get("has_acodes") for g in segs))
        self._n_rows = int(sum(g["documents"] for g in segs))
        self._query_fde_config = dataclasses.replace(self.config.fde,
                                                     fill_empty_partitions=False)
        self.shards = shards
        self.timeout_s = timeout_s
        if encoder is not None:
            self._check_encoder(encoder)
        self._encoder = encoder
        self.mode = "sharded"

    def _check_encoder(self, encoder: Any) -> None:
        """As :meth:`serving.Searcher._check_encoder`: the dim, and the identity recorded
        in the manifest."""
        from mvr.errors import EncoderMismatchError

        expected = self.manifest["encoder"]
        if encoder.dim != self.dim:
            raise EncoderMismatchError(
                f"encoder dim: expected {self.dim} (index {self.path}), got {encoder.dim}")
        if expected is not None and encoder.identity != expected:
            raise EncoderMismatchError(
                f"encoder identity differs from the one index {self.path} was built with: "
                f"expected {expected!r}, got {encoder.identity!r}")

    # ------------------------------------------------------------------ Searcher API
    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def num_documents(self) -> int:
        c = self.manifest["counts"]
        return int(c["documents"] - c.get("deleted", 0))

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from encoders._source import load_index_encoder

            if self.manifest["encoder"] is None:
                raise ConfigError(f"{self.path}: built from vectors without an encoder; search "
                                  "with vectors")
            encoder = load_index_encoder(self.manifest["encoder"],
                                         self.manifest.get("encoder_source"),
                                         where=f"index {self.path}")
            self._check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def _queries(self, queries: Any) -> MultiVectors:
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(queries, MultiVectors):
            q = queries
        elif isinstance(queries, list) and queries and all(isinstance(x, str) for x in queries):
            q = self.encoder.encode_queries(queries)
        else:
            from mvr._multivectors import as_multivectors

            q = as_multivectors(queries, dim=self.dim, name="queries")
        if q.dim != self.dim:
            from mvr.errors import DimensionMismatchError

            raise DimensionMismatchError(f"queries: expected dim {self.dim}, got {q.dim}")
        q.require_nonempty("query")
        return q.astype(np.float32)

    def _fan(self, method: str, args: list[tuple[Any, ...]], indices: list[int],
             partial: bool, missing: set[int]) -> dict[int, Any]:
        answers, failed = _call(self.shards, indices, method, args, self.timeout_s)
        if failed and not partial:
            raise ShardUnavailableError(sorted(failed), "; ".join(
                f"shard {i}: {m}" for i, m in sorted(failed.items())))
        missing.update(failed)
        return answers

    def search(self, queries: Any, *, k: int = 10, candidates: int | None = None,
               rerank: bool = True, rerank_candidates: int | None = None, filter: Any = None,
               hybrid: Any = None, partial_results: bool = False) -> ShardedResults:
        """:meth:`serving.Searcher.search` over the shards; with a filter or hybrid fusion
        :func:`serving._sharded_filtered.search_filtered` (the same answers too)."""
        if filter is not None or (hybrid is not None and hybrid is not False):
            from serving._sharded_filtered import search_filtered

            return search_filtered(self, queries, k=k, candidates=candidates, rerank=rerank,
                                   rerank_candidates=rerank_candidates, filter=filter,
                                   hybrid=hybrid, partial_results=partial_results)
        check_k(k, "k")
        n, n2 = self._depths(k, candidates, rerank_candidates)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q = self._queries(queries)
        _tick(timings, "encode", t)
        missing: set[int] = set()
        hits = self._dense(q, k, n, n2, rerank, None, partial_results, missing, timings)
        return self._results(hits, timings, missing)

    def _depths(self, k: int, candidates: int | None, rerank_candidates: int | None,
                lists_only: bool = False) -> Any:
        """(N, N2) as :meth:`serving.Searcher._depths` (:func:`serving._stages.search_depths`
        over the same manifest counts)."""
        from serving._stages import search_depths

        cfg, counts = self.config, self.manifest["counts"]
        lists = (cfg.token_candidates if self._has_tokens
                 else cfg.centroid_candidates if self._has_lists else 0)
        n, c, n2 = search_depths(cfg, k, candidates, rerank_candidates, lists,
                                 int(counts["tokens"]) / max(int(counts["documents"]), 1))
        return c if lists_only else (n, n2)

    def _extra_n(self) -> int:
        """As :meth:`serving.Searcher._extra_n`: the token (or centroid) lists' candidates."""
        return self._depths(1, None, None, lists_only=True)

    def _dense(self, q: MultiVectors, k: int, n: int, n2: int, rerank: bool, tree: Any,
               partial: bool, missing: set[int], timings: dict[str, float]) -> _Hits:
        """The unfiltered search path (or the first-stage path of a filtered one, ``tree``:
        a parsed filter the shards apply before their cuts), from the query vectors."""
        t = time.perf_counter()
        from mvr._fde import encode_query_fdes

        qf = np.asarray(encode_query_fdes(q, self._query_fde_config), np.float32)
        t = _tick(timings, "query_fde", t)
        everyone = list(range(len(self.shards)))
        c = self._extra_n() if rerank else 0
        use_approx = rerank and self._has_cids and n2 < n + c
        got = self._fan("first", [(qf, q, n if rerank else k, use_approx, c, tree)]
                        * len(everyone), everyone, partial, missing)
        t = _tick(timings, "first_stage", t)
        if not got:
            raise ShardUnavailableError(sorted(missing), "no shard answered")
        order = sorted(got)
        fs_s, fs_r = merge_top_n([(got[i]["scores"], got[i]["rows"]) for i in order],
                                 n if rerank else k)
        if not rerank:
            return self._first_stage_hits(fs_s, fs_r, k)
        rows = fs_r
        extra_parts: list[tuple[np.ndarray, np.ndarray]] = []
        if c and any(got[i].get("tok_lists") is not None for i in order):
            from serving._sharded_tokens import merge_shard_token_lists

            cand = merge_shard_token_lists(self, [got[i]["tok_lists"] for i in order], c)
            rows = union_rows(fs_r, cand)
            if use_approx and n2 < rows.shape[1]:  # the lists' rows, scored by their shards
                extra_parts = self._approx_parts(q, cand, partial, missing)
                # partial: a shard lost since the first fan-out leaves its rows unscored: out
                lost = np.isin(self._owner(np.maximum(rows, 0)), sorted(missing))
                rows = np.where((rows >= 0) & lost, -1, rows)
        elif c:  # the global top c of the lists: the merge of each shard's top c
            _, cand = merge_top_n([(got[i]["cand_scores"], got[i]["cand_rows"]) for i in order], c)
            rows = union_rows(fs_r, cand)
        if use_approx and n2 < rows.shape[1]:
            parts = [(got[i][r], got[i][a]) for i in order
                     for r, a in (("rows", "approx"), ("cand_rows", "cand_approx"))
                     if got[i][r] is not None] + extra_parts
            _, rows = top_n(self._gather(rows, parts), n2, rows)
        t = _tick(timings, "approx", t)
        hits = self._exact(q, rows, k, partial, missing)
        _tick(timings, "rerank", t)
        return hits

    def _approx_parts(self, q: MultiVectors, rows: np.ndarray, partial: bool,
                      missing: set[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, approximate MaxSim) of global ``rows`` (shape (n_q, m)), each row scored
        by its shard (a shard that does not answer leaves its rows out)."""
        owner = np.where(rows >= 0, self._owner(np.maximum(rows, 0)), -1)
        want = sorted({int(o) for o in owner[owner >= 0].tolist()} - missing)
        got = self._fan("approx_rows", [(q, np.where(owner == i, rows, -1)) for i in want],
                        want, partial, missing)
        return [(got[i]["rows"], got[i]["approx"]) for i in sorted(got)]

    @staticmethod
    def _gather(rows: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The values the shards gave for ``rows`` (shape (n_q, m)): ``parts`` are
        (rows, values) pairs of shape (n_q, m_i), -1 pads; -inf where ``rows`` pads."""
        keys = np.concatenate([r for r, _ in parts], axis=1)
        vals = np.concatenate([v for _, v in parts], axis=1)
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        for qi in range(rows.shape[0]):
            order = np.argsort(keys[qi], kind="stable")
            k_sorted = keys[qi][order]
            want = rows[qi] >= 0
            at = np.searchsorted(k_sorted, rows[qi][want])
            if not np.array_equal(k_sorted[np.minimum(at, len(k_sorted) - 1)], rows[qi][want]):
                raise RuntimeError("sharded search: a candidate row without its shard's score")
            out[qi, want] = vals[qi][order][at]
        return out

    def _owner(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._bases, rows, side="right") - 1

    def _exact_scores(self, q: MultiVectors, rows: np.ndarray, partial: bool,
                      missing: set[int]) -> tuple[np.ndarray, dict[int, str]]:
        """Exact MaxSim of each query against its global ``rows`` (shape (n_q, m), -1
        pads), each row scored by its shard: scores (-inf for pads and rows of shards
        that did not answer) and the rows' ids."""
        owner = np.where(rows >= 0, self._owner(np.maximum(rows, 0)), -1)
        want = sorted({int(o) for o in owner[owner >= 0].tolist()} - missing)
        args = [(q, np.where(owner == i, rows, -1)) for i in want]
        got = self._fan("exact", args, want, partial, missing)
        scores = np.full(rows.shape, -np.inf, dtype=np.float32)
        names: dict[int, str] = {}
        for i, ans in got.items():
            mask = owner == i
            scores[mask] = ans["scores"][mask]
            names.update(zip(rows[mask].tolist(), ans["ids"], strict=True))
        return scores, names

    def _exact(self, q: MultiVectors, rows: np.ndarray, k: int, partial: bool,
               missing: set[int]) -> _Hits:
        """The exact top ``k`` of each query's ``rows`` (ties by the lower row)."""
        scores, names = self._exact_scores(q, rows, partial, missing)
        keep = np.isfinite(scores)
        s, r = top_n(np.where(keep, scores, -np.inf), k, np.where(keep, rows, -1))
        return _Hits.of(s, r, names)

    @staticmethod
    def _results(hits: _Hits, timings: dict[str, float], missing: set[int]) -> ShardedResults:
        return ShardedResults(ids=hits.ids, scores=hits.scores, timings=timings,
                              partial=bool(missing), missing_shards=sorted(missing))

    def _first_stage_hits(self, s: np.ndarray, r: np.ndarray, k: int) -> _Hits:
        owner = np.where(r >= 0, self._owner(np.maximum(r, 0)), -1)
        names: dict[int, str] = {}
        for i in sorted({int(o) for o in owner[owner >= 0].tolist()}):
            rows = r[owner == i]
            ans, failed = _call(self.shards, [i], "ids_of", [(rows,)], self.timeout_s)
            if failed:
                raise ShardUnavailableError([i], failed[i])
            names.update(zip(rows.tolist(), ans[i], strict=True))
        return _Hits.of(s, r, names)

    def rerank(self, queries: Any, doc_ids: list[list[str]], *, k: int | None = None
               ) -> ShardedResults:
        """Exact MaxSim against given ids (every shard is asked which it holds)."""
        q = self._queries(queries)
        if len(doc_ids) != len(q):
            raise ConfigError(f"doc_ids: expected one list per query ({len(q)}), got {len(doc_ids)}")
        row_of = self._lookup("rows_of", sorted({d for ds in doc_ids for d in ds}))
        width = max((len(ds) for ds in doc_ids), default=0)
        rows = np.full((len(q), max(width, 1)), -1, dtype=np.int64)
        for i, ds in enumerate(doc_ids):
            rows[i, : len(ds)] = [row_of[d] for d in ds]
        return self._results(self._exact(q, rows, width if k is None else k, False, set()),
                             {}, set())

    def get_texts(self, ids: list[str]) -> list[str | None]:
        held = self._lookup("texts", list(ids))
        return [held[d] for d in ids]

    def stored_vectors(self, doc_id: str) -> np.ndarray:
        """The document's vectors in its shard's table (what ``/explain`` splits the
        score over). Shape: (n_vectors, dim) float32."""
        return self._lookup("vectors", [doc_id])[doc_id]

    def _lookup(self, method: str, ids: list[str]) -> dict[str, Any]:
        """Ask every shard for what it holds of ``ids`` (``rows_of`` or ``texts``). A shard
        that is down matters only when an id was found nowhere else (ids are unique in an
        index): then it may hold it, and that is a 503, not a 404."""
        everyone = list(range(len(self.shards)))
        got, failed = _call(self.shards, everyone, method, [(ids,)] * len(everyone),
                            self.timeout_s)
        held = {d: v for ans in got.values() for d, v in ans.items()}
        missing = [d for d in ids if d not in held]
        if missing and failed:
            raise ShardUnavailableError(sorted(failed), "; ".join(
                f"shard {i}: {m}" for i, m in sorted(failed.items())))
        if missing:
            raise DocumentNotFoundError(
                f"{len(missing)} document id(s) not in the index (or deleted): {missing[:20]}")
        return held

    def stats(self) -> dict[str, Any]:
        """Per-shard health: ``ok`` with the shard's counters, or ``down`` with the error."""
        everyone = list(range(len(self.shards)))
        got, failed = _call(self.shards, everyone, "stats", [()] * len(everyone),
                            min(self.timeout_s, 5.0))
        shards = []
        for i in everyone:
            if i in got:
                shards.append({"shard": i, "status": "ok", **got[i]})
            else:
                shards.append({"shard": i, "status": "down", "error": failed.get(i)})
        return {"path": str(self.path), "generation": self.manifest["generation"],
                "documents": self.num_documents, "segments": len(self.manifest["segments"]),
                "dim": self.dim, "mode": self.mode, "shards": shards,
                "shards_up": sum(s["status"] == "ok" for s in shards),
                "shards_total": len(shards)}

    def close(self) -> None:
        for s in self.shards:
            if hasattr(s, "close") and not hasattr(s, "submit"):
                s.close()


@dataclass(frozen=True)
class _Hits:
    """A merged top-k: ids and scores per query, and the global rows (shape (n_q, k), -1
    pads) that hybrid fusion goes on with."""

    ids: list[list[str]]
    scores: list[np.ndarray]
    rows: np.ndarray

    @staticmethod
    def of(s: np.ndarray, r: np.ndarray, names: dict[int, str]) -> _Hits:
        ids = [[names[x] for x in row[row >= 0].tolist()] for row in r]
        return _Hits(ids=ids, scores=[si[ri >= 0] for si, ri in zip(s, r, strict=True)], rows=r)


def _to_global(rows: np.ndarray, base: int) -> np.ndarray:
    return np.where(rows >= 0, rows + base, -1)


def _tick(timings: dict[str, float], name: str, t0: float) -> float:
    from serving._stages import tick

    return tick(timings, name, t0)


def open_local_shards(path: str | Path, k: int, **options: Any) -> ShardedSearcher:
    """K in-process shards of the index at ``path`` behind a :class:`ShardedSearcher`
    (what the Ray deployment runs, minus Ray: for tests and for one big machine)."""
    manifest = read_manifest(path)
    spans = assign_shards(manifest, k)
    shards = [ShardSearcher(path, manifest, span, i, **options) for i, span in enumerate(spans)]
    return ShardedSearcher(path, shards, spans, manifest=manifest)

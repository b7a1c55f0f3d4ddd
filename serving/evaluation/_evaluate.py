"""``evaluate``: an index against a BEIR dataset and against its own exhaustive MaxSim.

One pass computes, for the judged queries of the split:

1. exhaustive MaxSim over every document (top ``depth``; cached on disk, keyed by
   the re-ranking table's checksums and the query vectors, so a re-run with other
   candidate counts skips it);
2. the first stage's top ``max(N)`` candidates (FDE inner products);
3. exact MaxSim of all those candidates -- re-ranking the first ``N`` of them for
   every ``N`` of the grid is then a sort, identical to ``search(candidates=N)``;
4. the real pipeline, ``Searcher.search(k=depth, candidates=N_search)``.

From these: judged metrics (trec_eval) of exhaustive, first stage, mvr and mvr per
``N``; candidate recall of the exhaustive top-k within the first ``N`` candidates
and the ``N`` needed for each recall target (MUVERA Table 1 shape); end-to-end
Recall@k against exhaustive after re-ranking; the nDCG@10 gap to exhaustive.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexing.corpus import BeirDataset, load_beir
from mvr._durable import atomic_write_file
from mvr._multivectors import MultiVectors
from mvr._protocols import SearchResults
from mvr.errors import ConfigError, DatasetError
from mvr.format import SEGMENTS_DIR, TOKENS_FILE
from serving.evaluation._backends import first_stage_candidates
from serving.evaluation._judgments import NO_JUDGMENTS, drop_identical_ids, note_unknown_judged
from serving.evaluation._metrics import JUDGED_METRICS, judged_metrics
from serving.evaluation._recall import (
    candidate_positions,
    candidates_needed,
    overlap_at_k,
    recall_by_n,
)
from serving.evaluation._runs import fingerprint, load_results, save_results, write_trec_run

__all__ = ["evaluate", "DEFAULT_CANDIDATES", "DEFAULT_KS", "DEFAULT_TARGETS"]

DEFAULT_CANDIDATES: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000)
DEFAULT_KS: tuple[int, ...] = (1, 10, 100)
DEFAULT_TARGETS: tuple[float, ...] = (0.8, 0.9, 0.95, 0.99)
_RERANK_DOCS_PER_CALL = 2048  # bounds the token vectors fetched per re-ranking call
_QUERY_CHUNK = 32


def _check_grid(name: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted(set(values)))
    if not out or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in out):
        raise ConfigError(f"{name}: expected positive ints, got {list(values)!r}")
    return out


def _check_targets(targets: Sequence[float]) -> tuple[float, ...]:
    out = tuple(sorted(set(float(t) for t in targets)))
    if not out or any(not 0 < t <= 1 for t in out):
        raise ConfigError(f"targets: expected recall levels in (0, 1], got {list(targets)!r}")
    return out


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not progress, leave=False)


# ---------------------------------------------------------------------- cached stages
def table_fingerprint(manifest: dict[str, Any]) -> str:
    """Key of what exhaustive MaxSim depends on: the re-ranking tables, ids, tombstones.

    Two indexes with the same token tables (same vectors and pooling) share it even
    when their FDE settings, first stages or segment names differ.
    """
    files = manifest.get("files", {})
    parts = []
    for seg in manifest.get("segments", []):
        prefix = f"{SEGMENTS_DIR}/{seg['name']}/"
        parts.append(
            [
                (name, files.get(prefix + name, {}).get("sha256"))
                for name in (TOKENS_FILE, "ids.jsonl", "lengths.bin")
            ]
        )
    tomb = manifest.get("tombstones")
    tomb_sha = None if tomb is None else files.get(tomb, {}).get("sha256", tomb)
    config = manifest.get("config", {})
    return fingerprint(
        parts, tomb_sha, manifest.get("dim"), config.get("table_dtype"), config.get("pooling")
    )


def _encode_queries(
    searcher: Any, texts: list[str], cache_dir: Path | None, progress: bool
) -> MultiVectors:
    encoder = searcher.encoder
    key = fingerprint("queries", encoder.identity, texts)[:24]
    path = None if cache_dir is None else cache_dir / f"queries-{key}.npz"
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return MultiVectors(z["vectors"], z["offsets"])
    parts = []
    with _bar(len(texts), "encode queries", progress) as bar:
        for lo, hi in _chunks(len(texts), 256):
            parts.append(encoder.encode_queries(texts[lo:hi]))
            bar.update(hi - lo)
    mv = MultiVectors.concat(parts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz" to it
                np.savez(f, vectors=mv.vectors, offsets=mv.offsets)

        atomic_write_file(path, write)
    return mv


def _exhaustive(
    searcher: Any,
    qids: list[str],
    queries: MultiVectors,
    depth: int,
    cache_path: Path | None,
    progress: bool,
) -> tuple[SearchResults, bool]:
    if cache_path is not None and cache_path.is_file():
        cached_qids, res = load_results(cache_path)
        if cached_qids == qids and all(
            len(ids) >= min(depth, searcher.num_documents) for ids in res.ids
        ):
            return SearchResults(
                ids=[ids[:depth] for ids in res.ids], scores=[s[:depth] for s in res.scores]
            ), True
    ids: list[list[str]] = []
    scores: list[np.ndarray] = []
    with _bar(len(qids), "exhaustive MaxSim", progress) as bar:
        for lo, hi in _chunks(len(qids), _QUERY_CHUNK):
            part = searcher.exhaustive(queries[lo:hi], k=depth)
            ids.extend(part.ids)
            scores.extend(part.scores)
            bar.update(hi - lo)
    res = SearchResults(ids=ids, scores=scores)
    if cache_path is not None:
        save_results(cache_path, qids, res)
    return res, False


def _first_stage(searcher: Any, queries: MultiVectors, n: int, progress: bool) -> SearchResults:
    ids: list[list[str]] = []
    scores: list[np.ndarray] = []
    with _bar(len(queries), "first stage", progress) as bar:
        for lo, hi in _chunks(len(queries), _QUERY_CHUNK):
            part = searcher.search(queries[lo:hi], k=n, candidates=n, rerank=False)
            ids.extend(part.ids)
            scores.extend(part.scores)
            bar.update(hi - lo)
    return SearchResults(ids=ids, scores=scores)


def _search(searcher: Any, queries: MultiVectors, k: int, n: int, progress: bool) -> SearchResults:
    """The real pipeline, ``Searcher.search(k=k, candidates=n)``, in query chunks."""
    ids: list[list[str]] = []
    scores: list[np.ndarray] = []
    with _bar(len(queries), f"search (N={n})", progress) as bar:
        for lo, hi in _chunks(len(queries), max(1, _RERANK_DOCS_PER_CALL // n)):
            part = searcher.search(queries[lo:hi], k=k, candidates=n)
            ids.extend(part.ids)
            scores.extend(part.scores)
            bar.update(hi - lo)
    return SearchResults(ids=ids, scores=scores)


def _exact_candidate_scores(
    searcher: Any,
    queries: MultiVectors,
    candidates: list[list[str]],
    known: SearchResults,
    progress: bool,
) -> tuple[list[np.ndarray], int]:
    """Exact MaxSim of every candidate, in first-stage order. Shape per query: (n_i,).

    Scores already in ``known`` (the exhaustive top-M) are taken from there; only the
    other candidates go through ``Searcher.rerank``. Returns the scores and how many
    candidates were re-scored.
    """
    scores = [
        dict(zip(ids, np.asarray(s, np.float32).tolist(), strict=True))
        for ids, s in zip(known.ids, known.scores, strict=True)
    ]
    missing = [
        [d for d in cands if d not in sc] for cands, sc in zip(candidates, scores, strict=True)
    ]
    todo = [q for q, m in enumerate(missing) if m]
    width = max((len(missing[q]) for q in todo), default=1)
    per_call = max(1, _RERANK_DOCS_PER_CALL // width)
    with _bar(len(todo), "exact MaxSim of other candidates", progress) as bar:
        for lo, hi in _chunks(len(todo), per_call):
            rows = np.asarray(todo[lo:hi], dtype=np.int64)
            res = searcher.rerank(queries.take(rows), [missing[q] for q in todo[lo:hi]], k=None)
            for q, ids, s in zip(todo[lo:hi], res.ids, res.scores, strict=True):
                scores[q].update(zip(ids, np.asarray(s, np.float32).tolist(), strict=True))
            bar.update(hi - lo)
    out = [
        np.array([sc[d] for d in cands], dtype=np.float32)
        for cands, sc in zip(candidates, scores, strict=True)
    ]
    return out, sum(len(m) for m in missing)


def rerank_prefix(
    candidates: Sequence[Sequence[str]],
    exact: Sequence[np.ndarray],
    n: int,
    depth: int,
    tiebreak: Sequence[np.ndarray] | None = None,
) -> SearchResults:
    """Re-rank the first ``n`` candidates of each query by their exact scores.

    Parameters
    ----------
    candidates : sequence of sequence of str
        Shape: (n_queries, <= N_max), first-stage order.
    exact : sequence of np.ndarray
        Shape: (n_queries, <= N_max), exact MaxSim of the candidates, same order.
    n, depth : int
        Candidates re-ranked, results kept.
    tiebreak : sequence of np.ndarray, optional
        Shape: (n_queries, <= N_max); equal scores are ordered by this key ascending
        (the searcher breaks ties by lower index row); default: first-stage order.
    """
    ids, scores = [], []
    for q, (cands, s) in enumerate(zip(candidates, exact, strict=True)):
        head = np.asarray(s[:n], dtype=np.float32)
        key = np.arange(len(head)) if tiebreak is None else np.asarray(tiebreak[q][:n])
        order = np.lexsort((key, -head))[:depth]
        ids.append([cands[i] for i in order.tolist()])
        scores.append(head[order])
    return SearchResults(ids=ids, scores=scores)


# ---------------------------------------------------------------------- the report parts
def _recall_section(
    first_stage_ids: list[list[str]],
    reference_ids: list[list[str]],
    ks: tuple[int, ...],
    ns: tuple[int, ...],
    targets: tuple[float, ...],
    n_max: int,
) -> dict[str, Any]:
    recall: dict[str, list[float]] = {}
    needed: dict[str, dict[str, int | None]] = {}
    curves: dict[str, list[float]] = {}
    for k in ks:
        curve = recall_by_n(*candidate_positions(first_stage_ids, reference_ids, k), n_max)
        recall[str(k)] = [float(curve[min(n, n_max) - 1]) for n in ns]
        needed[str(k)] = {str(t): v for t, v in candidates_needed(curve, targets).items()}
        curves[str(k)] = [float(x) for x in curve]
    return {"ks": list(ks), "ns": list(ns), "recall": recall, "needed": needed, "curve": curves}


def _index_summary(searcher: Any) -> dict[str, Any]:
    m = searcher.manifest
    cfg = m["config"]
    return {
        "path": str(searcher.path),
        "documents": searcher.num_documents,
        "tokens": int(m["counts"]["tokens"]),
        "dim": int(m["dim"]),
        "fde_dim": int(m["fde_dim"]),
        "fde": cfg["fde"],
        "pooling": cfg["pooling"],
        "table_dtype": cfg["table_dtype"],
        "first_stage": list(searcher.first_stage.kinds),
        "default_candidates": int(cfg["default_candidates"]),
        "encoder": (m.get("encoder") or {}).get("name"),
        "table_fingerprint": table_fingerprint(m)[:16],
    }


def _select_queries(dataset: BeirDataset, max_queries: int | None) -> tuple[list[str], list[str]]:
    qids = list(dataset.queries)
    if max_queries is not None:
        if max_queries < 1:
            raise ConfigError(f"max_queries: expected a positive int or None, got {max_queries!r}")
        qids = qids[:max_queries]
    return qids, [dataset.queries[q] for q in qids]


def evaluate(
    index: str | os.PathLike[str] | Any,
    dataset: str | os.PathLike[str] | BeirDataset,
    *,
    split: str = "test",
    output_dir: str | os.PathLike[str] | None = None,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    ks: Sequence[int] = DEFAULT_KS,
    targets: Sequence[float] = DEFAULT_TARGETS,
    k: int = 10,
    search_candidates: int | None = None,
    encoder: Any = None,
    mode: str = "memory",
    max_queries: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    backends: Sequence[str] = (),
    plots: bool = True,
    check_corpus: bool = True,
    progress: bool = True,
    ignore_identical_ids: bool = True,
) -> dict[str, Any]:
    """Evaluate an index on a BEIR dataset and against its own exhaustive MaxSim.

    Judged document ids the index lacks are logged once (count and ids) and count as
    relevant documents never retrieved (trec_eval semantics). A dataset without
    ``qrels/`` is evaluated against exhaustive MaxSim only (``report["judged"]`` is
    None and the report says that judgments were absent).

    Parameters
    ----------
    index : path or serving.Searcher
        The index (opened with ``encoder`` and ``mode``) or an open searcher.
    dataset : path or BeirDataset
        BEIR-layout directory (``corpus.jsonl[.gz]``, ``queries.jsonl``,
        ``qrels/<split>.tsv``) or a loaded dataset.
    split : str
        Qrels split.
    output_dir : path, optional
        Where ``report.json``, ``runs/*.trec`` and ``plots/*.png`` go (and the cache,
        unless ``cache_dir``); None writes nothing and caches nothing.
    candidates : sequence of int
        The grid of first-stage candidate counts N (clipped to the corpus size).
    ks : sequence of int
        Depths of the exhaustive top-k whose candidate recall is measured.
    targets : sequence of float
        Recall levels for "candidates needed".
    k : int
        Results per query for end-to-end Recall@k against exhaustive.
    search_candidates : int, optional
        N of the real pipeline run (``Searcher.search``); default: the index's
        ``default_candidates``.
    encoder : mvr.Encoder, optional
        Query encoder (e.g. precomputed vectors); default: the index's.
    mode : str
        Token store mode when ``index`` is a path.
    max_queries : int, optional
        Evaluate only the first queries (quick looks).
    cache_dir : path, optional
        Cache of query vectors and exhaustive results (default ``output_dir/cache``).
    plots : bool
        Write PNG plots (needs ``output_dir``).
    backends : sequence of str
        Other first-stage kinds (``"exact"``, ``"hnsw"``, ``"ivfpq"``) to build aside
        over the index's FDEs and compare by candidate recall.
    check_corpus : bool
        Read the corpus file once: every line must parse (and ids be unique).
    progress : bool
        tqdm bars.
    ignore_identical_ids : bool
        Drop a hit whose id equals the query id before the judged metrics, as BEIR
        does by default (datasets whose queries are also documents). Candidate recall
        and the TREC run files keep every hit.

    Returns
    -------
    dict
        The JSON report (see ``EVALUATION.md`` for the fields).

    Raises
    ------
    mvr.errors.DatasetError
        Malformed dataset files, or qrels naming queries the dataset does not have
        (the message names the file and line).
    """
    from serving._searcher import Searcher

    ns_req, ks, targets = (
        _check_grid("candidates", candidates),
        _check_grid("ks", ks),
        _check_targets(targets),
    )
    _check_grid("k", [k])
    ds = dataset if isinstance(dataset, BeirDataset) else load_beir(dataset, split)
    corpus_size = None
    if check_corpus:  # every corpus line parses, ids are unique
        corpus_size = sum(1 for _ in ds.corpus())
    own = not hasattr(index, "exhaustive")
    searcher = Searcher.open(index, encoder=encoder, mode=mode) if own else index
    try:
        return _evaluate_open(
            searcher,
            ds,
            ns_req=ns_req,
            ks=ks,
            targets=targets,
            k=k,
            search_candidates=search_candidates,
            max_queries=max_queries,
            output_dir=None if output_dir is None else Path(output_dir),
            cache_dir=None if cache_dir is None else Path(cache_dir),
            plots=plots,
            progress=progress,
            corpus_size=corpus_size,
            backends=tuple(dict.fromkeys(backends)),
            ignore_identical_ids=ignore_identical_ids,
        )
    finally:
        if own:
            searcher.close()


def _evaluate_open(
    searcher: Any,
    ds: BeirDataset,
    *,
    ns_req: tuple[int, ...],
    ks: tuple[int, ...],
    targets: tuple[float, ...],
    k: int,
    search_candidates: int | None,
    max_queries: int | None,
    output_dir: Path | None,
    cache_dir: Path | None,
    plots: bool,
    progress: bool,
    corpus_size: int | None,
    backends: tuple[str, ...] = (),
    ignore_identical_ids: bool = True,
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    clock = _Clock(timings)
    unknown = check_dataset_matches(ds, searcher.ids)
    qids, texts = _select_queries(ds, max_queries)
    qrels = {q: ds.qrels[q] for q in qids if q in ds.qrels}
    judge = _judge(qrels, qids, ignore_identical_ids) if ds.has_judgments else None
    n_docs = searcher.num_documents
    ns = tuple(sorted({min(n, n_docs) for n in ns_req}))
    n_max = max(ns)
    depth = max(100, k, max(ks))
    # the N a default search takes (within the index's token budget, candidate_tokens)
    n_search = search_candidates or (searcher._depths(depth, None, None)[0]
                                     if hasattr(searcher, "_depths")
                                     else int(searcher.manifest["config"]["default_candidates"]))
    if cache_dir is None and output_dir is not None:
        cache_dir = output_dir / "cache"

    queries = clock("encode_queries", lambda: _encode_queries(searcher, texts, cache_dir, progress))
    vectors_sha = hashlib.sha256(np.ascontiguousarray(queries.vectors).tobytes()).hexdigest()
    key = fingerprint(
        table_fingerprint(searcher.manifest), qids, queries.offsets.tolist(), vectors_sha
    )[:24]
    exh_path = None if cache_dir is None else cache_dir / f"exhaustive-{key}.npz"
    top_m = min(n_docs, max(depth, n_max))  # deep enough to score most candidates too
    exhaustive_m, cached = clock(
        "exhaustive", lambda: _exhaustive(searcher, qids, queries, top_m, exh_path, progress)
    )
    exhaustive = SearchResults(
        ids=[i[:depth] for i in exhaustive_m.ids], scores=[s[:depth] for s in exhaustive_m.scores]
    )
    first = clock("first_stage", lambda: _first_stage(searcher, queries, n_max, progress))
    exact = clock(
        "rerank_candidates",
        lambda: _exact_candidate_scores(searcher, queries, first.ids, exhaustive_m, progress),
    )
    exact, rescored = exact
    mvr_run = clock(
        "search", lambda: _search(searcher, queries, min(depth, n_search), n_search, progress)
    )

    judged = None if judge is None else {
        "exhaustive": judge(exhaustive.ids),
        "first_stage": judge([ids[:depth] for ids in first.ids]),
        "mvr": judge(mvr_run.ids),
    }
    by_n = _judged_by_n(searcher, judge, first, exact, exhaustive, ns, depth, k)
    recall = {
        _backend_name(searcher): _recall_section(first.ids, exhaustive.ids, ks, ns, targets, n_max)
    }
    for kind in backends:
        if kind in recall:
            continue
        alt_ids, alt_t = first_stage_candidates(searcher, kind, queries, n_max)
        recall[kind] = _recall_section(alt_ids, exhaustive.ids, ks, ns, targets, n_max)
        if judge is not None:
            recall[kind]["judged"] = judge([i[:depth] for i in alt_ids])
        timings.update({f"backend_{kind}_{name}": v for name, v in alt_t.items()})
    ex_ndcg, mvr_ndcg = ((judged["exhaustive"]["ndcg@10"], judged["mvr"]["ndcg@10"])
                         if judged is not None else (0.0, 0.0))
    report: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": str(ds.corpus_path.parent),
            "split": ds.split,
            "queries": len(qids),
            "judgments": sum(len(v) for v in qrels.values()),
            "has_judgments": ds.has_judgments,
            "note": None if ds.has_judgments else NO_JUDGMENTS.format(path=ds.corpus_path.parent),
            "unknown_judged": unknown,
            "corpus_documents": corpus_size,
        },
        "index": _index_summary(searcher),
        "settings": {
            "k": k,
            "ks": list(ks),
            "candidates": list(ns),
            "targets": list(targets),
            "search_candidates": n_search,
            "depth": depth,
            "metrics": list(JUDGED_METRICS),
            "ignore_identical_ids": ignore_identical_ids,
        },
        "judged": judged,
        "judged_by_candidates": by_n,
        "gap": None if judged is None else {
            "ndcg@10": ex_ndcg - mvr_ndcg,
            "ndcg@10_relative": (ex_ndcg - mvr_ndcg) / ex_ndcg if ex_ndcg else 0.0,
        },
        "candidate_recall": recall,
        "end_to_end": {
            "k": k,
            "candidates": n_search,
            f"recall@{k}_vs_exhaustive": overlap_at_k(mvr_run.ids, exhaustive.ids, k),
        },
        "exhaustive_cached": cached,
        "candidates_rescored": rescored,
        "timings": timings,
    }
    if output_dir is not None:
        _write_outputs(report, output_dir, qids, first, mvr_run, exhaustive, depth, plots)
    return report


def _judge(
    qrels: dict[str, dict[str, int]], qids: list[str], ignore_identical_ids: bool
) -> Callable[[list[list[str]]], dict[str, float]]:
    """Judged metrics of a ranking of ``qids`` (hits equal to the query id dropped first)."""

    def judge(ranked: list[list[str]]) -> dict[str, float]:
        if ignore_identical_ids:
            ranked = drop_identical_ids(qids, ranked)
        return judged_metrics(qrels, qids, ranked)

    return judge


def _judged_by_n(
    searcher: Any,
    judge: Callable[[list[list[str]]], dict[str, float]] | None,
    first: SearchResults,
    exact: list[np.ndarray],
    exhaustive: SearchResults,
    ns: tuple[int, ...],
    depth: int,
    k: int,
) -> dict[str, Any]:
    """Judged metrics and Recall@k vs exhaustive after re-ranking the first N, per N."""
    row_of = {doc: row for row, doc in enumerate(searcher.ids)}
    rows = [np.array([row_of[d] for d in ids], dtype=np.int64) for ids in first.ids]
    by_n: dict[str, Any] = {}
    for n in ns:
        rr = rerank_prefix(first.ids, exact, n, depth, rows)
        by_n[str(n)] = {
            **(judge(rr.ids) if judge is not None else {}),
            f"recall@{k}_vs_exhaustive": overlap_at_k(rr.ids, exhaustive.ids, k),
        }
    return by_n


def _backend_name(searcher: Any) -> str:
    kinds = sorted(set(searcher.first_stage.kinds))
    return "+".join(kinds) if kinds else "exact"


def _write_outputs(
    report: dict[str, Any],
    out: Path,
    qids: list[str],
    first: SearchResults,
    mvr_run: SearchResults,
    exhaustive: SearchResults,
    depth: int,
    plots: bool,
) -> None:
    from serving.evaluation._report import plot_report, write_json

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "first_stage_run": write_trec_run(
            out / "runs" / "first_stage.trec",
            qids,
            SearchResults(
                ids=[i[:depth] for i in first.ids], scores=[s[:depth] for s in first.scores]
            ),
            "mvr-first-stage",
        ),
        "reranked_run": write_trec_run(out / "runs" / "reranked.trec", qids, mvr_run, "mvr"),
        "exhaustive_run": write_trec_run(
            out / "runs" / "exhaustive.trec", qids, exhaustive, "exhaustive-maxsim"
        ),
    }
    if plots:
        files.update(plot_report(report, out / "plots"))
    report["files"] = {name: str(path) for name, path in files.items()}
    write_json(report, out / "report.json")


class _Clock:
    """Times named stages into a dict."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.timings[name] = round(time.perf_counter() - t, 3)
        return out


def check_dataset_matches(dataset: BeirDataset, ids: Sequence[str]) -> dict[str, Any]:
    """Raise :class:`DatasetError` for an empty index; log one warning (count, ids, first
    qrels line) when qrels judge documents not in ``ids`` and return them for the report."""
    if not ids:
        raise DatasetError(f"{dataset.corpus_path}: the index holds no documents")
    return note_unknown_judged(dataset, ids)

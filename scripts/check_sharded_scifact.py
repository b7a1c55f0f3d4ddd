"""Sharded search == single-process search on SciFact (issue 13's equivalence check).

From the precomputed SciFact vectors (``.cache/vectors/scifact``, written by
``scripts/encode_corpus.py``) builds a 4-segment index at the default IndexConfig (a
build and three adds, as a distributed build makes), then runs every query through
``serving.Searcher.open(...).search`` and through the sharded merge
``serving._sharded.open_local_shards(path, K)`` for K = 2 and 4: once as one batch of
all queries, once one query at a time for the first ``--batch1`` queries. Per (K, batch)
it reports how many queries have identical ids, how many differ only by the order of
near-equal scores (within ``--tol``), and the largest absolute score difference at
equal ranks. Exit status 1 on any score difference beyond ``--tol`` or any id difference
that near-ties do not explain::

    .venv/bin/python scripts/encode_corpus.py /work/shared/data/scifact --out .cache/vectors/scifact
    .venv/bin/python scripts/check_sharded_scifact.py --out runs/sharded_scifact
    .venv/bin/python scripts/check_sharded_scifact.py --smoke   # generated data, a minute

Prints a markdown table and one summary line, and writes ``OUT/sharded_scifact.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VECTORS = ROOT / ".cache/vectors/scifact"


def scifact_data(vectors: Path, limit: int | None) -> tuple[list[str], Any, Any]:
    """(document ids, document vectors, query vectors) of the precomputed tables; the
    first ``limit`` queries when given."""
    import encoders

    if not (vectors / "documents.zarr").exists():
        raise SystemExit(f"{vectors}: expected documents.zarr and queries.zarr; make them with "
                         f"scripts/encode_corpus.py /work/shared/data/scifact --out {vectors}")
    ids, docs, _, _ = encoders.read_precomputed(vectors / "documents.zarr")
    _, queries, _, _ = encoders.read_precomputed(vectors / "queries.zarr")
    if limit is not None:
        queries = queries[:limit]
    return ids, docs, queries.astype(np.float32)


def smoke_data(n_docs: int, n_queries: int, dim: int = 64, seed: int = 0
               ) -> tuple[list[str], Any, Any]:
    """Clustered unit vectors, 8-24 tokens a document, 4-8 a query (seeded)."""
    from mvr import MultiVectors

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, dim))

    def batch(n: int, lo: int, hi: int) -> Any:
        lengths = rng.integers(lo, hi + 1, size=n)
        topic = np.repeat(rng.integers(0, len(centres), size=n), lengths)
        v = centres[topic] + 0.6 * rng.standard_normal((int(lengths.sum()), dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return MultiVectors(v.astype(np.float32), offsets)

    return [f"doc-{i}" for i in range(n_docs)], batch(n_docs, 8, 24), batch(n_queries, 4, 8)


def _documents(ids: list[str], docs: Any, lo: int, hi: int) -> Iterator[tuple[str, np.ndarray]]:
    for i in range(lo, hi):
        yield ids[i], np.asarray(docs[i], dtype=np.float32)


def build_segmented(path: Path, ids: list[str], docs: Any, segments: int) -> None:
    """``build_index`` of the first part, then ``IndexWriter.add`` of each other part
    (default IndexConfig; no encoder: the index is searched with vectors)."""
    from indexing import IndexWriter, build_index

    cuts = np.linspace(0, len(ids), segments + 1).astype(int)
    build_index(path, _documents(ids, docs, 0, int(cuts[1])), progress=False, overwrite=True)
    with IndexWriter(path) as w:
        for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
            w.add(_documents(ids, docs, int(a), int(b)))


def _tie_explained(ref_ids: list[str], ref_scores: np.ndarray, got_ids: list[str],
                   tol: float) -> bool:
    """Whether ``got_ids`` differ from ``ref_ids`` only inside runs of near-equal
    reference scores (consecutive ranks within ``tol``): each run holds the same ids,
    except the last run, which the cut at k may fill from beyond the list."""
    if len(got_ids) != len(ref_ids):
        return False
    s = np.asarray(ref_scores, dtype=np.float64)
    start = 0
    for r in range(1, len(s) + 1):
        if r == len(s) or s[r - 1] - s[r] > tol:
            if r < len(s) and set(ref_ids[start:r]) != set(got_ids[start:r]):
                return False
            start = r
    return True


def compare(ref: Any, got: Any, tol: float) -> dict[str, Any]:
    """Per-query comparison of two :class:`mvr.SearchResults` of the same queries."""
    identical = tied = 0
    worst = 0.0
    bad: list[int] = []
    for i, (ri, gi) in enumerate(zip(ref.ids, got.ids, strict=True)):
        rs, gs = np.asarray(ref.scores[i], np.float64), np.asarray(got.scores[i], np.float64)
        diff = float(np.abs(rs - gs).max()) if len(rs) == len(gs) and len(rs) else (
            0.0 if len(rs) == len(gs) else float("inf"))
        worst = max(worst, diff)
        same = list(ri) == list(gi)
        ok = diff <= tol and (same or _tie_explained(list(ri), rs, list(gi), tol))
        identical += same
        tied += ok and not same
        if not ok:
            bad.append(i)
    return {"queries": len(ref.ids), "identical": identical, "tie_order_only": tied,
            "max_abs_score_diff": worst, "failed": len(bad), "failed_queries": bad[:10]}


def _one_by_one(search: Callable[[Any], Any], queries: Any) -> Any:
    from mvr import SearchResults

    ids: list[list[str]] = []
    scores: list[np.ndarray] = []
    for i in range(len(queries)):
        r = search(queries[i : i + 1])
        ids += r.ids
        scores += list(r.scores)
    return SearchResults(ids=ids, scores=scores)


def check(path: Path, queries: Any, shard_counts: list[int], batch1: int, k: int, mode: str,
          tol: float) -> list[dict[str, Any]]:
    """One row per (K, batch): :func:`compare` of the sharded merge with the single process."""
    from serving import Searcher
    from serving._sharded import open_local_shards

    one = queries[: min(batch1, len(queries))]
    with Searcher.open(path, mode=mode) as single:
        def run(q: Any) -> Any:
            return single.search(q, k=k)

        t = time.perf_counter()
        ref_all = run(queries)
        single_s = time.perf_counter() - t
        ref_one = _one_by_one(run, one)
    rows = []
    for shards in shard_counts:
        sharded = open_local_shards(path, shards, mode=mode)
        try:
            def run_sharded(q: Any, s: Any = sharded) -> Any:
                return s.search(q, k=k)

            t = time.perf_counter()
            got_all = run_sharded(queries)
            sharded_s = time.perf_counter() - t
            got_one = _one_by_one(run_sharded, one)
        finally:
            sharded.close()
        rows.append({"shards": shards, "batch": len(queries), "single_s": single_s,
                     "sharded_s": sharded_s, **compare(ref_all, got_all, tol)})
        rows.append({"shards": shards, "batch": 1, **compare(ref_one, got_one, tol)})
    return rows


def _table(res: dict[str, Any]) -> str:
    lines = [f"{res['data']}: {res['documents']:,} documents in {res['segments']} segments "
             f"(default IndexConfig, mode {res['mode']}), k={res['k']}, tolerance {res['tol']:g}",
             "", "| shards | batch | queries | identical ids | tie order only | max abs score diff "
             "| failed |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['shards']} | {r['batch']} | {r['queries']} | {r['identical']} | "
                     f"{r['tie_order_only']} | {r['max_abs_score_diff']:.2e} | {r['failed']} |")
    rows = res["rows"]
    verdict = "PASS" if not any(r["failed"] for r in rows) else "FAIL"
    lines += ["", f"**{verdict}**: sharded (K={', '.join(str(s) for s in res['shard_counts'])}) "
              f"vs single process on {res['data']}, {res['queries']} queries: ids identical in "
              f"{sum(r['identical'] for r in rows)}/{sum(r['queries'] for r in rows)} query "
              f"results, max abs score diff {max(r['max_abs_score_diff'] for r in rows):.2e} "
              f"(tolerance {res['tol']:g})"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=Path, default=VECTORS)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch1", type=int, default=50, help="queries searched one at a time")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries")
    ap.add_argument("--mode", default="memory", choices=("memory", "mmap", "ssd"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--smoke", action="store_true",
                    help="generated data (1,200 documents, 40 queries): checks that it runs")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/sharded_scifact")
    a = ap.parse_args()
    if a.smoke:
        ids, docs, queries = smoke_data(1200, 40)
        a.batch1 = min(a.batch1, 10)
    else:
        ids, docs, queries = scifact_data(a.vectors, a.limit)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "index.mvr"
    t = time.perf_counter()
    build_segmented(path, ids, docs, a.segments)
    res: dict[str, Any] = {"data": "generated (smoke)" if a.smoke else "SciFact",
                           "documents": len(ids), "segments": a.segments, "mode": a.mode,
                           "k": a.k, "tol": a.tol, "queries": len(queries),
                           "shard_counts": a.shards, "build_s": time.perf_counter() - t}
    res["rows"] = check(path, queries, a.shards, a.batch1, a.k, a.mode, a.tol)
    (a.out / "sharded_scifact.json").write_text(json.dumps(res, indent=2))
    print(_table(res))
    if a.smoke:
        shutil.rmtree(path, ignore_errors=True)
    if any(r["failed"] for r in res["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()

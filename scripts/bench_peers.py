"""Side by side with fast-plaid and xtr-warp-rs (issue 11), on the same pooled token vectors.

One encoding (the default encoder, or the cached vectors under ``.cache/vectors/NAME``),
pooled once as mvr pools by default (``indexing.pool_tokens`` with ``mvr.PoolingConfig()``),
stored as float16; exactly those document token vectors go to all three engines:

* **mvr**: ``indexing.build_index`` with ``(id, vectors)`` pairs at the default
  ``IndexConfig`` except ``pooling.pool_factor = 1`` (the vectors are pooled already;
  the manifest's config is reported), searched with ``serving.Searcher`` over a grid of
  ``candidates=``.
* **mvr-pqr2**: the same with ``table_dtype="pqr2"`` (format 4: 2 bits per dimension of
  what the 64-byte approximate code leaves of the residual; 162 B per token on disk
  against the default res8's 450), the bytes-first variant; ``--engines`` picks which run.
* **fast-plaid** and **xtr-warp-rs**: in their own venv (``.venv-peers``, torch 2.11.0;
  ``make bench-peers`` creates it), through ``scripts/peers_runner.py`` run as a
  subprocess with ``.venv-peers/bin/python``; vectors and results travel as .npy/JSON
  files in a temporary directory, and the runner never imports mvr.

Every build and every serving run is its own subprocess (peak RSS = its ``VmHWM``),
with OMP / MKL / OpenBLAS / Rayon / numba / torch threads set to 1 or 2. Queries run
one per call (batch 1) and in batches of 32. Recall@10 is measured against exhaustive
MaxSim (``mvr.maxsim``, in blocks) over the same pooled vectors, cached in
``.cache/peers/``; nDCG@10 against the dataset's qrels (pytrec_eval) where it has them.

Output: a markdown table of every operating point, the build/size table, the comparison
the issue asks for (at equal Recall@10 vs exhaustive, interpolated along each engine's
curve: mvr's p50 at batch 1 / 1 thread over the best peer's; index bytes over the
smallest peer's; build time over the fastest peer's), a JSON of everything
(``runs/peers_NAME.json``) and a PNG (``docs/plots/peers_NAME.png``).

Usage::

    make bench-peers                         # creates .venv-peers, then runs SciFact
    .venv/bin/python scripts/bench_peers.py /work/shared/data/scifact
    .venv/bin/python scripts/bench_peers.py /work/shared/data/pypi --limit 100000 --queries 300

With ``--limit N`` the corpus is the judged relevant documents of the chosen queries
(where they have vectors) plus the first documents in corpus order, N in all; qrels are
then restricted to the chosen documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import peers_runner as harness  # noqa: E402  (numpy-only harness shared with the peers)

K = harness.K
ENGINES = ("mvr", "mvr-pqr2", "fast-plaid", "xtr-warp")
# mvr variants: IndexConfig fields changed from the defaults (the child reads them from
# MVR_BENCH_CONFIG); each is compared with the peers on its own
MVR_VARIANTS: dict[str, dict[str, Any]] = {"mvr": {}, "mvr-pqr2": {"table_dtype": "pqr2"}}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "RAYON_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def log(msg: str) -> None:
    print(f"[bench_peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- vectors in
class DocSource:
    """Document token vectors by row: a precomputed table, a (possibly still growing)
    ``.npy`` directory, or the default encoder over the corpus texts."""

    def __init__(self, ids: list[str], get: Any, how: str) -> None:
        self.ids, self.get, self.how = ids, get, how


def _npy_dir_source(path: Path) -> DocSource:
    """A ``vectors.npy`` / ``offsets.npy`` / ``ids.npy`` directory; while
    ``scripts/encode_stream.py`` is still writing it, only the rows in ``progress.json``."""
    import mvr

    vectors = np.load(path / "vectors.npy", mmap_mode="r")
    offsets = np.load(path / "offsets.npy")
    ids = [str(x) for x in np.load(path / "ids.npy").tolist()]
    how = f"precomputed {path}"
    if (path / "progress.json").is_file():
        done = int(json.loads((path / "progress.json").read_text())["done"])
        ids = ids[:done]
        how += f" (still being written: the first {done} documents)"

    def get(rows: np.ndarray) -> Any:
        return mvr.MultiVectors.from_arrays(
            [np.asarray(vectors[offsets[r] : offsets[r + 1]]) for r in rows.tolist()])

    return DocSource(ids, get, how)


def _table_path(vectors_dir: Path, side: str) -> Path | None:
    for p in (vectors_dir / f"{side}.zarr", vectors_dir / f"{side}.npz", vectors_dir / side):
        if p.exists():
            return p
    return None


def _encoder() -> Any:
    import encoders

    return encoders.load("default", progress=False)


def open_documents(dataset: Path, vectors_dir: Path) -> DocSource:
    import encoders

    path = _table_path(vectors_dir, "documents")
    if path is not None:
        try:
            if path.is_dir() and (path / "vectors.npy").is_file():
                src = _npy_dir_source(path)
                if src.ids:
                    return src
                raise ValueError("no document written yet")
            table = encoders.PrecomputedTable(path)
            return DocSource(table.ids, table.get, f"precomputed {path}")
        except Exception as e:  # half-written cache: encode instead
            log(f"{path}: unreadable ({type(e).__name__}: {e}); encoding the texts instead")
    from indexing import read_corpus

    corpus = list(read_corpus(dataset))
    ids, texts = [c[0] for c in corpus], [c[1] for c in corpus]
    enc = _encoder()
    return DocSource(ids, lambda rows: enc.encode_documents([texts[r] for r in rows.tolist()]),
                     "default encoder (encoded now)")


def open_queries(dataset: Path, vectors_dir: Path, split: str, n: int,
                 ) -> tuple[list[str], Any, dict[str, dict[str, int]] | None, str]:
    """The first ``n`` queries (judged ones where the split has qrels), their vectors,
    the qrels (or None) and where the vectors came from."""
    import encoders
    from indexing import load_beir

    qrels = None
    if (dataset / "qrels" / f"{split}.tsv").is_file():
        beir = load_beir(dataset, split)
        qrels, texts = beir.qrels, beir.queries
    else:
        texts = {}
        with open(dataset / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    texts[str(row["_id"])] = row.get("text", "")
    path = _table_path(vectors_dir, "queries")
    if path is not None:
        table = encoders.PrecomputedTable(path)
        have = set(table.ids)
        qids = [q for q in texts if q in have][:n]
        return qids, table.get(table.rows_of(qids)), qrels, f"precomputed {path}"
    qids = list(texts)[:n]
    return qids, _encoder().encode_queries([texts[q] for q in qids]), qrels, "default encoder"


def choose_rows(docs: DocSource, limit: int | None, qids: list[str],
                qrels: dict[str, dict[str, int]] | None) -> np.ndarray:
    n = len(docs.ids)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    row_of = {d: r for r, d in enumerate(docs.ids)}
    chosen: dict[int, None] = {}
    for q in qids:
        for d, grade in (qrels or {}).get(q, {}).items():
            if grade > 0 and d in row_of and len(chosen) < limit:
                chosen[row_of[d]] = None
    r = 0
    while len(chosen) < limit:
        chosen.setdefault(r, None)
        r += 1
    return np.array(sorted(chosen), dtype=np.int64)


def write_exchange(exchange: Path, docs: DocSource, rows: np.ndarray, queries: Any,
                   block: int = 2048) -> dict[str, Any]:
    """Pool the chosen documents (mvr's defaults) block by block into
    ``docs_vectors.npy`` (float16) + ``docs_offsets.npy``, and write the queries.

    Blocks go to part files first and are then copied into one memory-mapped array, so
    memory stays at one block whatever the corpus size.
    """
    from indexing import pool_tokens
    from mvr import PoolingConfig

    pooling = PoolingConfig()
    exchange.mkdir(parents=True, exist_ok=True)
    np.save(exchange / "queries_vectors.npy", np.asarray(queries.vectors))
    np.save(exchange / "queries_offsets.npy", np.asarray(queries.offsets, dtype=np.int64))
    (exchange / "docs_ids.json").write_text(json.dumps([docs.ids[r] for r in rows.tolist()]))
    parts, lengths, raw_tokens, t_pool, dim = [], [], 0, 0.0, 0
    for j, lo in enumerate(range(0, len(rows), block)):
        raw = docs.get(rows[lo : lo + block])
        raw_tokens += raw.total_tokens
        t = time.perf_counter()
        pooled = pool_tokens(raw, pooling)
        t_pool += time.perf_counter() - t
        part = exchange / f"part_{j:06d}.npy"
        np.save(part, np.asarray(pooled.vectors, dtype=np.float16))
        parts.append(part)
        lengths.append(pooled.lengths)
        dim = pooled.dim
        log(f"pooled {min(lo + block, len(rows))}/{len(rows)} documents")
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    vec = np.lib.format.open_memmap(exchange / "docs_vectors.npy", mode="w+", dtype=np.float16,
                                    shape=(int(offsets[-1]), dim))
    at = 0
    for part in parts:
        a = np.load(part, mmap_mode="r")
        vec[at : at + len(a)] = a
        at += len(a)
        part.unlink()
    vec.flush()
    del vec
    np.save(exchange / "docs_offsets.npy", offsets)
    return {"pooling": pooling.to_dict(), "raw_tokens": int(raw_tokens),
            "pooled_tokens": int(offsets[-1]), "pool_s": t_pool, "dim": dim}


# ---------------------------------------------------------------------- exhaustive MaxSim
def exchange_key(exchange: Path) -> str:
    """SHA-1 (16 hex digits) of the exchanged document and query arrays."""
    h = hashlib.sha1()
    for name in ("docs_offsets", "queries_offsets", "queries_vectors", "docs_vectors"):
        with open(exchange / f"{name}.npy", "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:16]


def exhaustive_top(exchange: Path, cache: Path, block: int = 4096) -> tuple[np.ndarray, float, bool]:
    """Top-``K`` rows per query by exact MaxSim over every exchanged document
    (``mvr.maxsim`` in blocks of documents; ties broken by the lower row), cached as
    ``exhaustive_top10.npy`` under ``cache``. Returns rows (n_queries, K), seconds, cached."""
    import mvr

    path = cache / f"exhaustive_top{K}.npy"
    if path.is_file():
        return np.load(path), 0.0, True
    dv, do = harness.load_ragged(exchange, "docs")
    qv, qo = harness.load_ragged(exchange, "queries")
    q = mvr.MultiVectors(np.asarray(qv, dtype=np.float32), qo)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(q), 0), dtype=np.int64)
    t = time.perf_counter()
    n = len(do) - 1
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        d = mvr.MultiVectors(np.asarray(dv[do[lo] : do[hi]]), do[lo : hi + 1] - do[lo])
        s = np.concatenate([best_s, mvr.maxsim(q, d)], axis=1)
        r = np.concatenate([best_r, np.broadcast_to(np.arange(lo, hi), (len(q), hi - lo))], axis=1)
        order = np.lexsort((r, -s), axis=1)[:, :K]  # score desc, then row asc
        best_s, best_r = np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1)
    seconds = time.perf_counter() - t
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, best_r)
    np.save(cache / f"exhaustive_top{K}_scores.npy", best_s)
    return best_r, seconds, False


# ---------------------------------------------------------------------- mvr as an engine
class MvrEngine(harness.Engine):
    """mvr: ``indexing.build_index`` of ``(id, float16 vectors)`` at the default
    ``IndexConfig`` with ``pool_factor=1`` (already pooled), ``serving.Searcher.open``
    (``mode`` from ``MVR_BENCH_MODE``, default memory), ``search(candidates=N)`` and,
    where the index has the approximate stage, ``rerank_candidates=``; the index's own
    defaults are one of the points."""

    name = "mvr"
    # first-stage candidates N (indexes without an approximate stage)
    CANDIDATES = (10, 20, 50, 100, 200, 400, 800)
    # (candidates N, rerank_candidates) where Searcher.search has ``rerank_candidates``
    # (the approximate MaxSim keeps that many of N for the exact re-rank; equal = skip it)
    TWO_STAGE = ((200, 20), (500, 50), (1000, 100), (2000, 200), (4000, 400),
                 (100, 100), (200, 200), (400, 400))
    # with token lists (format 3): (N, token_candidates, rerank_candidates); 0 = no lists
    THREE = ((100, 100, 20), (200, 200, 20), (200, 200, 50), (500, 500, 50), (1000, 1000, 100),
             (100, 0, 100), (400, 0, 400))

    def build(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        from indexing import build_index
        from mvr import IndexConfig, PoolingConfig

        changes = json.loads(os.environ.get("MVR_BENCH_CONFIG", "{}"))
        cfg = dataclasses.replace(IndexConfig(**changes), pooling=PoolingConfig(pool_factor=1))
        m = build_index(index, _ExchangedDocs(exchange), None, cfg, progress=False)
        return {"config": m["config"], "counts": m.get("counts"),
                "build_timings": m.get("build_timings"),
                "writer_version": m.get("writer_version"), "format_version": m.get("format_version")}

    def open(self, index: Path, exchange: Path, threads: int) -> dict[str, Any]:
        import mvr
        from serving import Searcher

        self.mv = mvr.MultiVectors
        mode = os.environ.get("MVR_BENCH_MODE", "memory")
        self.s = Searcher.open(index, mode=mode)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        ids = json.loads((exchange / "docs_ids.json").read_text())
        self.row_of = {d: r for r, d in enumerate(ids)}
        import inspect

        self.two_stage = "rerank_candidates" in inspect.signature(self.s.search).parameters
        self.defaults = {"candidates": self.s.config.default_candidates}
        if self.two_stage:
            self.defaults["rerank_candidates"] = getattr(self.s.config, "default_rerank", None)
        return {"mode": mode, "index_defaults": self.defaults,
                "first_stage": self.s.config.first_stage.to_dict()}

    def points(self, n_docs: int, query_tokens: int) -> list[dict[str, Any]]:
        cap = max(n_docs, K)
        if not self.two_stage:
            return [{"candidates": c} for c in sorted({min(c, cap) for c in self.CANDIDATES})]
        if getattr(self.s, "_tokens", None) is not None:
            triples = list(self.THREE) + [(self.defaults["candidates"],
                                           self.s.config.token_candidates,
                                           self.defaults["rerank_candidates"])]
            capped3 = sorted({(min(c, cap), min(t, cap), min(r, c + t, cap)) for c, t, r in triples})
            return [{"candidates": c, "token_candidates": t, "rerank_candidates": r}
                    for c, t, r in capped3]
        pairs = list(self.TWO_STAGE)
        if self.defaults.get("rerank_candidates") is not None:  # the index's own default
            pairs.append((self.defaults["candidates"], self.defaults["rerank_candidates"]))
        capped = sorted({(min(c, cap), min(r, c, cap)) for c, r in pairs})
        return [{"candidates": c, "rerank_candidates": r} for c, r in capped]

    def prepare(self, queries: list[np.ndarray]) -> Any:
        return self.mv.from_arrays(queries)

    def search(self, batch: Any, k: int, point: dict[str, Any]) -> list[list[int]]:
        point = dict(point)
        if "token_candidates" in point:  # a search-time config field, not a search argument
            t = point.pop("token_candidates")
            if self.s.config.token_candidates != t:
                self.s.config = dataclasses.replace(self.s.config, token_candidates=t)
        res = self.s.search(batch, k=k, **point)
        return [[self.row_of[d] for d in ids] for ids in res.ids]


class _ExchangedDocs:
    """The exchanged pooled documents as ``(id, float16 vectors)`` pairs, block by block."""

    def __init__(self, exchange: Path) -> None:
        self.ids = json.loads((exchange / "docs_ids.json").read_text())
        self.vectors, self.offsets = harness.load_ragged(exchange, "docs")

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for lo in range(0, len(self.ids), 4096):
            hi = min(lo + 4096, len(self.ids))
            arrays = harness.split(self.vectors, self.offsets, lo, hi, dtype=np.float16)
            yield from zip(self.ids[lo:hi], arrays, strict=True)


def mvr_child(argv: list[str]) -> None:
    """``bench_peers.py _mvr build|serve ...``: the mvr side of ``peers_runner.main``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["build", "serve"])
    ap.add_argument("--exchange", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--min-calls", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    engine = MvrEngine()
    try:
        if args.what == "build":
            result = harness.build(engine, args.index, args.exchange, args.threads)
        else:
            result = harness.serve(engine, args.index, args.exchange, args.threads,
                                   [int(b) for b in args.batches.split(",")], args.min_calls)
    except Exception as e:  # reported to the parent as a measured failure
        import traceback

        result = {"engine": "mvr", "error": f"{type(e).__name__}: {e}",
                  "traceback": traceback.format_exc(), "peak_rss_mb": harness.peak_rss_mb()}
    args.out.write_text(json.dumps(result))
    sys.exit(0 if "error" not in result else 1)


# ---------------------------------------------------------------------- children
def child_env(threads: int, peers: bool) -> dict[str, str]:
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    if peers:  # nothing of the project venv may leak into the peers' interpreter
        for v in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(v, None)
        env["PYTHONNOUSERSITE"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, even on a machine with a GPU
        env["PATH"] = str(Path(ROOT / ".venv-peers" / "bin")) + os.pathsep + env.get("PATH", "")
    return env


def run_child(engine: str, what: str, args: argparse.Namespace, work: Path, threads: int,
              ) -> dict[str, Any]:
    """Run one build or serving child; its JSON, or the failure as a result."""
    out = work / f"{engine}-{what}-{threads}.json"
    common = ["--exchange", str(work / "exchange"), "--index", str(work / engine),
              "--threads", str(threads), "--batches", args.batches,
              "--min-calls", str(args.min_calls), "--out", str(out)]
    if engine in MVR_VARIANTS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_mvr", what, *common]
    else:
        if not Path(args.peers_python).is_file():
            return {"engine": engine, "error": f"{args.peers_python} not found: run `make bench-peers`"}
        cmd = [args.peers_python, str(ROOT / "scripts" / "peers_runner.py"), what,
               "--engine", engine, *common]
    env = child_env(threads, engine not in MVR_VARIANTS)
    if engine in MVR_VARIANTS:
        env["MVR_BENCH_MODE"] = args.mvr_mode
        env["MVR_BENCH_CONFIG"] = json.dumps(MVR_VARIANTS[engine])
    log(f"{engine} {what}, {threads} thread(s)")
    t = time.perf_counter()
    log_path = out.with_suffix(".log")  # the child's stdout + stderr (tail -f to follow)
    try:
        with open(log_path, "w") as log_file:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log_file,
                                  stderr=subprocess.STDOUT, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "error": f"timed out after {args.timeout} s",
                "stderr": log_path.read_text(errors="replace")[-3000:]}
    wall = time.perf_counter() - t
    tail = log_path.read_text(errors="replace")[-3000:]
    if out.is_file():
        result = json.loads(out.read_text())
    else:
        status = f"exit status {proc.returncode}"
        if proc.returncode < 0:  # SIGKILL from the OOM killer, most likely
            status += f" (killed by signal {-proc.returncode})"
        result = {"engine": engine, "error": status, "stderr": tail}
    if "error" in result:
        log(f"{engine} {what} failed: {result['error']}")
        result.setdefault("stderr", tail)
    result["child_wall_s"] = wall
    return result


# ---------------------------------------------------------------------- metrics
def recall_vs(rows: list[list[int]], exhaustive: np.ndarray) -> float:
    """Mean |top-K ∩ exhaustive top-K| / K."""
    return float(np.mean([len(set(r[:K]) & set(e.tolist())) / K
                          for r, e in zip(rows, exhaustive, strict=True)]))


def ndcg10(rows: list[list[int]], qids: list[str], doc_ids: list[str],
           qrels: dict[str, dict[str, int]] | None) -> float | None:
    """Mean nDCG@10 (pytrec_eval) over the judged queries; 0 for a query with no results."""
    if not qrels:
        return None
    import pytrec_eval

    run = {q: {doc_ids[r]: float(K - i) for i, r in enumerate(rs[:K])}
           for q, rs in zip(qids, rows, strict=True) if q in qrels and rs}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([per_query.get(q, {}).get("ndcg_cut_10", 0.0) for q in qrels]))


def subset_qrels(qrels: dict[str, dict[str, int]] | None, qids: list[str],
                 doc_ids: list[str]) -> dict[str, dict[str, int]] | None:
    """The chosen queries' judgments on the chosen documents (queries left with no
    relevant document are dropped)."""
    if qrels is None:
        return None
    have = set(doc_ids)
    out = {}
    for q in qids:
        j = {d: g for d, g in qrels.get(q, {}).items() if d in have}
        if any(g > 0 for g in j.values()):
            out[q] = j
    return out


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pareto frontier of ``(recall, p50)``: each point is the fastest way to reach at
    least its recall. Sorted by recall (and so by p50)."""
    best: list[tuple[float, float]] = []
    for rec, ms in sorted(points, key=lambda x: (-x[0], x[1])):
        if not best or ms < best[-1][1]:
            best.append((rec, ms))
    return best[::-1]


def p50_at(points: list[tuple[float, float]], recall: float) -> float | None:
    """p50 needed to reach ``recall``, linear along the frontier; None when out of reach."""
    f = frontier(points)
    if not f or recall > f[-1][0] + 1e-9:
        return None
    if recall <= f[0][0]:
        return f[0][1]
    for (r0, m0), (r1, m1) in zip(f, f[1:], strict=False):
        if r0 <= recall <= r1:
            return m0 + (m1 - m0) * (recall - r0) / (r1 - r0) if r1 > r0 else m1
    return f[-1][1]


# ---------------------------------------------------------------------- report
def summarise(results: dict[str, Any], exhaustive: np.ndarray, qids: list[str],
              doc_ids: list[str], qrels: dict[str, dict[str, int]] | None) -> list[dict[str, Any]]:
    """One row per (engine, threads, point, batch), raw result rows dropped."""
    rows = []
    for engine, res in results.items():
        build = res["build"]
        for threads, serve in res["serve"].items():
            if "error" in serve:
                rows.append({"engine": engine, "threads": int(threads), "error": serve["error"]})
                continue
            for point in serve["points"]:
                if "error" in point:
                    rows.append({"engine": engine, "threads": int(threads),
                                 "params": point["params"], "error": point["error"]})
                for b, m in point["batches"].items():
                    got = m.pop("rows")
                    rows.append({
                        "engine": engine, "threads": int(threads), "batch": int(b),
                        "params": point["params"], "p50_ms": m["p50_ms"], "p95_ms": m["p95_ms"],
                        "mean_ms": m["mean_ms"], "calls": m["calls"],
                        "recall10_vs_exhaustive": recall_vs(got, exhaustive),
                        "ndcg10": ndcg10(got, qids, doc_ids, qrels),
                        "index_bytes": build.get("bytes"), "build_s": build.get("build_s"),
                        "serving_peak_rss_mb": serve["peak_rss_mb"], "open_s": serve["open_s"],
                    })
    return rows


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_tables(rows: list[dict[str, Any]], results: dict[str, Any], exhaustive_ndcg: float | None,
                 ) -> None:
    print("\n| engine | threads | batch | operating point | p50 ms/query | p95 ms/query | "
          "Recall@10 vs exhaustive | nDCG@10 | serving peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| exhaustive MaxSim | - | - | - | - | - | 1.000 | {_fmt(exhaustive_ndcg, '.4f')} | - |")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        if "error" in r:
            print(f"| {r['engine']} | {r['threads']} | - | {params} | failed: {r['error'][:80]} "
                  "| | | | |")
            continue
        print(f"| {r['engine']} | {r['threads']} | {r['batch']} | {params} | {r['p50_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['recall10_vs_exhaustive']:.3f} | {_fmt(r['ndcg10'], '.4f')} | "
              f"{r['serving_peak_rss_mb']:.0f} |")
    print("\n| engine | index MB on disk | files | build s (wall) | build CPU s | build peak RSS MB "
          "| build threads | open s (1 thread) |")
    print("|---|---|---|---|---|---|---|---|")
    for engine, res in results.items():
        b = res["build"]
        if "error" in b:
            print(f"| {engine} | failed: {b['error'][:100]} | | | | | | |")
            continue
        open_s = next((s.get("open_s") for s in res["serve"].values() if "open_s" in s), None)
        print(f"| {engine} | {b['bytes'] / 1e6:.1f} | {b['files']} | {b['build_s']:.1f} | "
              f"{b['build_cpu_s']:.1f} | {b['peak_rss_mb']:.0f} | {b['threads']} | "
              f"{_fmt(open_s, '.2f')} |")


def compare(rows: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    """The issue's comparison, for each mvr variant: at equal Recall@10 vs exhaustive
    (batch 1, 1 thread), its p50 over the best peer's; index bytes and build time over the
    best peer's."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if "error" not in r and r["batch"] == 1 and r["threads"] == 1:
            curves.setdefault(r["engine"], []).append((r["recall10_vs_exhaustive"], r["p50_ms"]))
    mine = [e for e in curves if e in MVR_VARIANTS]
    peers = [e for e in curves if e not in MVR_VARIANTS]
    # the fixed levels, and every engine's own frontier points (floored to 3 places, so that
    # a point's own recall is in its reach): where a peer is fast at low recall shows too
    targets = sorted({0.8, 0.9, 0.95, 0.99}
                     | {math.floor(x[0] * 1000) / 1000 for e in curves for x in frontier(curves[e])})
    table = []
    for t in targets:
        entry: dict[str, Any] = {"recall": t}
        for e in mine + peers:
            entry[e] = p50_at(curves[e], t)
        reach = [(entry[p], p) for p in peers if entry[p] is not None]
        entry["best_peer"] = min(reach)[1] if reach else None
        for e in mine:
            entry[f"{e}_ratio"] = (entry[e] / min(reach)[0] if reach and entry[e] is not None
                                   and min(reach)[0] > 0 else None)
        table.append(entry)
    out: dict[str, Any] = {"at_equal_recall": table}
    print("\n**At equal Recall@10 vs exhaustive** (p50 ms/query, batch 1, 1 thread; linear "
          "along each engine's Pareto frontier; '-' = not reached):\n")
    head = ["Recall@10 vs exhaustive", *mine, *peers, "best peer", *(f"{e} / best peer" for e in mine)]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for e in table:
        cells = [f"{e['recall']:.3f}", *(_fmt(e[m], ".2f") for m in mine + peers),
                 e["best_peer"] or "-", *(_fmt(e[f"{m}_ratio"], ".2f") for m in mine)]
        print("| " + " | ".join(cells) + " |")
    built = {e: r["build"] for e, r in results.items() if "error" not in r["build"]}
    peer_built = {e: b for e, b in built.items() if e not in MVR_VARIANTS}
    if peer_built:
        small = min(peer_built, key=lambda e: peer_built[e]["bytes"])
        fast = min(peer_built, key=lambda e: peer_built[e]["build_s"])
        for e in (m for m in MVR_VARIANTS if m in built):
            out.setdefault("index_bytes_ratio", {})[e] = {
                "vs": small, "ratio": built[e]["bytes"] / peer_built[small]["bytes"]}
            out.setdefault("build_time_ratio", {})[e] = {
                "vs": fast, "ratio": built[e]["build_s"] / peer_built[fast]["build_s"]}
            print(f"\nindex bytes: {e} {built[e]['bytes'] / 1e6:.1f} MB / smallest peer ({small}) "
                  f"{peer_built[small]['bytes'] / 1e6:.1f} MB = "
                  f"{out['index_bytes_ratio'][e]['ratio']:.2f}x")
            print(f"build time: {e} {built[e]['build_s']:.1f} s / fastest peer ({fast}) "
                  f"{peer_built[fast]['build_s']:.1f} s = {out['build_time_ratio'][e]['ratio']:.2f}x")
    return out


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for engine in ENGINES:
        pts = sorted((r["recall10_vs_exhaustive"], r["p50_ms"]) for r in rows
                     if r["engine"] == engine and "error" not in r and r["batch"] == 1
                     and r["threads"] == 1)
        if pts:  # every point, and a line through the engine's Pareto frontier
            front = frontier(pts)
            line, = ax.plot([p[0] for p in front], [p[1] for p in front], marker="o", label=engine)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, color=line.get_color(),
                       alpha=0.5)
    ax.set_xlabel("Recall@10 vs exhaustive MaxSim (same pooled vectors)")
    ax.set_ylabel("p50 latency, ms/query (batch 1, 1 thread)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------- main
def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_mvr":
        mvr_child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="BEIR directory (corpus, queries[, qrels])")
    ap.add_argument("--limit", type=int, default=None, help="documents (default: all)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--split", default="test")
    ap.add_argument("--vectors", type=Path, default=None,
                    help="precomputed vectors (default .cache/vectors/NAME)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--min-calls", type=int, default=10, help="calls per point at batch > 1")
    ap.add_argument("--mvr-mode", default="memory", choices=["memory", "mmap", "ssd"])
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--work", type=Path, default=None, help="parent of the temp directory")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per child")
    ap.add_argument("--out", type=Path, default=None, help="default runs/peers_NAME.json")
    ap.add_argument("--plot", type=Path, default=None, help="default docs/plots/peers_NAME.png")
    args = ap.parse_args()
    name = args.dataset.resolve().name
    vectors_dir = args.vectors or ROOT / ".cache" / "vectors" / name
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    threads = sorted({int(t) for t in args.threads.split(",")})
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"--engines: expected some of {ENGINES}, got {sorted(unknown)}")

    qids, queries, qrels, q_how = open_queries(args.dataset, vectors_dir, args.split, args.queries)
    docs = open_documents(args.dataset, vectors_dir)
    rows_chosen = choose_rows(docs, args.limit, qids, qrels)
    log(f"{name}: {len(rows_chosen)} documents ({docs.how}), {len(qids)} queries ({q_how})")
    work = Path(tempfile.mkdtemp(prefix=f"bench_peers_{name}_", dir=args.work))
    try:
        data = write_exchange(work / "exchange", docs, rows_chosen, queries)
        doc_ids = json.loads((work / "exchange" / "docs_ids.json").read_text())
        key = exchange_key(work / "exchange")
        cache = ROOT / ".cache" / "peers" / f"{name}-{key}"
        exhaustive, ex_s, cached = exhaustive_top(work / "exchange", cache)
        log(f"exhaustive MaxSim: {'cached' if cached else f'{ex_s:.1f} s'} ({cache})")
        qrels_used = subset_qrels(qrels, qids, doc_ids) if args.limit else (
            {q: qrels[q] for q in qids if q in qrels} if qrels else None)
        results: dict[str, Any] = {}
        for engine in engines:
            build = run_child(engine, "build", args, work, max(threads))
            serve = {} if "error" in build else {
                str(t): run_child(engine, "serve", args, work, t) for t in threads}
            results[engine] = {"build": build, "serve": serve}
            shutil.rmtree(work / engine, ignore_errors=True)  # disk: one index at a time
        rows = summarise(results, exhaustive, qids, doc_ids, qrels_used)
        ex_ndcg = ndcg10([r.tolist() for r in exhaustive], qids, doc_ids, qrels_used)
        title = (f"{name}: {len(doc_ids)} docs, {data['pooled_tokens']} pooled tokens, "
                 f"{len(qids)} queries")
        print(f"\n### {title}\n")
        print_tables(rows, results, ex_ndcg)
        comparison = compare(rows, results)
        plot_path = args.plot or ROOT / "docs" / "plots" / f"peers_{name}.png"
        plot(rows, plot_path, title)
        out = args.out or ROOT / "runs" / f"peers_{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "dataset": str(args.dataset), "name": name, "documents": len(doc_ids),
            "queries": len(qids), "judged_queries": len(qrels_used) if qrels_used else 0,
            "vectors": {"documents": docs.how, "queries": q_how}, **data,
            "exhaustive": {"cache": str(cache), "seconds": ex_s, "cached": cached,
                           "ndcg10": ex_ndcg},
            "command": " ".join(sys.argv), "threads": threads, "batches": args.batches,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "loadavg": os.getloadavg()},
            "results": results, "rows": rows, "comparison": comparison,
            "plot": str(plot_path),
        }
        out.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nJSON: {out}\nplot: {plot_path}")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Compare compact first stages on real vectors: candidate recall vs N, RAM, latency.

For a precomputed-vectors table (``scripts/encode_corpus.py`` / ``encode_stream.py``),
documents are pooled as the index does (``pool_factor=2``), FDE-encoded with the
default :class:`mvr.FDEConfig`, and each first-stage option (a faiss factory string) is
trained and filled with those FDEs. For every query, the exhaustive MaxSim top-10 over
the pooled vectors is the reference; printed per option: bytes per document in RAM,
candidate recall@N (share of the reference top-10 inside the first stage's top N),
the end-to-end Recall@10 after the approximate centroid stage (N -> ``--rerank`` ->
exact MaxSim), and the first stage's p50 ms per query (1 thread, batch 1)::

    .venv/bin/python scripts/eval_first_stage.py .cache/vectors/scifact --queries 300
    .venv/bin/python scripts/eval_first_stage.py .cache/vectors/pypi --limit 50000 --queries 500

Results go to EVALUATION.md ("Compact first stage").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

import encoders  # noqa: E402
import mvr  # noqa: E402
from indexing import pool_tokens  # noqa: E402
from mvr._approx import centroid_scores, query_centroid_similarities  # noqa: E402
from mvr._codec import TokenCodec  # noqa: E402

NS = (100, 200, 500, 1000, 2000, 4000)


def _table(path: Path, side: str) -> Path:
    for cand in (path / f"{side}.zarr", path / side):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"{path}: no {side} table")


def load(path: Path, limit: int | None, n_queries: int) -> tuple[mvr.MultiVectors, mvr.MultiVectors]:
    _, docs, _, _ = encoders.read_precomputed(_table(path, "documents"))
    if limit is not None and limit < len(docs):
        docs = docs[:limit]
    _, queries, _, _ = encoders.read_precomputed(_table(path, "queries"))
    queries = queries[: min(n_queries, len(queries))]
    return docs, queries


def pooled_docs(docs: mvr.MultiVectors, chunk: int = 4096) -> mvr.MultiVectors:
    parts = []
    for lo in range(0, len(docs), chunk):
        parts.append(pool_tokens(docs[lo : lo + chunk].astype(np.float32), pool_factor=2))
    vec = np.concatenate([p.vectors for p in parts]).astype(np.float16)
    lens = np.concatenate([p.lengths for p in parts])
    off = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    return mvr.MultiVectors(vec, off)


def exhaustive_top10(q: mvr.MultiVectors, d: mvr.MultiVectors, block: int = 8192) -> np.ndarray:
    best = np.full((len(q), 0), -np.inf, np.float32)
    rows = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(d), block):
        s = mvr.maxsim(q, d[lo : lo + block])
        best = np.concatenate([best, s], 1)
        rows = np.concatenate([rows, np.broadcast_to(np.arange(lo, lo + s.shape[1]), s.shape)], 1)
        keep = np.argsort(-best, axis=1, kind="stable")[:, :10]
        best = np.take_along_axis(best, keep, 1)
        rows = np.take_along_axis(rows, keep, 1)
    return rows


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("vectors", type=Path)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rerank", type=int, default=100)
    ap.add_argument("--options", nargs="*", default=None,
                    help="factory=nprobe pairs, e.g. 'IVF{nlist},PQ{m}x4fs:8=0.05'")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    docs, queries = load(args.vectors, args.limit, args.queries)
    cache = ROOT / ".cache" / "eval_first_stage" / f"{args.vectors.name}-{len(docs)}-{len(queries)}"
    cache.mkdir(parents=True, exist_ok=True)
    cfg = mvr.FDEConfig(dim=docs.dim)
    qcfg = mvr.FDEConfig(dim=docs.dim, fill_empty_partitions=False)
    if (cache / "ref.npy").is_file():
        pooled = mvr.MultiVectors(np.load(cache / "pooled.npy"), np.load(cache / "offsets.npy"))
        fdes, ref = np.load(cache / "fdes.npy"), np.load(cache / "ref.npy")
    else:
        t = time.perf_counter()
        pooled = pooled_docs(docs)
        print(f"{len(pooled)} docs, {pooled.total_tokens} pooled tokens, pooled in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        t = time.perf_counter()
        fdes = np.concatenate([
            mvr.encode_document_fdes(pooled[lo : lo + 4096].astype(np.float32), cfg)
            for lo in range(0, len(pooled), 4096)]).astype(np.float32)
        print(f"FDEs {fdes.shape} in {time.perf_counter() - t:.0f} s", flush=True)
        ref = exhaustive_top10(queries.astype(np.float32), pooled)
        np.save(cache / "pooled.npy", pooled.vectors)
        np.save(cache / "offsets.npy", pooled.offsets)
        np.save(cache / "fdes.npy", fdes)
        np.save(cache / "ref.npy", ref)
    qf = np.asarray(mvr.encode_query_fdes(queries.astype(np.float32), qcfg), np.float32)
    sample = pooled.vectors[np.random.default_rng(0).choice(pooled.total_tokens,
                            min(131072, pooled.total_tokens), replace=False)]
    codec = TokenCodec.train(sample.astype(np.float32), dtype="res4", num_centroids=4096)
    cids, _ = codec.encode(pooled.vectors.astype(np.float32))
    st = query_centroid_similarities(queries.vectors.astype(np.float32), codec.centroids)
    n = len(pooled)
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    options = args.options or [
        "Flat=0", "PQ{m}x4fs:32=0", "IVF{nlist},PQ{m}x4fs:32=0.03", "IVF{nlist},PQ{m}x4fs:32=0.1",
        "IVF{nlist},PQ{m}x4fs:16=0.03", "IVF{nlist},PQ{m}x4fs:16=0.1",
    ]
    results = []
    for opt in options:
        spec, frac = opt.rsplit("=", 1)
        factory, _, group = spec.partition(":")
        m = fdes.shape[1] // int(group or 8)
        fstr = factory.format(nlist=nlist, m=m)
        t = time.perf_counter()
        index = faiss.index_factory(fdes.shape[1], fstr, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            train = fdes[np.random.default_rng(0).choice(n, min(n, 20000), replace=False)]
            index.train(train)
        index.add(fdes)
        build = time.perf_counter() - t
        nbytes = faiss.serialize_index(index).nbytes
        params = None
        try:
            ivf = faiss.extract_index_ivf(index)
            params = faiss.SearchParametersIVF()
            params.nprobe = max(1, int(round(float(frac) * ivf.nlist)))
        except RuntimeError:
            ivf = None
        nmax = min(max(NS), n)
        lat = []
        rows_all = np.zeros((len(queries), nmax), np.int64)
        with threadpool_limits(1):
            faiss.omp_set_num_threads(1)
            for i in range(len(queries)):
                t0 = time.perf_counter()
                if params is None:
                    _, r = index.search(qf[i : i + 1], nmax)
                else:
                    _, r = index.search(qf[i : i + 1], nmax, params=params)
                lat.append(time.perf_counter() - t0)
                rows_all[i] = r[0]
        faiss.omp_set_num_threads(2)
        rec = {}
        for N in NS:
            if N > n:
                continue
            hit = [len(set(ref[i]) & set(rows_all[i, :N].tolist())) / 10 for i in range(len(queries))]
            rec[N] = float(np.mean(hit))
        e2e = {}
        for N in (1000, 2000, 4000):
            if N > n:
                continue
            sc = centroid_scores(st, queries.offsets, rows_all[:, :N], np.asarray(pooled.offsets), cids)
            top = np.take_along_axis(rows_all[:, :N], np.argsort(-sc, axis=1)[:, : args.rerank], 1)
            hits = []
            for i in range(len(queries)):
                cand = top[i][top[i] >= 0]
                s = mvr.maxsim(queries[i : i + 1].astype(np.float32), pooled[cand].astype(np.float32))[0]
                best = cand[np.argsort(-s, kind="stable")[:10]]
                hits.append(len(set(best.tolist()) & set(ref[i].tolist())) / 10)
            e2e[N] = float(np.mean(hits))
        row = {"factory": fstr, "nprobe": getattr(params, "nprobe", None), "bytes_per_doc": nbytes / n,
               "build_s": build, "p50_ms": 1e3 * float(np.median(lat)), "recall_at_N": rec,
               "e2e_recall10": e2e}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Where candidates are lost on PyPI, stage by stage (EVALUATION.md, "PyPI 10k").

For an index built by ``scripts/bench_scale.py`` from the first N documents of a precomputed
PyPI table: candidate recall of the exhaustive top-10 (exact MaxSim over the pooled float16
vectors) in the FDE first stage's top N, in the centroid inverted lists' top N (WARP-style,
2/4/8 centroids probed per query token), in their union, after the approximate centroid cut,
and end to end (exact MaxSim over the index's records)::

    .venv/bin/python scripts/eval_candidates.py 10000 300 \
        --index runs/scale/pypi-10000.mvr --vectors .cache/vectors/pypi30k
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import encoders, mvr, serving  # noqa: E402,E401
from indexing import pool_tokens  # noqa: E402
from mvr._approx import (  # noqa: E402
    centroid_candidates, centroid_lists, centroid_scores, query_centroid_similarities,
)
from serving._first_stage import top_n  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("n_docs", type=int)
ap.add_argument("n_queries", type=int, nargs="?", default=300)
ap.add_argument("--index", type=Path, required=True)
ap.add_argument("--vectors", type=Path, required=True)
args = ap.parse_args()
N_DOCS, NQ, idx, vec = args.n_docs, args.n_queries, str(args.index), str(args.vectors)

s = serving.Searcher.open(idx, mode='memory')
_, queries, _, _ = encoders.read_precomputed(vec + '/queries.zarr')
queries = queries[:NQ].astype(np.float32)
table = encoders._precomputed.PrecomputedTable(vec + '/documents')
t = time.time()
docs = pool_tokens(table.get(np.arange(N_DOCS)).astype(np.float32), pool_factor=2).astype(np.float16)
ex = np.asarray(mvr.maxsim(queries, docs))  # (nq, n_docs)
print('exhaustive', ex.shape, time.time() - t, flush=True)
vid = np.load(vec + '/documents/ids.npy')[:N_DOCS]
row_of = {d: i for i, d in enumerate(s.ids)}
perm = np.array([row_of[str(d)] for d in vid])  # vector row -> index row
exi = np.empty_like(ex); exi[:, perm] = ex       # exhaustive scores in index row order
top10 = np.argsort(-exi, axis=1)[:, :10]
s10 = np.take_along_axis(exi, top10, 1)[:, -1]
nties = ((exi >= s10[:, None] - 1e-5).sum(1) > 10).mean()
print('queries with ties at the 10th', nties)

def recall(rows):  # rows (nq, n) index rows; strict and tie-aware recall@10 of final top-10 (rows ordered best first)
    strict = np.mean([len(set(r[:10].tolist()) & set(top10[i].tolist())) / 10 for i, r in enumerate(rows)])
    tie = np.mean([(exi[i, r[:10][r[:10] >= 0]] >= s10[i] - 1e-5).sum() / 10 for i, r in enumerate(rows)])
    return strict, tie

def cand_recall(rows):
    return np.mean([len(set(r.tolist()) & set(top10[i].tolist())) / 10 for i, r in enumerate(rows)])

# exact over res4 for all docs
all_rows = np.broadcast_to(np.arange(N_DOCS), (NQ, N_DOCS))
q_mv = s._query_vectors(queries)
exact_all = s._rerank_rows(q_mv, np.ascontiguousarray(all_rows), 10, {})
rows_all = np.array([[row_of[d] for d in ids] for ids in exact_all.ids])
print('res4 exact over all: strict %.3f tie %.3f' % recall(rows_all), flush=True)

qf = s._query_fdes(q_mv)
_, fs = s._first_stage(qf, 2000)
for n in (500, 1000, 2000):
    print('FDE N=%d cand recall %.3f' % (n, cand_recall(fs[:, :n])))
off, ivd = centroid_lists(s._cids, s._tok_starts, s.codec.num_centroids)
print('postings', ivd.size, 'docs', N_DOCS)
st = query_centroid_similarities(q_mv.vectors, s.codec.centroids)
for nprobe in (2, 4, 8):
    t0 = time.perf_counter()
    wc = centroid_candidates(st, q_mv.offsets, off, ivd, N_DOCS, 2000, nprobe)
    ms = 1e3 * (time.perf_counter() - t0) / NQ
    for n in (500, 1000, 2000):
        rows = [wc[i][:n][wc[i][:n] >= 0] for i in range(NQ)]
        un = [np.union1d(rows[i], fs[i, :n]) for i in range(NQ)]
        print('nprobe %d N=%d lists %.3f  union(FDE N) %.3f  ms/q %.2f' % (
            nprobe, n, cand_recall(rows), cand_recall(un), ms), flush=True)
        if n == 1000:
            L = max(len(u) for u in un)
            R = np.full((NQ, L), -1, np.int64)
            for i, u in enumerate(un): R[i, :len(u)] = u
            ap = centroid_scores(st, q_mv.offsets, R, s._tok_starts, s._cids)
            for n2 in (100, 200, 400):
                _, best = top_n(ap, n2, R)
                print('   approx cut %d cand recall %.3f' % (n2, cand_recall(best)), end='')
                r = s._rerank_rows(q_mv, best, 10, {})
                rr = np.array([[row_of[d] for d in ids] for ids in r.ids])
                print('  end2end strict %.3f tie %.3f' % recall(rr), flush=True)

"""Candidate stages at PyPI scale: the share of the exhaustive top-10 held by the union
of the FDE's and the token (or centroid) lists' candidates, and kept by the approximate
MaxSim's top 50, with each stage's time (EVALUATION.md "token-level candidates").

    .venv/bin/python scripts/eval_token_candidates.py 150
"""
import sys, time
from pathlib import Path

import numpy as np, faiss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import encoders, serving
from serving._token_candidates import TokenCandidates
from mvr._approx import query_centroid_similarities, scored_centroid_candidates, pq_scores, prepare_pq, union_rows
from serving._first_stage import top_n
faiss.omp_set_num_threads(1)
from threadpoolctl import threadpool_limits; threadpool_limits(1)
NQ = int(sys.argv[1])
_, queries, _, _ = encoders.read_precomputed(str(ROOT / ".cache/vectors/pypi/queries.zarr"))
queries = queries[:NQ].astype(np.float32)
ref = np.load(str(ROOT / "runs/scale700b/exhaustive-701912-500.npy"))[:NQ]
s = serving.Searcher.open(str(ROOT / "runs/scale700b/pypi-701912.mvr"), mode="ssd")
t = time.time()
tc = TokenCandidates.from_codes(s.codec.centroids, s.codec.approx_centroids, s._cids, s._acodes, s._tok_starts)
print("tc build", time.time() - t, flush=True)
from mvr._approx import centroid_lists
L = centroid_lists(s._cids, s._tok_starts, s.codec.num_centroids); tok, cids, ac = s._tok_starts, s._cids, s._acodes
def inset(rows, i): return len(set(rows[rows >= 0].tolist()) & set(ref[i].tolist())) / 10
cfgs = {"a fde2000+lists8/1000": (2000, "lists", 8, 0, 1000),
        "b fde2000+tc16/1000 n1000": (2000, "tc", 16, 1000, 1000),
        "c tc16/1000 n2000": (0, "tc", 16, 1000, 2000),
        "d fde2000+tc16/4000 n1000": (2000, "tc", 16, 4000, 1000),
        "e fde1000+tc16/1000 n1000": (1000, "tc", 16, 1000, 1000),
        "f tc32/2000 n3000": (0, "tc", 32, 2000, 3000)}
res, T = {}, {}
for i in range(NQ):
    q = queries[i:i+1]
    t0 = time.perf_counter()
    st = query_centroid_similarities(q.vectors, s.codec.centroids)
    prep = prepare_pq(st, s.codec.approx_tables(q.vectors), q.offsets)
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter(); qf = s._query_fdes(q); _, fs2000 = s._first_stage(qf, 2000); t_fde = time.perf_counter() - t0
    for name, (nf, kind, nprobe, kp, n) in cfgs.items():
        tt = {"prep": t_prep}
        t0 = time.perf_counter()
        if kind == "lists":
            extra, _ = scored_centroid_candidates(st, q.offsets, L[0], L[1], len(s.ids), n, nprobe)
        else:
            extra, _ = tc.search(q.vectors, st, q.offsets, n, nprobe, kp)
        tt["cand"] = time.perf_counter() - t0
        rows = union_rows(fs2000[:, :nf], extra) if nf else extra
        tt["fde"] = t_fde if nf else 0
        t0 = time.perf_counter()
        ps = pq_scores(st, None, q.offsets, rows, tok, cids, ac, prep)
        _, t3 = top_n(ps, 50, rows)
        tt["pq"] = time.perf_counter() - t0
        res.setdefault(name, []).append((inset(rows[0], i), inset(t3[0], i)))
        for k, v in tt.items(): T.setdefault(name, {}).setdefault(k, []).append(v)
for name in cfgs:
    r = np.array(res[name]).mean(0)
    tm = {k: round(1e3 * float(np.median(v)), 2) for k, v in T[name].items()}
    print(f"{name:28s} union {r[0]:.3f} top50 {r[1]:.3f} {tm} sum {sum(tm.values()):.1f}")

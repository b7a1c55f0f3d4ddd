"""How much of the exhaustive top-10 the approximate cut keeps, by approximate-code size.

Prototype behind EVALUATION.md "PyPI 701,912: approximate codes in the middle stage": on a
built index (res8 table, centroid lists), trains a residual PQ of M bytes on 200,000 decoded
tokens, encodes every token, then for each query takes the union of the FDE's top 2,000 and the
lists' top 1,000 and reports the share of the exhaustive top-10 (``--ref``) within the best N by
centroid-only and by refined approximate score::

    .venv/bin/python scripts/eval_approx_codes.py 64 --index runs/scale700/pypi-701912.mvr \
        --ref runs/scale700/exhaustive-701912-500.npy --vectors .cache/vectors/pypi
"""
import argparse, sys, time, os, numpy as np, faiss
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import encoders, serving
from mvr._approx import query_centroid_similarities, centroid_scores, centroid_candidates, union_rows
ap = argparse.ArgumentParser()
ap.add_argument("m", type=int, help="bytes per token (sub-quantizers)")
ap.add_argument("--index", default="runs/scale700/pypi-701912.mvr")
ap.add_argument("--ref", default="runs/scale700/exhaustive-701912-500.npy")
ap.add_argument("--vectors", default=".cache/vectors/pypi")
ap.add_argument("--queries", type=int, default=200)
args = ap.parse_args()
M, V, IDX = args.m, args.vectors, args.index
s = serving.Searcher.open(IDX, mode="ssd")
codec = s.codec; cids = s._cids; ntok = len(cids); d = s.dim
path = f"{IDX}/segments/seg-000001/tokens.bin"
assert os.path.getsize(path) == ntok * d, (os.path.getsize(path), ntok*d)
mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(ntok, d))
t=time.time()
rng = np.random.default_rng(0); samp = np.sort(rng.choice(ntok, 200_000, replace=False))
x = codec.decode(cids[samp], np.asarray(mm[samp])) - codec.centroids[cids[samp]]
print("residual norm mean", np.linalg.norm(x,axis=1).mean(), "token norm", np.linalg.norm(codec.decode(cids[samp[:1000]], np.asarray(mm[samp[:1000]])),axis=1).mean())
pq = faiss.IndexPQ(d, M, 8); pq.train(x); print("train", time.time()-t)
cache = f"{IDX}.acodes{M}.npy"  # beside the index: encoding takes minutes
if os.path.exists(cache): ac = np.load(cache)
else:
    ac = np.empty((ntok, M), np.uint8); CH=500_000
    for lo in range(0, ntok, CH):
        hi=min(lo+CH,ntok); r = codec.decode(cids[lo:hi], np.asarray(mm[lo:hi])) - codec.centroids[cids[lo:hi]]
        ac[lo:hi] = pq.sa_encode(r)
    np.save(cache, ac)
print("encoded", time.time()-t)
cb = faiss.vector_to_array(pq.pq.centroids).reshape(M, 256, d // M)
_, queries, _, _ = encoders.read_precomputed(V + "/queries.zarr")
NQ=args.queries
queries = queries[:NQ].astype(np.float32)
ref = np.load(args.ref)[:NQ]
import numba
@numba.njit(cache=True)
def pqs(st, lut, q_lo, q_hi, rows, tok_starts, cids, ac, out):
    nq=q_hi-q_lo; M=ac.shape[1]
    acc=np.empty(nq,np.float32); tmp=np.empty(nq,np.float32)
    for j in range(rows.shape[0]):
        r=rows[j]
        if r<0: out[j]=-np.inf; continue
        acc[:]=-np.inf
        for t in range(tok_starts[r], tok_starts[r+1]):
            c=cids[t]
            for a in range(nq): tmp[a]=st[c,q_lo+a]
            for m in range(M):
                code=ac[t,m]
                for a in range(nq): tmp[a]+=lut[m,code,q_lo+a]
            for a in range(nq):
                if tmp[a]>acc[a]: acc[a]=tmp[a]
        out[j]=acc.sum()
res={}
tim=[]
# session 4's centroid lists (an index opened at the session 5 defaults holds token lists instead)
from mvr._approx import centroid_lists  # noqa: E402

LISTS = s._lists if s._lists is not None else centroid_lists(cids, s._tok_starts, codec.num_centroids)
for i in range(NQ):
    q=queries[i:i+1]
    fs_scores, fs_rows = s._first_stage(s._query_fdes(q), 2000)
    st = query_centroid_similarities(q.vectors, codec.centroids)
    extra = centroid_candidates(st, q.offsets, LISTS[0], LISTS[1], len(s.ids), 1000, 8, None)
    rows = union_rows(fs_rows, extra)[0]
    truth=set(ref[i].tolist())
    res.setdefault("union",[]).append(len(truth & set(rows.tolist()))/10)
    c0 = centroid_scores(st, q.offsets, rows[None], s._tok_starts, cids)[0]
    qv=q.vectors.reshape(-1, M, d//M)
    lut = np.ascontiguousarray(np.einsum("amd,mkd->mka", qv, cb)).astype(np.float32)
    out=np.empty(len(rows),np.float32)
    t0=time.perf_counter(); pqs(st, lut, 0, qv.shape[0], rows, s._tok_starts, cids, ac, out); tim.append(time.perf_counter()-t0)
    for name, sc in (("cent", c0), ("pq", out)):
        order=rows[np.argsort(-sc)]
        for n2 in (10, 20, 30, 50, 100, 200, 400):
            res.setdefault(f"{name}{n2}",[]).append(len(truth & set(order[:n2].tolist()))/10)
print("M", M, "pq score ms p50", 1e3*np.median(tim[5:]), "cands", len(rows))
for k,v in res.items(): print(k, round(float(np.mean(v)),3))

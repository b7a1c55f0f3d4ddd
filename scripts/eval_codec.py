"""Quality of the re-ranking table encodings: exhaustive MaxSim over decoded vectors.

For a BEIR dataset with cached vectors (``scripts/encode_corpus.py``), the documents are
pooled as the index does (``pool_factor=2``), encoded with each table encoding, decoded
back, and every judged query is scored exhaustively against every document. Printed per
encoding: bytes per token of the record (pqr2 / pqr4 also need the 64-byte approximate code
held beside it), nDCG@10 (pytrec_eval, against the judgments) and its relative
change against float16, and Recall@10 against the float16 exhaustive top-10::

    .venv/bin/python scripts/eval_codec.py /work/shared/data/scifact .cache/vectors/scifact

Results go to EVALUATION.md ("Compact re-ranking table").
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

import pytrec_eval  # noqa: E402

import encoders  # noqa: E402
import mvr  # noqa: E402
from indexing import load_beir, pool_tokens  # noqa: E402
from mvr import IndexConfig  # noqa: E402
from mvr._codec import TokenCodec  # noqa: E402
from mvr.format import _encode_one, decode_record  # noqa: E402


def top100(q: mvr.MultiVectors, d: mvr.MultiVectors, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    best = np.full((len(q), 0), -np.inf, np.float32)
    rows = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(d), block):
        s = mvr.maxsim(q, d[lo : lo + block])
        best = np.concatenate([best, s], 1)
        rows = np.concatenate([rows, np.broadcast_to(np.arange(lo, lo + s.shape[1]), s.shape)], 1)
        keep = np.argsort(-best, axis=1, kind="stable")[:, :100]
        best, rows = np.take_along_axis(best, keep, 1), np.take_along_axis(rows, keep, 1)
    return best, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("vectors", type=Path)
    ap.add_argument("--centroids", type=int, default=4096)
    ap.add_argument("--niter", type=int, default=None,
                    help="k-means iterations of the codec (default: IndexConfig's)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    ds = load_beir(args.dataset, "test")
    ids, docs, _, _ = encoders.read_precomputed(args.vectors / "documents.zarr")
    qids, queries, _, _ = encoders.read_precomputed(args.vectors / "queries.zarr")
    pooled = mvr.MultiVectors.concat([pool_tokens(docs[lo : lo + 2048].astype(np.float32), pool_factor=2)
                                      for lo in range(0, len(docs), 2048)]).astype(np.float16)
    q = queries.astype(np.float32)
    x = pooled.vectors.astype(np.float32)
    sample = x[np.random.default_rng(0).choice(len(x), min(131_072, len(x)), replace=False)]
    tables: dict[str, np.ndarray] = {"float16": pooled.vectors}
    int8 = [decode_record(_encode_one(pooled[i], "int8"), len(pooled[i]), pooled.dim, "int8")
            for i in range(len(pooled))]
    tables["int8"] = np.concatenate(int8)
    niter = IndexConfig().codec_iterations if args.niter is None else args.niter
    train_s: dict[str, float] = {}
    for dtype in ("res8", "res4", "pqr2", "pqr4"):
        # every codec as the index trains it: with the 64 B approximate codes (the default
        # approx_pq); pqr2 / pqr4 code what those leave of the residual (format 4)
        t = time.perf_counter()
        codec = TokenCodec.train(sample, dtype=dtype, num_centroids=args.centroids,
                                 approx_pq=64, niter=niter)
        train_s[dtype] = time.perf_counter() - t
        cids, codes, acodes = codec.encode_full(x)
        tables[dtype] = codec.decode(cids, codes, acodes)
        if dtype == "res8":  # the approximate stage's view of a token: centroid + PQ code
            tables["approx"] = (codec.centroids[cids.astype(np.int64)]
                                + codec.approx.sa_decode(acodes))
    bpt = {"float16": 2 * pooled.dim, "int8": pooled.dim + 4, "res8": pooled.dim,
           "res4": pooled.dim // 2, "pqr2": pooled.dim // 4, "pqr4": pooled.dim // 2,
           "approx": 64}
    qrels = {k: {d: int(r) for d, r in v.items()} for k, v in ds.qrels.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"})
    out, ref_rows = {}, None
    for name, table in tables.items():
        scores, rows = top100(q, mvr.MultiVectors(table, pooled.offsets))
        if ref_rows is None:
            ref_rows = rows
        run = {qid: {ids[r]: float(s) for r, s in zip(rows[i], scores[i], strict=True)}
               for i, qid in enumerate(qids) if qid in qrels}
        nd = float(np.mean([v["ndcg_cut_10"] for v in evaluator.evaluate(run).values()]))
        rec = float(np.mean([len(set(rows[i, :10]) & set(ref_rows[i, :10])) / 10
                             for i in range(len(q))]))
        out[name] = {"bytes_per_token": bpt[name], "ndcg@10": nd, "recall10_vs_float16": rec,
                     "train_s": train_s.get(name)}
        print(f"{name}: nDCG@10 {nd:.4f}, Recall@10 vs float16 {rec:.3f}", flush=True)
    base = out["float16"]["ndcg@10"]
    print(f"\ncodec k-means iterations: {niter}, centroids {args.centroids}, "
          f"{len(sample):,} training tokens")
    print("| table | bytes/token | nDCG@10 | vs float16 | Recall@10 vs float16 exhaustive "
          "| codec training s |")
    print("|---|---|---|---|---|---|")
    for name, r in out.items():
        ts = "-" if r["train_s"] is None else f"{r['train_s']:.1f}"
        print(f"| {name} | {r['bytes_per_token']} | {r['ndcg@10']:.4f} | "
              f"{100 * (r['ndcg@10'] / base - 1):+.2f}% | {r['recall10_vs_float16']:.3f} | {ts} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

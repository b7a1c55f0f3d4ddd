"""Does re-normalising pooled cluster means help retrieval? Measured on SciFact (test).

Default-encoder token vectors cached by ``scripts/encode_corpus.py`` are pooled with
``pool_factor`` 2, once with ``normalize=True`` (unit-length cluster means) and once
with ``normalize=False`` (plain means, as PyLate), then every test query is scored
against every document by exact MaxSim (``mvr.maxsim``); nDCG@10 and Recall@100 by
ranx. Unpooled vectors are scored too, as the reference.

Usage::

    .venv/bin/python scripts/encode_corpus.py /work/shared/data/scifact --out .cache/vectors/scifact
    .venv/bin/python scripts/measure_pool_norm.py --vectors .cache/vectors/scifact

Prints a markdown table (copied into BENCHMARKS.md, section "Token pooling"); the
better setting is the default of ``mvr.PoolingConfig.normalize``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ranx import Qrels, Run, evaluate  # noqa: E402
from scipy.stats import ttest_rel  # noqa: E402

import encoders  # noqa: E402
from indexing import pool_tokens  # noqa: E402
from indexing.corpus import load_beir  # noqa: E402
from mvr import MultiVectors, maxsim  # noqa: E402


def run_of(scores: np.ndarray, query_ids: list[str], doc_ids: list[str], k: int) -> Run:
    """Top-``k`` documents per query from a (n_queries, n_docs) score matrix."""
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return Run(
        {
            qid: {doc_ids[j]: float(scores[i, j]) for j in top[i]}
            for i, qid in enumerate(query_ids)
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vectors", type=Path, default=ROOT / ".cache/vectors/scifact")
    p.add_argument("--dataset", type=Path, default=Path("/work/shared/data/scifact"))
    p.add_argument("--pool-factor", type=int, default=2)
    args = p.parse_args()
    doc_ids, docs, _, meta = encoders.read_precomputed(args.vectors / "documents.zarr")
    query_ids, queries, _, _ = encoders.read_precomputed(args.vectors / "queries.zarr")
    qrels_dict = load_beir(args.dataset, "test").qrels
    keep = [i for i, q in enumerate(query_ids) if q in qrels_dict]
    queries = queries.take(np.array(keep))
    query_ids = [query_ids[i] for i in keep]
    qrels = Qrels({q: qrels_dict[q] for q in query_ids})
    print(
        f"SciFact test: {len(query_ids)} queries, {len(doc_ids)} documents "
        f"({docs.total_tokens} tokens, dim {docs.dim}, {docs.dtype}); encoder "
        f"{(meta.get('identity') or {}).get('name', '?')}\n"
    )
    variants: dict[str, MultiVectors] = {}
    for normalize in (True, False):
        t = time.perf_counter()
        pooled = pool_tokens(docs, pool_factor=args.pool_factor, normalize=normalize)
        print(f"pooled normalize={normalize} in {time.perf_counter() - t:.1f} s", flush=True)
        variants[f"pool_factor {args.pool_factor}, normalize={normalize}"] = pooled
    variants["no pooling (reference)"] = docs  # last: the decision needs only the two above
    rows = []
    per_query: dict[str, np.ndarray] = {}
    for name, vectors in variants.items():
        t = time.perf_counter()
        scores = maxsim(queries, vectors)
        elapsed = time.perf_counter() - t
        run = run_of(scores, query_ids, doc_ids, 100)
        result = evaluate(qrels, run, ["ndcg@10", "recall@100"])
        per_query[name] = np.asarray(evaluate(qrels, run, "ndcg@10", return_mean=False))
        rows.append((name, vectors.total_tokens, result["ndcg@10"], result["recall@100"], elapsed))
        print(f"{name}: nDCG@10 {result['ndcg@10']:.4f} ({elapsed:.0f} s)", flush=True)
    ref = rows[-1][2]
    print("\n| document vectors | vectors | nDCG@10 | vs unpooled | Recall@100 |")
    print("|---|---:|---:|---:|---:|")
    for name, n_vec, ndcg, recall, _ in rows:
        print(f"| {name} | {n_vec:,} | {ndcg:.4f} | {100 * (ndcg - ref) / ref:+.2f}% | {recall:.4f} |")
    a, b = (per_query[n] for n in list(variants)[:2])
    diff = a - b
    print(
        f"\nPer query, {list(variants)[0]} vs {list(variants)[1]}: "
        f"{int((diff > 0).sum())} better, {int((diff == 0).sum())} equal, "
        f"{int((diff < 0).sum())} worse; paired t-test p = {ttest_rel(a, b).pvalue:.3f}"
    )


if __name__ == "__main__":
    main()

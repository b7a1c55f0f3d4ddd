"""Exhaustive MaxSim on SciFact (test split) with precomputed default-encoder vectors.

Scores every test query against every document with exact MaxSim (``mvr.maxsim``) over
the unpooled token vectors written by ``scripts/encode_corpus.py`` and reports
nDCG@10, Recall@100 and MRR@10 (ranx). Expected for the default encoder: nDCG@10 = 0.707.

    .venv/bin/python scripts/encode_corpus.py /work/shared/data/scifact --out .cache/vectors/scifact
    .venv/bin/python scripts/exhaustive_scifact.py --vectors .cache/vectors/scifact

Several ``--vectors`` directories (e.g. an fp32 and a bf16 encoding) are compared in one table.
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

import encoders  # noqa: E402
import mvr  # noqa: E402
from indexing.corpus import load_beir  # noqa: E402


def exhaustive_run(vectors_dir: Path, k: int = 100) -> tuple[dict[str, dict[str, float]], float]:
    """Top-``k`` documents per query by exact MaxSim; and the scoring time in seconds."""
    doc_ids, docs, _, _ = encoders.read_precomputed(vectors_dir / "documents.zarr")
    query_ids, queries, _, _ = encoders.read_precomputed(vectors_dir / "queries.zarr")
    start = time.perf_counter()
    scores = mvr.maxsim(queries, docs)  # (n_queries, n_docs) float32
    seconds = time.perf_counter() - start
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    run = {
        q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(query_ids)
    }
    return run, seconds


def evaluate(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    judged = {q: run[q] for q in qrels}
    return ranx_evaluate(Qrels(qrels), Run(judged), ["ndcg@10", "recall@100", "mrr@10"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("/work/shared/data/scifact"))
    parser.add_argument(
        "--vectors", type=Path, nargs="+", default=[ROOT / ".cache" / "vectors" / "scifact"]
    )
    args = parser.parse_args()
    qrels = load_beir(args.dataset, "test").qrels
    rows = []
    for vectors_dir in args.vectors:
        run, seconds = exhaustive_run(vectors_dir)
        missing = set(qrels) - set(run)
        if missing:
            raise SystemExit(f"{vectors_dir}: {len(missing)} judged queries have no vectors")
        metrics = evaluate(run, qrels)
        rows.append((vectors_dir, metrics, seconds))
    print("| vectors | nDCG@10 | Recall@100 | MRR@10 | MaxSim time (s) |")
    print("|---|---|---|---|---|")
    for vectors_dir, m, seconds in rows:
        print(
            f"| {vectors_dir.name} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | "
            f"{m['mrr@10']:.4f} | {seconds:.1f} |"
        )
    if len(rows) > 1:
        base = rows[0][1]["ndcg@10"]
        for vectors_dir, m, _ in rows[1:]:
            print(f"\nnDCG@10 delta {vectors_dir.name} - {rows[0][0].name}: {m['ndcg@10'] - base:+.4f}")


if __name__ == "__main__":
    main()

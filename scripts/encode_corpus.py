"""Encode a BEIR dataset once into the precomputed-vectors format (cached embeddings).

Writes ``OUT/documents.zarr`` (every corpus document) and ``OUT/queries.zarr`` (the
queries judged in ``qrels/<split>.tsv``), ids and texts included, with the encoder's
identity, so later benchmarks and evaluations load them instead of re-encoding::

    .venv/bin/python scripts/encode_corpus.py /work/shared/data/scifact --out .cache/vectors/scifact

    import encoders
    enc = encoders.load(".cache/vectors/scifact")          # PrecomputedEncoder
    ids, docs, texts, meta = encoders.read_precomputed(".cache/vectors/scifact/documents.zarr")

Document text = ``(title + " " + text).strip()`` (BEIR ``corpus.jsonl`` or ``.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import encoders  # noqa: E402


def read_beir_corpus(dataset: Path) -> Iterator[tuple[str, str]]:
    """(id, title + " " + text) of every corpus row."""
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        path = dataset / name
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"{dataset}: expected corpus.jsonl or corpus.jsonl.gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                yield str(row["_id"]), (row.get("title", "") + " " + row.get("text", "")).strip()


def read_beir_queries(dataset: Path, split: str) -> list[tuple[str, str]]:
    """(id, text) of the queries judged in ``qrels/<split>.tsv``, in queries.jsonl order."""
    with open(dataset / "qrels" / f"{split}.tsv", encoding="utf-8", newline="") as f:
        judged = {row["query-id"] for row in csv.DictReader(f, delimiter="\t")}
    out = []
    with open(dataset / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in judged:
                    out.append((str(row["_id"]), row["text"]))
    return out


def encode_side(encoder, items, side: str, out: Path, dtype: str) -> None:
    ids = [i for i, _ in items]
    texts = [t for _, t in items]
    start = time.perf_counter()
    fn = encoder.encode_documents if side == "documents" else encoder.encode_queries
    vectors = fn(texts)
    seconds = time.perf_counter() - start
    path = encoders.save_precomputed(
        out / f"{side}.zarr", ids, vectors, texts, identity=encoder.identity, dtype=dtype
    )
    print(
        f"{side}: {len(ids)} items, {vectors.total_tokens} tokens, dim {vectors.dim} in "
        f"{seconds:.1f} s ({len(ids) / max(seconds, 1e-9):.1f} items/s) -> {path}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, help="BEIR dataset directory")
    parser.add_argument("--out", type=Path, default=None, help="default: .cache/vectors/<name>")
    parser.add_argument("--split", default="test", help="qrels split whose queries to encode")
    parser.add_argument("--encoder", default="default", help="encoder name or path")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default=None, help="fp32 | bf16 | fp16 | int8 | fast (default: auto)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    out = args.out or ROOT / ".cache" / "vectors" / args.dataset.name
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoders.load(args.encoder, batch_size=args.batch_size, precision=args.precision)
    print(f"encoder: {encoder!r}", flush=True)
    queries = read_beir_queries(args.dataset, args.split)
    encode_side(encoder, queries, "queries", out, args.dtype)
    docs = list(read_beir_corpus(args.dataset))
    if args.limit is not None:
        docs = docs[: args.limit]
    encode_side(encoder, docs, "documents", out, args.dtype)


if __name__ == "__main__":
    main()

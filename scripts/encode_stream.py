"""Encode a large BEIR corpus once, streaming, into a precomputed-vectors directory.

``scripts/encode_corpus.py`` holds a whole corpus's vectors in RAM; this script does not:
a first pass tokenises every text to size the output, then documents are encoded in
chunks straight into a memory-mapped ``vectors.npy`` (float16), so peak RSS stays at one
chunk. Killed, it resumes from ``progress.json`` (the chunks already written are kept)::

    nice -n 19 .venv/bin/python scripts/encode_stream.py /work/shared/data/pypi \
        --out .cache/vectors/pypi

The result (``OUT/documents/``: ``vectors.npy``, ``offsets.npy``, ``ids.npy``,
``meta.json``; ``OUT/queries/`` likewise for every query) is read by
``encoders.load(OUT)`` and by ``mvr index OUT/documents``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import encoders  # noqa: E402
from encoders._precomputed import save_precomputed  # noqa: E402


def read_items(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    ids, texts = [], []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append((row.get("title", "") + " " + row.get("text", "")).strip())
            if limit is not None and len(ids) >= limit:
                break
    return ids, texts


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_documents(encoder, ids: list[str], texts: list[str], out: Path, chunk: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    prog_path = out / "progress.json"
    spec = encoder.document_spec
    if prog_path.is_file():
        prog = json.loads(prog_path.read_text())
        offsets = np.load(out / "offsets.npy")
    else:
        t = time.perf_counter()
        lengths = np.zeros(len(texts), dtype=np.int64)
        for lo in range(0, len(texts), 50_000):
            seqs, _ = encoder.tokenize(texts[lo : lo + 50_000], spec)
            lengths[lo : lo + len(seqs)] = [len(s) for s in seqs]
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(out / "offsets.npy", offsets)
        np.save(out / "ids.npy", np.asarray(ids))
        np.lib.format.open_memmap(out / "vectors.npy", mode="w+", dtype=np.float16,
                                  shape=(int(offsets[-1]), encoder.dim)).flush()
        prog = {"done": 0}
        _atomic_json(prog_path, prog)
        print(f"tokenised {len(texts)} texts, {int(offsets[-1])} tokens in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
    vec = np.load(out / "vectors.npy", mmap_mode="r+")
    t0, start = time.perf_counter(), prog["done"]
    for lo in range(start, len(texts), chunk):
        hi = min(lo + chunk, len(texts))
        mv = encoder.encode_documents(texts[lo:hi])
        if mv.total_tokens != offsets[hi] - offsets[lo]:
            raise RuntimeError(f"chunk {lo}:{hi}: expected {offsets[hi] - offsets[lo]} tokens, "
                               f"got {mv.total_tokens}")
        vec[offsets[lo] : offsets[hi]] = mv.vectors.astype(np.float16)
        vec.flush()
        _atomic_json(prog_path, {"done": hi})
        rate = (hi - start) / (time.perf_counter() - t0)
        print(f"{hi}/{len(texts)} docs, {rate:.1f} docs/s, ETA "
              f"{(len(texts) - hi) / rate / 60:.1f} min", flush=True)
    meta = {"format": "mvr-precomputed", "format_version": 1, "dim": encoder.dim,
            "count": len(texts), "dtype": "float16", "identity": encoder.identity}
    (out / "meta.json").write_text(json.dumps(meta))
    prog_path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunk", type=int, default=16_384)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    encoder = encoders.load("default", batch_size=args.batch_size, progress=False)
    print(f"encoder: {encoder!r}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    qids, qtexts = read_items(args.dataset / "queries.jsonl", None)
    if not (args.out / "queries.zarr").is_dir():
        save_precomputed(args.out / "queries.zarr", qids, encoder.encode_queries(qtexts), qtexts,
                         identity=encoder.identity, dtype="float16")
    corpus = next(p for p in (args.dataset / "corpus.jsonl", args.dataset / "corpus.jsonl.gz")
                  if p.is_file())
    ids, texts = read_items(corpus, args.limit)
    encode_documents(encoder, ids, texts, args.out / "documents", args.chunk)


if __name__ == "__main__":
    main()

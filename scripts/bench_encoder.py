"""Encoder throughput: the default encoder vs a plain ``transformers`` forward loop.

Both sides encode the same SciFact documents (title + " " + text, truncated to 256
tokens) with the same batch size and threads, and return L2-normalised vectors of the
non-padding tokens. The plain loop tokenises each batch in corpus order and pads it to
its longest text; mvr sorts texts by length first. Reports documents/s, tokens/s
(non-padding tokens) and the ratio mvr / plain, in fp32 and under bf16 autocast.
Each configuration runs ``--repeats`` times alternately; the best time counts.

    .venv/bin/python scripts/bench_encoder.py --docs 1000 --batch-size 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from encode_corpus import read_beir_corpus  # noqa: E402

import encoders  # noqa: E402


def plain_loop(model, tokenizer, texts: list[str], batch_size: int, bf16: bool) -> int:
    """The peer: tokenise + forward + keep non-padding tokens + normalise, in corpus order."""
    kept = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True,
                max_length=256, return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            vectors = torch.nn.functional.normalize(
                hidden[batch["attention_mask"].bool()].float(), dim=-1
            ).numpy()
            kept += vectors.shape[0]
    return kept


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("/work/shared/data/scifact"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--plain-bf16", action="store_true", help="also time the plain loop under bf16 autocast"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    texts = [t for _, t in read_beir_corpus(args.dataset)][: args.docs]
    fp32 = encoders.load("default", device="cpu", batch_size=args.batch_size, progress=False)
    bf16 = encoders.load(
        "default", device="cpu", batch_size=args.batch_size, progress=False, precision="bf16"
    )
    model, tokenizer = fp32.model, fp32.tokenizer
    fp32.encode_documents(texts[:8])  # warm-up both paths
    plain_loop(model, tokenizer, texts[:8], args.batch_size, False)

    best: dict[str, tuple[float, int]] = {}
    runs = {
        "plain transformers, fp32": lambda: plain_loop(model, tokenizer, texts, args.batch_size, False),
        "mvr, fp32": lambda: fp32.encode_documents(texts).total_tokens,
        "mvr, bf16 autocast": lambda: bf16.encode_documents(texts).total_tokens,
    }
    if args.plain_bf16:
        runs["plain transformers, bf16 autocast"] = lambda: plain_loop(
            model, tokenizer, texts, args.batch_size, True
        )
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds, tokens = timed(fn)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, tokens)
            print(f"  {name}: {seconds:.1f} s", file=sys.stderr, flush=True)

    print(f"{len(texts)} SciFact documents, batch size {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, best of {args.repeats}\n")
    plain_s, plain_tokens = best["plain transformers, fp32"]
    print("| encoder | precision | docs/s | tokens/s | speed vs plain fp32 |")
    print("|---|---|---|---|---|")
    for name, (seconds, tokens) in best.items():
        who, precision = name.split(", ")
        print(f"| {who} | {precision} | {len(texts) / seconds:.1f} | {tokens / seconds:.0f} | "
              f"{plain_s / seconds:.2f}x |")
    if best["mvr, fp32"][1] != plain_tokens:
        print(f"\nWARNING: token counts differ ({best['mvr, fp32'][1]} vs {plain_tokens})")
    speed = best["mvr, fp32"][0] / best["mvr, bf16 autocast"][0]
    print(f"\nmvr bf16 autocast vs mvr fp32: {speed:.2f}x")
    check = fp32.encode_documents(texts[:4]).vectors
    other = bf16.encode_documents(texts[:4]).vectors
    print(f"max |bf16 - fp32| over {check.shape[0]} token vectors: {np.abs(check - other).max():.4f}")


if __name__ == "__main__":
    main()

"""``mvr demo``: index the standard library's documentation and search it.

Needs nothing outside the repository and PyPI: the corpus is the Python install's
own documentation (``pydoc_data.topics`` and docstrings, split into passages), the
encoder the default one (offline). Prints results for a few questions and the
first stage's candidate recall against exhaustive MaxSim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["demo_command", "DEMO_QUESTIONS", "candidate_recall"]

DEMO_QUESTIONS = [
    "How do I read and parse a JSON file?",
    "sort a list in place with a key function",
    "create a temporary directory that is removed automatically",
    "run a subprocess and capture its output",
    "what does the with statement do?",
]
# more questions for the recall table (the examples above are included)
_RECALL_QUESTIONS = DEMO_QUESTIONS + [
    "match a regular expression at the start of a string",
    "current date and time with a time zone",
    "join path components portably",
    "copy a file with its permissions",
    "count occurrences of items in a list",
    "format a float with two decimals",
    "read a CSV file row by row",
    "compress data with gzip",
    "generate a random integer in a range",
    "wait for several threads to finish",
    "how are exceptions chained with raise from",
    "iterate over two lists in parallel",
    "encode bytes as base64",
    "decorators that cache a function's results",
    "walk a directory tree recursively",
]


def candidate_recall(
    searcher: Any, queries: list[str], ns: list[int], k: int = 10
) -> dict[int, float]:
    """Mean fraction of the exhaustive-MaxSim top-``k`` found in the first stage's top-N."""
    exact = searcher.exhaustive(queries, k=k)
    first = searcher.search(queries, k=max(ns), candidates=max(ns), rerank=False)
    out = {}
    for n in ns:
        hits = [len(set(e) & set(f[:n])) / max(len(e), 1) for e, f in zip(exact.ids, first.ids,
                                                                          strict=True)]
        out[n] = sum(hits) / len(hits)
    return out


def demo_command(
    passages: Annotated[int, typer.Option(help="Passages of the stdlib docs to index")] = 2000,
    index_dir: Annotated[Path, typer.Option("--dir", help="Where the demo index goes")] = Path(
        ".cache/demo-index"),
    k: Annotated[int, typer.Option("-k", help="Results shown per question")] = 5,
    candidates: Annotated[int, typer.Option(help="First-stage candidates re-ranked")] = 500,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the demo index exists")] = False,
) -> None:
    """Index the Python standard library's docs, ask a few questions, print recall."""
    import time

    import encoders
    from indexing._build import build_index
    from indexing.corpus import stdlib_docs_corpus
    from mvr import IndexConfig
    from mvr._manifest import read_manifest
    from mvr.errors import MVRError
    from serving._searcher import Searcher

    enc = encoders.load("default", progress=False)
    try:
        manifest = read_manifest(index_dir)
        fresh = manifest["counts"]["documents"] != passages or manifest["encoder"] != enc.identity
    except MVRError:
        fresh = True
    if fresh or rebuild:
        t = time.perf_counter()
        docs = stdlib_docs_corpus(max_passages=passages)
        typer.echo(f"corpus: {len(docs)} passages of the standard library's documentation "
                   f"({time.perf_counter() - t:.1f} s)")
        build_index(index_dir, docs, enc, IndexConfig(), overwrite=True)
    else:
        typer.echo(f"using the existing demo index at {index_dir} (--rebuild to rebuild)")
    with Searcher.open(index_dir, encoder=enc) as searcher:
        s = searcher.stats()
        typer.echo(f"index: {s['documents']} documents, {s['tokens']} pooled tokens, "
                   f"FDE dim {s['fde_dim']}, first stage {s['first_stage']}\n")
        res = searcher.search(DEMO_QUESTIONS, k=k, candidates=candidates)
        for q, ids, scores in zip(DEMO_QUESTIONS, res.ids, res.scores, strict=True):
            typer.echo(f"Q: {q}")
            for doc, score, text in zip(ids, scores, searcher.get_texts(ids), strict=True):
                snippet = " ".join((text or "").split())[:90]
                typer.echo(f"   {score:7.3f}  {doc:<38.38}  {snippet}")
            typer.echo("")
        ns = [10, 50, 100, 200, 500]
        rec = candidate_recall(searcher, _RECALL_QUESTIONS, ns)
        typer.echo(f"first-stage candidate recall of the exhaustive-MaxSim top-10 "
                   f"({len(_RECALL_QUESTIONS)} questions):")
        typer.echo("| N | " + " | ".join(str(n) for n in ns) + " |")
        typer.echo("|---|" + "---|" * len(ns))
        typer.echo("| recall@10 | " + " | ".join(f"{rec[n]:.3f}" for n in ns) + " |")
        e2e = searcher.search(_RECALL_QUESTIONS, k=10, candidates=candidates)
        exact = searcher.exhaustive(_RECALL_QUESTIONS, k=10)
        r10 = sum(len(set(a) & set(b)) / 10 for a, b in zip(e2e.ids, exact.ids, strict=True))
        typer.echo(f"\nend-to-end Recall@10 vs exhaustive MaxSim at N={candidates}: "
                   f"{r10 / len(_RECALL_QUESTIONS):.3f}")

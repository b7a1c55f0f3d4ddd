"""``mvr demo``: index the standard library's documentation and search it.

Needs nothing outside the repository and PyPI: the corpus is the Python install's
own documentation (all of it: ``pydoc_data.topics`` and every public module's
docstrings, split into passages, :func:`indexing.stdlib_docs_corpus`), the encoder
the default one (offline; precision "fast": bf16 autocast where the CPU computes bf16
natively, else int8 dynamic quantisation of its Linear layers, whose SciFact nDCG@10 is
0.7147 against fp32's 0.7072: EVALUATION.md). Prints the top results of a few questions with the module each comes from,
then the first stage's candidate recall against exhaustive MaxSim.

It lives in ``serving`` because it searches (dependencies point one way).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mvr._console import Quiet, Verbose, console_logging

__all__ = [
    "DEMO_QUESTIONS",
    "build_demo_index",
    "candidate_recall",
    "demo_command",
    "passage_source",
    "source_matches",
]

# (question, where its answer lives: a module, a qualified name, or a language topic)
DEMO_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("How do I read and parse a JSON file?", "json"),
    ("sort a list in place with a key function", "list.sort"),
    ("create a temporary directory that is removed automatically", "tempfile"),
    ("run a subprocess and capture its output", "subprocess"),
    ("what does the with statement do?", "with"),
)
# more questions for the recall table (the examples above are included)
_RECALL_QUESTIONS = [q for q, _ in DEMO_QUESTIONS] + [
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
_STAMP = "demo.json"  # next to the manifest: which Python's docs the index holds


def _qualname(doc_id: str) -> tuple[str, str]:
    """``("doc", "json.loads")`` / ``("topic", "with")`` of a passage id."""
    kind, _, rest = doc_id.partition(":")
    return kind, rest.split("#", 1)[0]


def _module_of(qualname: str) -> str:
    """The longest importable prefix of a dotted name (``json.decoder.JSONDecoder`` ->
    ``json.decoder``); the first part when none is."""
    parts = qualname.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError, AttributeError):
            continue
    return parts[0]


def passage_source(doc_id: str) -> str:
    """Where a demo passage comes from, for a person: ``"module json"``,
    ``"module builtins (list.sort)"`` or ``"language reference: with"``."""
    kind, name = _qualname(doc_id)
    if kind == "topic":
        return f"language reference: {name}"
    module = _module_of(name)
    member = name[len(module) + 1:]
    return f"module {module}" + (f" ({member})" if member else "")


def source_matches(doc_id: str, expected: str) -> bool:
    """Whether passage ``doc_id`` comes from ``expected``: a module (``"json"`` matches
    ``doc:json.loads`` and ``doc:json.decoder.JSONDecoder``), a qualified name
    (``"list.sort"`` matches ``doc:builtins.list.sort``) or a language topic
    (``"with"`` matches ``topic:with#0``)."""
    kind, name = _qualname(doc_id)
    if kind == "topic":
        return name == expected
    return (name == expected or name.split(".")[0] == expected
            or name.startswith(expected + ".") or name.endswith("." + expected))


def candidate_recall(
    searcher: Any, queries: list[str], ns: list[int], k: int = 10
) -> dict[int, float]:
    """Mean fraction of the exhaustive-MaxSim top-``k`` found in the first stage's top-N."""
    exact = searcher.exhaustive(queries, k=k)
    first = searcher.search(queries, k=max(ns), candidates=max(ns), rerank=False)
    out = {}
    for n in ns:
        hits = [len(set(e) & set(f[:n])) / max(len(e), 1)
                for e, f in zip(exact.ids, first.ids, strict=True)]
        out[n] = sum(hits) / len(hits)
    return out


def _stamp() -> dict[str, Any]:
    return {"python": sys.version, "corpus": "stdlib_docs_corpus"}


def _reusable(index_dir: Path, identity: Any) -> bool:
    from mvr._manifest import read_manifest
    from mvr.errors import MVRError

    try:
        manifest = read_manifest(index_dir)
        stamp = json.loads((index_dir / _STAMP).read_text(encoding="utf-8"))
    except (MVRError, OSError, ValueError):
        return False
    return manifest["encoder"] == identity and stamp.get("python") == sys.version and (
        stamp.get("passages") == manifest["counts"]["documents"])


def build_demo_index(
    index_dir: str | Path, encoder: Any, *, progress: bool = True,
    echo: Any = print,
) -> dict[str, Any]:
    """Index every passage of the standard library's documentation at ``index_dir``.

    Parameters
    ----------
    index_dir : path
        Replaced if it holds an index.
    encoder : mvr.Encoder
        The default encoder (any encoder works; the demo questions are tuned to it).
    progress : bool
        One tqdm bar for the build (documents/s, ETA); truncation warnings are
        summed and logged once after it.
    echo : callable
        Where the corpus line goes.

    Returns
    -------
    dict
        The committed manifest with ``build_timings`` (seconds per stage, ``corpus``
        included).
    """
    from indexing._build import build_index
    from indexing.corpus import stdlib_docs_corpus
    from mvr import FirstStageConfig, IndexConfig
    from mvr._progress import summarised_warnings

    root = Path(index_dir)
    t = time.perf_counter()
    docs = stdlib_docs_corpus()
    corpus_s = time.perf_counter() - t
    modules = {d.split(":", 1)[1].split(".", 1)[0].split("#", 1)[0]
               for d, _ in docs if d.startswith("doc:")}
    echo(f"corpus: {len(docs):,} passages of the standard library's documentation "
         f"({len(modules)} top-level modules and the language reference), {corpus_s:.1f} s")
    # The encoder sorts each call's texts by length, but a build calls it per batch: in
    # corpus order padding costs 19.8% of the tokens with build batches of 256 passages,
    # 9.1% with 512. Handing the build the passages shortest first (by characters, which
    # follow the token counts) leaves 3.1% (measured on this corpus); ids and answers are
    # the same, only the rows' order differs. 512 keeps the bar moving every ~1/10 of the
    # build. The first stage is exact GEMM: at 5,434 documents training faiss IVF-PQ took
    # 299 s of a 1,131 s build (load ~8) and found fewer of the exhaustive top-10 (0.93 vs
    # 0.975 at N=500).
    by_length = sorted(docs, key=lambda d: len(d[1]))
    config = IndexConfig(batch_size=512, first_stage=FirstStageConfig(kind="exact"))
    with summarised_warnings("encoders"):
        manifest = build_index(root, by_length, encoder, config,
                               overwrite=True, progress=progress)
    (root / _STAMP).write_text(
        json.dumps({**_stamp(), "passages": len(docs)}) + "\n", encoding="utf-8")
    manifest["build_timings"]["corpus"] = corpus_s
    return manifest


def _show_results(searcher: Any, k: int, candidates: int, width: int) -> None:
    questions = [q for q, _ in DEMO_QUESTIONS]
    res = searcher.search(questions, k=k, candidates=candidates)
    for (q, expected), ids, scores in zip(DEMO_QUESTIONS, res.ids, res.scores, strict=True):
        rank = next((r for r, d in enumerate(ids, 1) if source_matches(d, expected)), None)
        found = f"expected {expected!r}: " + (f"rank {rank}" if rank else f"not in the top {k}")
        typer.echo(f"Q: {q}    ({found})")
        for doc, score, text in zip(ids, scores, searcher.get_texts(ids), strict=True):
            snippet = " ".join((text or "").split())[:width]
            typer.echo(f"   {score:7.3f}  {passage_source(doc):<36.36}  {snippet}")
        typer.echo("")


def _show_recall(searcher: Any, candidates: int) -> None:
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


def demo_command(
    index_dir: Annotated[Path, typer.Option(
        "--out", "-o", "--dir", help="Where the demo index goes")] = Path(".cache/demo-index"),
    k: Annotated[int, typer.Option("-k", "--k", help="Results shown per question")] = 3,
    candidates: Annotated[int, typer.Option(
        "--candidates", "-n", help="First-stage candidates re-ranked")] = 500,
    rebuild: Annotated[bool, typer.Option(help="Rebuild even if the demo index exists")] = False,
    precision: Annotated[str, typer.Option(
        help="Encoder precision: fast (bf16 where the CPU has it natively, else int8) | "
             "auto (bf16 where native, else fp32) | fp32 | bf16 | int8")
    ] = "fast",
    progress: Annotated[bool, typer.Option(
        help="One progress bar for the build; --no-progress: none")] = True,
    recall: Annotated[bool, typer.Option(help="Print the candidate-recall table")] = True,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Index the Python standard library's docs, ask a few questions, print recall.

    All 5,000+ passages are indexed (once; later runs reuse the index); each answer is
    shown with the module it comes from.

    Example: mvr demo --rebuild -k 5
    """
    with console_logging(verbose, quiet):
        _demo(index_dir, k, candidates, rebuild, precision, progress and not quiet, recall)


def _demo(index_dir: Path, k: int, candidates: int, rebuild: bool, precision: str,
          progress: bool, recall: bool) -> None:
    import encoders
    from encoders._transformer import cpu_has_native_bf16
    from mvr.errors import MVRError

    t0 = time.perf_counter()
    try:
        enc = encoders.load("default", precision=precision, progress=False)
    except MVRError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    why = ""
    if getattr(enc, "device", None) is not None and enc.device.type == "cpu":
        why = (" (this CPU computes bf16 natively)" if cpu_has_native_bf16()
               else " (this CPU has no native bf16)")
    typer.echo(f"encoder: all-MiniLM-L6-v2 on {enc.device}, {enc.precision}{why}")
    try:
        _run(enc, index_dir, k, candidates, rebuild, progress, recall, t0)
    except MVRError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def _run(enc: Any, index_dir: Path, k: int, candidates: int, rebuild: bool, progress: bool,
         recall: bool, t0: float) -> None:
    from serving._searcher import Searcher

    timings: dict[str, float] = {}
    if rebuild or not _reusable(index_dir, enc.identity):
        manifest = build_demo_index(index_dir, enc, progress=progress, echo=typer.echo)
        bt = manifest["build_timings"]
        timings = {"corpus": bt["corpus"], "index": bt["total"]}
        stages = ", ".join(f"{name} {bt[name]:.1f} s" for name in
                           ("encode", "pool", "fde", "codec_train", "write", "commit",
                            "first_stage", "checksums")
                           if name in bt)
        typer.echo(f"index built in {bt['total']:.1f} s ({stages})")
    else:
        typer.echo(f"using the existing demo index at {index_dir} (--rebuild to rebuild)")
    with Searcher.open(index_dir, encoder=enc) as searcher:
        s = searcher.stats()
        typer.echo(f"index: {s['documents']:,} documents, {s['tokens']:,} pooled tokens, "
                   f"FDE dim {s['fde_dim']}, first stage {s['first_stage']}\n")
        t = time.perf_counter()
        _show_results(searcher, k, candidates, width=80)
        timings["questions"] = time.perf_counter() - t
        if recall:
            t = time.perf_counter()
            _show_recall(searcher, candidates)
            timings["recall"] = time.perf_counter() - t
    parts = ", ".join(f"{name} {v:.1f} s" for name, v in timings.items())
    typer.echo(f"\ndone in {time.perf_counter() - t0:.1f} s ({parts})")

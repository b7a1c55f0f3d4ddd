"""``mvr search``: query an index from the command line.

``serve_command`` lives in :mod:`serving._http_cli`; it is re-exported here because
:mod:`mvr.cli` registers ``serve`` from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mvr._console import Quiet, Verbose, console_logging
from serving._http_cli import serve_command

__all__ = ["search_command", "serve_command"]


def search_command(
    index: Annotated[Path, typer.Argument(help="Index directory")],
    query: Annotated[list[str], typer.Argument(help="Query text(s)")],
    k: Annotated[int, typer.Option("-k", "--k", help="Results per query")] = 10,
    candidates: Annotated[int | None, typer.Option(
        "--candidates", "-n", help="First-stage candidates re-ranked (default: the index's)")] = None,
    rerank: Annotated[bool, typer.Option(
        help="Re-rank with exact MaxSim (--no-rerank: first-stage FDE results)")] = True,
    mode: Annotated[str, typer.Option(help="memory | mmap | ssd")] = "mmap",
    encoder: Annotated[str | None, typer.Option(
        help="Encoder name or path (default: the one recorded in the index)")] = None,
    snippet: Annotated[int, typer.Option(help="Snippet length in characters (0 = none)")] = 100,
    verify: Annotated[bool, typer.Option(help="Check file checksums on open")] = True,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Search an index: prints rank, id, score and a text snippet per result.

    Example: mvr search scifact.mvr "does vitamin D prevent fractures?" -k 10
    """
    with console_logging(verbose, quiet):
        _search(index, query, k, candidates, rerank, mode, encoder, snippet, verify)


def _search(index: Path, query: list[str], k: int, candidates: int | None, rerank: bool,
            mode: str, encoder: str | None, snippet: int, verify: bool) -> None:
    from mvr.errors import MVRError
    from serving._searcher import Searcher

    try:
        enc = None
        if encoder is not None:
            import encoders

            enc = encoders.load(encoder)
        with Searcher.open(index, encoder=enc, mode=mode, verify=verify) as searcher:
            res = searcher.search(query, k=k, candidates=candidates, rerank=rerank)
            for q, ids, scores in zip(query, res.ids, res.scores, strict=True):
                typer.echo(f"query: {q}")
                texts = searcher.get_texts(ids) if snippet > 0 else [None] * len(ids)
                for rank, (doc, score, text) in enumerate(zip(ids, scores, texts, strict=True), 1):
                    line = f"{rank:3d}  {score:8.4f}  {doc}"
                    if text:
                        short = " ".join(text.split())
                        short = short[:snippet] + ("..." if len(short) > snippet else "")
                        line += f"  {short}"
                    typer.echo(line)
            ms = {key: round(v * 1000, 2) for key, v in res.timings.items()}
            typer.echo(f"timings (ms): {ms}")
    except MVRError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e

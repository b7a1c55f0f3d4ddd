"""``mvr add``, ``mvr delete``, ``mvr compact``: change an index in place (``IndexWriter``).

Each takes the index's single-writer lock; a second writer fails at once (exit 1) with
the lock's path. Every change commits a new manifest atomically: a searcher opened
before keeps its snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mvr._console import Quiet, Verbose, console_logging

__all__ = ["add_command", "delete_command", "compact_command"]


def _fail(e: Exception) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(1)


def _documents(corpus: Path, encoder: str | None, index: Path, progress: bool) -> tuple[Any, Any]:
    """(encoder, documents): precomputed vectors as they are; texts with ``--encoder`` or
    the encoder the index records (``manifest["encoder_source"]``)."""
    import encoders
    from encoders._precomputed import is_precomputed
    from encoders._source import load_index_encoder
    from indexing.corpus import read_corpus
    from mvr._manifest import read_manifest

    if is_precomputed(corpus):
        from indexing._precomputed_docs import PrecomputedDocuments

        enc = encoders.load(str(corpus))
        return enc, PrecomputedDocuments(enc)
    if encoder is not None:
        enc = encoders.load(encoder, progress=False)
    else:
        m = read_manifest(index)
        enc = load_index_encoder(m["encoder"], m.get("encoder_source"), where=f"index {index}",
                                 progress=False)
    return enc, read_corpus(corpus)


def add_command(
    index: Annotated[Path, typer.Argument(help="An existing index directory")],
    corpus: Annotated[Path, typer.Argument(help=(
        "Documents to add: a corpus file (BEIR corpus.jsonl(.gz), JSONL or TSV of (id, text)) "
        "or precomputed vectors"))],
    encoder: Annotated[str | None, typer.Option(
        help="Encoder name or path (default: the one the index records)")] = None,
    progress: Annotated[bool, typer.Option(
        help="One progress bar (documents/s); --no-progress: none")] = True,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Add documents to an index as a new segment.

    Ids must be new (a deleted id may come back). Texts are encoded with the encoder
    the index records, precomputed vectors are taken as they are.

    Example: mvr add scifact.mvr new-docs.jsonl
    """
    from indexing._writer import IndexWriter
    from mvr._progress import summarised_warnings
    from mvr.errors import MVRError

    if not corpus.exists():
        typer.echo(f"error: corpus {str(corpus)!r} not found", err=True)
        raise typer.Exit(2)
    with console_logging(verbose, quiet):
        try:
            enc, documents = _documents(corpus, encoder, index, progress)
            with IndexWriter(index, encoder=enc) as w, summarised_warnings("encoders"):
                added = w.add(documents, progress=progress and not quiet)
                live = w.manifest["counts"]["live"]
        except MVRError as e:
            raise _fail(e) from e
    typer.echo(f"added {added} documents to {index} ({live} live)")


def delete_command(
    index: Annotated[Path, typer.Argument(help="An existing index directory")],
    ids: Annotated[list[str], typer.Argument(help="Document ids to delete")],
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Delete documents by id (searches never return them again).

    Deleted documents are tombstoned; `mvr compact` reclaims their space. Unknown ids
    fail and nothing is deleted then.

    Example: mvr delete scifact.mvr 4983 5836
    """
    from indexing._writer import IndexWriter
    from mvr.errors import MVRError

    with console_logging(verbose, quiet):
        try:
            with IndexWriter(index) as w:
                n = w.delete(ids)
                counts = w.manifest["counts"]
        except MVRError as e:
            raise _fail(e) from e
    typer.echo(f"deleted {n} documents from {index} ({counts['live']} live, "
               f"{counts['deleted']} deleted awaiting compaction)")


def compact_command(
    index: Annotated[Path, typer.Argument(help="An existing index directory")],
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Rewrite the live documents into one segment, dropping deleted ones.

    The first stage is rebuilt; token vectors are copied, never re-encoded.

    Example: mvr compact scifact.mvr
    """
    from indexing._writer import IndexWriter
    from mvr.errors import MVRError

    with console_logging(verbose, quiet):
        try:
            with IndexWriter(index) as w:
                before = len(w.manifest["segments"])
                manifest = w.compact()
        except MVRError as e:
            raise _fail(e) from e
    typer.echo(f"compacted {index}: {before} segment(s) -> {len(manifest['segments'])}, "
               f"{manifest['counts']['live']} documents")

"""``mvr index``: build an index from a corpus file or precomputed vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mvr._console import Quiet, Verbose, console_logging

__all__ = ["index_command"]


def index_command(
    corpus: Annotated[Path, typer.Argument(help=(
        "BEIR corpus.jsonl(.gz), a JSONL/TSV of (id, text), or precomputed vectors "
        "(.zarr / .npz / .npy directory / documents+queries directory)"))],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory")],
    resume: Annotated[bool, typer.Option(help="Finish an interrupted build at --out")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index at --out")] = False,
    encoder: Annotated[str, typer.Option(help="Encoder name or path (texts only)")] = "default",
    device: Annotated[str | None, typer.Option(help="torch device for the encoder")] = None,
    pool_factor: Annotated[int | None, typer.Option(
        help="Tokens merged per cluster (1 = none; default: mvr.PoolingConfig's, 2)")] = None,
    first_stage: Annotated[str | None, typer.Option(
        help="faiss (the default: 4-bit PQ fast-scan over the FDEs) | exact | hnsw | ivfpq")] = None,
    table_dtype: Annotated[str | None, typer.Option(
        help="res8 (the default) | res4 | pqr2 | pqr4 | int8 | float16")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per build batch")] = 256,
    store_text: Annotated[bool, typer.Option(help="Keep texts for snippets")] = True,
    limit: Annotated[int | None, typer.Option(help="Index only the first N documents")] = None,
    progress: Annotated[bool, typer.Option(
        help="One progress bar (documents/s, ETA); --no-progress: none at all")] = True,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Build on Ray (mvr[distributed]): a local one, or --ray-address")] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="--ray: a running cluster ('auto', 'HOST:6379', 'ray://HOST:10001')")] = None,
    workers: Annotated[int, typer.Option(help="--ray: encoder actors")] = 2,
    num_gpus: Annotated[float, typer.Option(help="--ray: GPUs per encoder actor")] = 0.0,
    num_cpus: Annotated[float, typer.Option(help="--ray: CPUs per encoder actor")] = 1.0,
    segment_size: Annotated[int, typer.Option(
        help="--ray: documents per segment (rounded up to whole --batch-size batches)")] = 50_000,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Build (or resume) an index at --out.

    Example: mvr index ../shared/data/scifact/corpus.jsonl.gz --out scifact.mvr --pool-factor 2
    """
    cluster = None
    if ray_address is not None and not ray:
        raise typer.BadParameter("--ray-address needs --ray")
    if ray:
        from indexing._distributed import DistributedConfig

        cluster = DistributedConfig(
            address=ray_address, concurrency=workers, num_gpus=num_gpus,
            num_cpus=num_cpus, segment_size=segment_size, device=device,
        )
    with console_logging(verbose, quiet):
        _index(corpus, out, resume, overwrite, encoder, device, pool_factor, first_stage,
               table_dtype, batch_size, store_text, limit, progress and not quiet, cluster)


def _index(corpus: Path, out: Path, resume: bool, overwrite: bool, encoder: str,
           device: str | None, pool_factor: int | None, first_stage: str | None,
           table_dtype: str | None,
           batch_size: int, store_text: bool, limit: int | None, progress: bool,
           cluster: object = None) -> None:
    import itertools

    from mvr import FirstStageConfig, IndexConfig, PoolingConfig
    from mvr.errors import MVRError

    if not corpus.exists():
        typer.echo(f"error: corpus {str(corpus)!r} not found", err=True)
        raise typer.Exit(2)
    try:
        # options left out keep the library's defaults (mvr.IndexConfig), so that the CLI
        # at defaults builds what build_index(...) does: a compact first stage and res8
        # table (an "exact" first stage holds 40 KB of float32 FDE per document in RAM)
        given: dict[str, object] = {"batch_size": batch_size, "store_text": store_text}
        if pool_factor is not None:
            given["pooling"] = PoolingConfig(pool_factor=pool_factor)
        if first_stage is not None:
            given["first_stage"] = FirstStageConfig(kind=first_stage)
        if table_dtype is not None:
            given["table_dtype"] = table_dtype
        config = IndexConfig(**given)  # type: ignore[arg-type]
        if cluster is not None:  # the actors load the encoder: here only the documents
            enc, documents = _distributed_corpus(corpus, encoder, limit)
        else:
            enc, documents = _open_corpus(corpus, encoder, device, limit)
        if limit is not None and not hasattr(documents, "__len__"):
            documents = itertools.islice(documents, limit)
        from indexing._build import build_index
        from mvr._progress import summarised_warnings

        with summarised_warnings("encoders"):  # logged once, after the bar
            if cluster is not None:
                from indexing._distributed import build_index_distributed

                manifest = build_index_distributed(
                    out, documents, enc, config, cluster=cluster,  # type: ignore[arg-type]
                    resume=resume, progress=progress, overwrite=overwrite)
            else:
                manifest = build_index(out, documents, enc, config, resume=resume,
                                       progress=progress, overwrite=overwrite)
    except MVRError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    t = manifest["build_timings"]
    c = manifest["counts"]
    typer.echo(
        f"indexed {c['documents']} documents ({c['tokens']} pooled tokens) into {out} in "
        f"{t['total']:.1f} s; first stage: {[s['first_stage'] for s in manifest['segments']]}"
    )


def _distributed_corpus(corpus: Path, encoder: str, limit: int | None):  # type: ignore[no-untyped-def]
    """(encoder spec for the actors, documents) for ``--ray``: the driver never loads a model."""
    from encoders._precomputed import is_precomputed

    if is_precomputed(corpus):
        import encoders
        from indexing._precomputed_docs import PrecomputedDocuments

        return str(corpus), PrecomputedDocuments(encoders.load(str(corpus)), limit=limit)
    from indexing.corpus import read_corpus

    return encoder, read_corpus(corpus, metadata=True)


def _open_corpus(corpus: Path, encoder: str, device: str | None, limit: int | None):  # type: ignore[no-untyped-def]
    """(encoder, documents) for a corpus path: precomputed vectors or texts."""
    import encoders
    from encoders._precomputed import is_precomputed

    if is_precomputed(corpus):
        from indexing._precomputed_docs import PrecomputedDocuments

        enc = encoders.load(str(corpus))
        return enc, PrecomputedDocuments(enc, limit=limit)
    from indexing.corpus import read_corpus

    # the build's bar counts documents; the encoder's per-call bars would nest in it
    return (encoders.load(encoder, device=device, progress=False),
            read_corpus(corpus, metadata=True))

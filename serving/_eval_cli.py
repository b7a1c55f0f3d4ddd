"""``mvr eval``: offline recall evaluation of an index on a BEIR-layout dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mvr._console import Quiet, Verbose, console_logging

__all__ = ["eval_command"]


def _ints(text: str, name: str) -> list[int]:
    from mvr.errors import ConfigError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"--{name}: expected comma-separated ints, got {text!r}") from e


def _floats(text: str, name: str) -> list[float]:
    from mvr.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"--{name}: expected comma-separated numbers, got {text!r}") from e


def eval_command(
    index: Annotated[
        Path, typer.Argument(help="Index directory (with --sweep: the sweep's work directory)")
    ],
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset", "-d", help="BEIR-layout dataset: corpus.jsonl[.gz], queries.jsonl, qrels/"
        ),
    ],
    split: Annotated[str, typer.Option(help="qrels split (qrels/<split>.tsv)")] = "test",
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", "--output",
            help="Report directory (default: mvr-eval/<dataset>-<split>)"
        ),
    ] = None,
    candidates: Annotated[
        str, typer.Option(help="Grid of first-stage candidate counts N")
    ] = "10,20,50,100,200,500,1000",
    ks: Annotated[
        str, typer.Option(help="Exhaustive top-k depths for candidate recall")
    ] = "1,10,100",
    targets: Annotated[
        str, typer.Option(help="Recall levels for 'candidates needed'")
    ] = "0.8,0.9,0.95,0.99",
    k: Annotated[
        int, typer.Option("-k", "--k", help="k of end-to-end Recall@k vs exhaustive")
    ] = 10,
    search_candidates: Annotated[
        int | None,
        typer.Option(help="N of the real search run (default: the index's default_candidates)"),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(help="Query encoder name or precomputed-vectors path (default: the index's)"),
    ] = None,
    mode: Annotated[str, typer.Option(help="Token store: memory | mmap | ssd")] = "memory",
    max_queries: Annotated[int | None, typer.Option(help="Only the first queries")] = None,
    backends: Annotated[
        str,
        typer.Option(help="Other first stages to build aside and compare, e.g. 'hnsw,ivfpq'"),
    ] = "",
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Sweep instead, e.g. 'fde=2560,5120,r20k5d16f4096,pool=1,2,stage=exact,hnsw'"
        ),
    ] = None,
    vectors: Annotated[
        Path | None,
        typer.Option(help="Precomputed vectors for --sweep (documents + queries tables)"),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache of query vectors and exhaustive MaxSim (default: <output>/cache)"),
    ] = None,
    keep_indexes: Annotated[bool, typer.Option(help="--sweep: keep the built indexes")] = False,
    plots: Annotated[bool, typer.Option(help="Write PNG plots")] = True,
    progress: Annotated[bool, typer.Option(
        help="One bar per stage; --no-progress: none at all (the encoder's included)")] = True,
    ignore_identical_ids: Annotated[bool, typer.Option(
        "--ignore-identical-ids/--keep-identical-ids",
        help="Drop a hit whose id equals the query id before the judged metrics (BEIR's "
             "default, for datasets whose queries are also documents)")] = True,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report")] = False,
    hybrid: Annotated[bool, typer.Option(
        "--hybrid", help="BM25 alone, mvr alone and fused runs: nDCG@10, Recall@100")] = False,
    fusions: Annotated[str, typer.Option(
        help="--hybrid: fused runs, e.g. 'rrf,weighted:0.5,rrf:k=20:norescore'")] = "rrf,weighted",
    exhaustive: Annotated[bool, typer.Option(help="--hybrid: also exhaustive MaxSim")] = False,
) -> None:
    """Evaluate an index against its judgments and its own exhaustive MaxSim.

    nDCG@10, Recall@10/100, MRR@10, MAP@100 against the judgments (qrels); first-stage
    candidate recall of the exhaustive MaxSim top-k over a grid of N and the N needed for
    80/90/95/99% (MUVERA Table 1 shape); end-to-end Recall@k vs exhaustive. Judged ids
    missing from the index are reported once and count as relevant, never retrieved
    (trec_eval). A dataset without qrels/ is evaluated against exhaustive MaxSim only.
    Writes report.json, TREC runs and plots to --out.

    Example: mvr eval scifact.mvr --dataset ../shared/data/scifact --out runs/scifact
    """
    from mvr._progress import summarised_warnings

    progress = progress and not quiet
    with console_logging(verbose, quiet), summarised_warnings("encoders"):
        _eval(index, dataset, split, output, candidates, ks, targets, k, search_candidates,
              encoder, mode, max_queries, backends, sweep, vectors, cache_dir, keep_indexes,
              plots, progress, as_json, hybrid, fusions, exhaustive, ignore_identical_ids)


def _eval(index: Path, dataset: Path, split: str, output: Path | None, candidates: str,
          ks: str, targets: str, k: int, search_candidates: int | None, encoder: str | None,
          mode: str, max_queries: int | None, backends: str, sweep: str | None,
          vectors: Path | None, cache_dir: Path | None, keep_indexes: bool, plots: bool,
          progress: bool, as_json: bool, hybrid: bool, fusions: str, exhaustive: bool,
          ignore_identical_ids: bool) -> None:
    from mvr.errors import MVRError

    try:
        common = dict(
            split=split,
            candidates=_ints(candidates, "candidates"),
            ks=_ints(ks, "ks"),
            targets=_floats(targets, "targets"),
            k=k,
            search_candidates=search_candidates,
            max_queries=max_queries,
            cache_dir=cache_dir,
            plots=plots,
            progress=progress,
        )
        if hybrid:  # serving.evaluation._hybrid_eval
            from serving.evaluation._hybrid_eval import run_hybrid_cli

            run_hybrid_cli(index, dataset, split=split, output=output, encoder=encoder, mode=mode,
                           fusions=fusions, candidates=search_candidates,
                           max_queries=max_queries, exhaustive=exhaustive, as_json=as_json)
            return
        if sweep is not None:
            _run_sweep(index, dataset, sweep, vectors, keep_indexes, as_json, common)
            return
        from serving.evaluation import evaluate, format_report

        enc = _query_encoder(index, encoder)
        out = output or Path("mvr-eval") / f"{dataset.resolve().name}-{split}"
        report = evaluate(
            index,
            dataset,
            output_dir=out,
            encoder=enc,
            mode=mode,
            backends=[b.strip() for b in backends.split(",") if b.strip()],
            ignore_identical_ids=ignore_identical_ids,
            **common,
        )
        typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
        if not as_json:
            typer.echo(f"\nreport, runs and plots: {out}")
    except MVRError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def _query_encoder(index: Path, encoder: str | None) -> Any:
    """The query encoder, without its own per-call bars (evaluate's bar counts queries):
    ``--encoder``, else the one the index records (None for an index built from vectors
    without one)."""
    import encoders
    from encoders._precomputed import is_precomputed
    from encoders._source import load_index_encoder
    from mvr._manifest import read_manifest

    if encoder is not None:
        if is_precomputed(Path(encoder)):
            return encoders.load(encoder)  # looks vectors up, no options
        return encoders.load(encoder, progress=False)
    manifest = read_manifest(index)
    if manifest["encoder"] is None:
        return None
    return load_index_encoder(manifest["encoder"], manifest.get("encoder_source"),
                              where=f"index {index}", progress=False)


def _run_sweep(
    work: Path,
    dataset: Path,
    spec: str,
    vectors: Path | None,
    keep: bool,
    as_json: bool,
    common: dict,
) -> None:
    from mvr.errors import ConfigError
    from serving.evaluation import format_sweep, parse_sweep
    from serving.evaluation import sweep as run_sweep

    if vectors is None:
        raise ConfigError(
            "--sweep needs --vectors: a precomputed documents + queries table "
            "(scripts/encode_corpus.py writes one)"
        )
    summary = run_sweep(dataset, vectors, work, parse_sweep(spec), keep_indexes=keep, **common)
    typer.echo(json.dumps(summary, indent=2) if as_json else format_sweep(summary))
    if not as_json:
        typer.echo(f"\nsweep results: {work / 'sweep.json'}")

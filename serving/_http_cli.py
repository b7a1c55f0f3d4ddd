"""``mvr serve``: run the HTTP service over an index under uvicorn (registered in mvr.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["serve_command"]


def serve_command(
    index: Annotated[Path, typer.Argument(help="Index directory to serve.")],
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind (default 127.0.0.1; keep it unless behind a proxy)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port, 0 = any free one (default 8000).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MVR_API_KEY", help="Require header X-API-Key with this value (env MVR_API_KEY)."
        ),
    ] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Encoder name or path (default: the index's own).")
    ] = None,
    preload_encoder: Annotated[
        bool | None,
        typer.Option(
            "--preload-encoder/--no-preload-encoder",
            help="Load the encoder at startup, else on the first text query (default: load).",
        ),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Re-ranking table: memory, mmap or ssd (default memory).")
    ] = None,
    store_options: Annotated[
        str | None, typer.Option(help='Store options as JSON, e.g. \'{"cache_bytes": 1e8}\'.')
    ] = None,
    batch_window_ms: Annotated[
        float | None, typer.Option(help="Micro-batching window in ms (0: off).")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Most queries per batch.")] = None,
    queue_size: Annotated[
        int | None, typer.Option(help="Waiting requests before 503.")
    ] = None,
    max_k: Annotated[int | None, typer.Option(help="Largest k a request may ask.")] = None,
    max_candidates: Annotated[int | None, typer.Option(help="Largest candidates.")] = None,
    max_queries_per_request: Annotated[int | None, typer.Option(help="Queries per request.")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ray: Annotated[bool, typer.Option(
        "--ray", help="Serve sharded on Ray Serve (mvr[distributed]), a local Ray or "
                      "--ray-address; needs --shards")] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="--ray: a running cluster ('auto', 'HOST:6379', 'ray://HOST:10001')")] = None,
    shards: Annotated[int | None, typer.Option(
        help="--ray: shard replicas K, each a disjoint run of the index's segments")] = None,
    shard_cpus: Annotated[float, typer.Option(help="--ray: CPUs reserved per shard")] = 1.0,
    shard_timeout: Annotated[float, typer.Option(
        help="--ray: seconds a shard may take before it counts as down (503)")] = 30.0,
    request_timeout: Annotated[float | None, typer.Option(
        help="--ray: end-to-end seconds per HTTP request at Serve's proxy (408 after; "
             "Serve's request_timeout_s; default none)")] = None,
) -> None:
    """Serve an index over HTTP: POST /search, /rerank, /explain; GET /health, /stats; page at /.

    Every setting can also come from an MVR_* environment variable (see
    serving.http.ServerSettings, e.g. MVR_MAX_TEXT_CHARS); options given here win.

    With --ray --shards K: K shard replicas and an ingress on Ray Serve, the same
    HTTP API (/stats lists each shard's health; a shard down answers 503, or with
    "partial_results": true the other shards' results flagged "partial").

    Example: mvr serve scifact.mvr --port 8000
    """
    import uvicorn
    from pydantic import ValidationError

    from mvr.format import MANIFEST_NAME
    from serving.http import ServerSettings, create_app

    given: dict[str, Any] = {
        "index_path": index, "host": host, "port": port, "encoder": encoder,
        "preload_encoder": preload_encoder, "mode": mode, "api_key": api_key,
        "batch_window_ms": batch_window_ms, "max_batch_size": max_batch_size,
        "queue_size": queue_size, "max_k": max_k, "max_candidates": max_candidates,
        "max_queries_per_request": max_queries_per_request, "max_body_bytes": max_body_bytes,
    }
    kwargs = {k: v for k, v in given.items() if v is not None}
    try:
        if store_options is not None:
            kwargs["store_options"] = json.loads(store_options)
        settings = ServerSettings(**kwargs)
    except (ValidationError, json.JSONDecodeError) as e:
        raise typer.BadParameter(str(e)) from e
    if not (index / MANIFEST_NAME).is_file():
        raise typer.BadParameter(f"{index}: expected an mvr index (manifest.json), found none")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: binding {settings.host}, reachable beyond this machine", err=True)
    if ray or shards is not None or ray_address is not None or request_timeout is not None:
        _serve_on_ray(settings, ray, ray_address, shards, shard_cpus, shard_timeout,
                      request_timeout)
        return
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
        access_log=False,
    )


def _serve_on_ray(settings: Any, ray: bool, address: str | None, shards: int | None,
                  shard_cpus: float, shard_timeout: float, request_timeout: float | None
                  ) -> None:
    """``--ray``: deploy on Ray Serve (serving._ray_serve) and serve until interrupted."""
    if not ray:
        raise typer.BadParameter("--shards, --ray-address and --request-timeout need --ray "
                                 "(sharded serving runs on Ray)")
    if shards is None:
        raise typer.BadParameter("--ray: expected --shards K (shard replicas), got none")
    from mvr.errors import MVRError

    try:
        from serving._ray_serve import ShardedServeConfig, run_sharded
    except ImportError as e:
        raise typer.BadParameter(f"--ray needs Ray Serve: pip install 'mvr[distributed]' ({e})"
                                 ) from e
    try:
        cfg = ShardedServeConfig(shards=shards, shard_cpus=shard_cpus,
                                 shard_timeout_s=shard_timeout, request_timeout_s=request_timeout)
        run_sharded(settings, cfg, address=address)
    except MVRError as e:
        raise typer.BadParameter(str(e)) from e


if __name__ == "__main__":  # python -m serving._http_cli DIR ...
    typer.run(serve_command)

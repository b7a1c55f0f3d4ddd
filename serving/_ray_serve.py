"""``mvr serve DIR --ray --shards K``: the sharded searcher on Ray Serve.

One application, ``K + 1`` deployments::

    shard_0 .. shard_{K-1}   ShardReplica: a ShardSearcher over its run of segments
                             (its first stages, centroid ids and lists, token table)
    ingress                  the HTTP app of ``mvr serve`` (create_app) over a
                             ShardedSearcher whose shards are Serve handles: it encodes
                             each query once, fans out the query FDE and token vectors,
                             merges (serving._sharded)

Serve's proxy listens on ``settings.host:settings.port`` and forwards every route to
the ingress, so the HTTP API is the one of ``mvr serve`` (``/search`` with filters and
hybrid fusion, ``/rerank``, ``/explain``, ``/health``, ``/stats`` with each shard's
health). A shard replica that dies (its process killed, its node lost) fails or times
out its calls: the request answers 503, or with ``partial_results`` the other shards'
merge flagged ``partial``; Serve's controller starts a new replica, which reopens the
same snapshot, and answers are complete again.

Every replica opens the same manifest snapshot (read once by the driver and passed to
each), so shards never mix generations. The index directory must be at the same path
on every node (a shared filesystem), as for ``mvr index --ray``.

Ray is imported here and only here on the serving side (``import mvr``, ``mvr --help``
and ``mvr serve`` without ``--ray`` never load it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from mvr.errors import ConfigError
from serving._sharded import ShardedSearcher, ShardSearcher, assign_shards

__all__ = ["ShardReplica", "Ingress", "ShardedServeConfig", "build_app", "http_options",
           "run_sharded"]

APP_NAME = "mvr"


@dataclass(frozen=True, kw_only=True)
class ShardedServeConfig:
    """How the shards are deployed.

    Parameters
    ----------
    shards : int
        K: shard replicas, each a disjoint run of consecutive segments (1 <= K <= the
        index's segments).
    shard_cpus : float
        CPUs Ray reserves for each shard replica (scheduling only; 0 = none).
    ingress_cpus : float
        CPUs reserved for the ingress (it encodes queries: 1 when it loads a model).
    shard_timeout_s : float
        How long the ingress waits for a shard's answer before it counts as down.
    health_check_period_s : float
        How often Serve checks each replica (a dead one is replaced after that).
    graceful_shutdown_s : float
        How long a replica that is stopped may finish the requests it holds.
    request_timeout_s : float, optional
        End-to-end timeout of an HTTP request at Serve's proxy (``http_options``'
        ``request_timeout_s``: the proxy answers 408 after it). None: Serve's default, no
        timeout. Serve's proxy is one per cluster: the first ``serve.start`` on a cluster
        sets it, a later one does not change it.
    """

    shards: int
    shard_cpus: float = 1.0
    ingress_cpus: float = 0.0
    shard_timeout_s: float = 30.0
    health_check_period_s: float = 2.0
    graceful_shutdown_s: float = 20.0
    request_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) or self.shards < 1:
            raise ConfigError(f"shards: expected an int >= 1, got {self.shards!r}")
        for name in ("shard_cpus", "ingress_cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)!r}")
        for name in ("shard_timeout_s", "health_check_period_s", "graceful_shutdown_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: expected > 0 seconds, got {getattr(self, name)!r}")
        if self.request_timeout_s is not None and not self.request_timeout_s > 0:
            raise ConfigError(f"request_timeout_s: expected > 0 seconds or None, got "
                              f"{self.request_timeout_s!r}")


@serve.deployment(name="shard", max_ongoing_requests=16)
class ShardReplica:
    """One shard's :class:`~serving._sharded.ShardSearcher` behind a Serve deployment."""

    def __init__(self, path: str, manifest: dict[str, Any], span: tuple[int, int], shard: int,
                 mode: str, store_options: dict[str, Any]) -> None:
        self._shard = ShardSearcher(path, manifest, tuple(span), shard, mode=mode,
                                    **store_options)

    def first(self, *args: Any) -> dict[str, Any]:
        return self._shard.first(*args)

    def exact(self, *args: Any) -> dict[str, Any]:
        return self._shard.exact(*args)

    def count(self, tree: Any) -> int:
        return self._shard.count(tree)

    def exact_all(self, *args: Any) -> dict[str, Any]:
        return self._shard.exact_all(*args)

    def approx_all(self, *args: Any) -> dict[str, Any]:
        return self._shard.approx_all(*args)

    def approx_rows(self, *args: Any) -> dict[str, Any]:
        return self._shard.approx_rows(*args)

    def bm25(self, *args: Any) -> dict[str, Any]:
        return self._shard.bm25(*args)

    def vectors(self, ids: list[str]) -> dict[str, Any]:
        return self._shard.vectors(ids)

    def ids_of(self, rows: Any) -> list[str]:
        return self._shard.ids_of(rows)

    def rows_of(self, ids: list[str]) -> dict[str, int]:
        return self._shard.rows_of(ids)

    def texts(self, ids: list[str]) -> dict[str, str | None]:
        return self._shard.texts(ids)

    def stats(self) -> dict[str, Any]:
        return {**self._shard.stats(), "pid": os.getpid()}

    def pid(self) -> int:
        """The replica's process id (the kill test SIGKILLs it)."""
        return os.getpid()


class _HandleShard:
    """A Serve handle with the ``submit`` / ``result`` protocol of ``serving._sharded``."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def submit(self, method: str, *args: Any) -> Any:
        return getattr(self.handle, method).remote(*args)

    def result(self, pending: Any, timeout_s: float) -> Any:
        return pending.result(timeout_s=timeout_s)


@serve.deployment(name="ingress", max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """The ``mvr serve`` HTTP app over a :class:`~serving._sharded.ShardedSearcher`."""

    def __init__(self, settings: dict[str, Any], manifest: dict[str, Any],
                 spans: list[tuple[int, int]], timeout_s: float, *shards: Any) -> None:
        self._settings = settings
        self._manifest = manifest
        self._spans = [tuple(s) for s in spans]
        self._timeout_s = timeout_s
        self._shards = [_HandleShard(h) for h in shards]

    def __serve_build_asgi_app__(self) -> Any:
        from serving.http import ServerSettings, create_app

        return create_app(ServerSettings(**self._settings), searcher_factory=self._open)

    def _open(self, settings: Any) -> ShardedSearcher:
        encoder = None
        if settings.encoder is not None:
            import encoders

            encoder = encoders.load(settings.encoder)
        searcher = ShardedSearcher(settings.index_path, self._shards, self._spans,
                                   manifest=self._manifest, encoder=encoder,
                                   timeout_s=self._timeout_s)
        if settings.preload_encoder and encoder is None and self._manifest.get("encoder"):
            _ = searcher.encoder
        return searcher


def _settings_dict(settings: Any) -> dict[str, Any]:
    """ServerSettings as constructor arguments for the ingress replica (the secret too:
    it travels inside the cluster, never to a log)."""
    d = settings.model_dump()
    d["index_path"] = str(settings.index_path)
    if settings.api_key is not None:
        d["api_key"] = settings.api_key.get_secret_value()
    return d


def build_app(settings: Any, cfg: ShardedServeConfig) -> Any:
    """The Serve application: ``cfg.shards`` shard deployments and the ingress.

    Raises :class:`~mvr.errors.ConfigError` when K is out of range (naming the index's
    segments) and the open errors of a missing or corrupt index.
    """
    from mvr._manifest import read_manifest

    manifest = read_manifest(Path(settings.index_path))
    spans = assign_shards(manifest, cfg.shards)
    health = {"health_check_period_s": cfg.health_check_period_s,
              "health_check_timeout_s": max(cfg.health_check_period_s * 5, 10.0),
              "graceful_shutdown_timeout_s": cfg.graceful_shutdown_s,
              "graceful_shutdown_wait_loop_s": min(cfg.graceful_shutdown_s, 2.0)}
    shards = [
        ShardReplica.options(name=f"shard_{i}", ray_actor_options={"num_cpus": cfg.shard_cpus},
                             **health).bind(
            str(settings.index_path), manifest, span, i, settings.mode,
            dict(settings.store_options))
        for i, span in enumerate(spans)
    ]
    return Ingress.options(ray_actor_options={"num_cpus": cfg.ingress_cpus}, **health).bind(
        _settings_dict(settings), manifest, spans, cfg.shard_timeout_s, *shards)


def http_options(settings: Any, cfg: ShardedServeConfig) -> dict[str, Any]:
    """``serve.start``'s ``http_options``: where the proxy listens, and its end-to-end
    request timeout (Ray Serve's ``request_timeout_s``; the older
    ``SERVE_REQUEST_PROCESSING_TIMEOUT_S`` variable is deprecated by Serve)."""
    out: dict[str, Any] = {"host": settings.host, "port": settings.port}
    if cfg.request_timeout_s is not None:
        out["request_timeout_s"] = cfg.request_timeout_s
    return out


def run_sharded(settings: Any, cfg: ShardedServeConfig, *, address: str | None = None,
                blocking: bool = True) -> None:
    """Connect to Ray (``address``; None = start a local one), start Serve's proxy on
    ``settings.host:settings.port`` and deploy :func:`build_app`; with ``blocking``,
    serve until interrupted, then shut the application down."""
    import ray

    if settings.port == 0:
        raise ConfigError("port: --ray needs a fixed port (Serve's proxy binds it), got 0")
    app = build_app(settings, cfg)
    # Serve's proxies must report ready within 5 s by default: on a small, busy machine
    # they miss it and Serve restarts them in a loop. A Ray this process starts inherits
    # the environment (a running cluster keeps its own setting).
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    serve.start(http_options=http_options(settings, cfg))
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)

"""Distributed benchmark (issue 13): build throughput on Ray with 1 and 2 encoder workers,
and sharded vs single-process search latency, on PyPI.

* **build**: the first ``--docs`` PyPI texts (``/work/shared/data/pypi``) built from text
  with the default encoder: ``indexing.build_index`` in this process, then
  ``indexing._distributed.build_index_distributed`` on a local Ray with ``concurrency`` 1 and 2
  (one CPU per encoder actor, ``--segment-size`` documents per segment, so 2 workers
  have segments to share). Wall time (Ray start excluded, the driver's staging and
  codec training and the commit included), documents/s, scaling = t(1) / t(2).
* **search**: the first ``--vector-docs`` documents of the cached PyPI token vectors
  (``.cache/vectors/pypi30k``, see ``scripts/bench_scale.py``) at the default
  IndexConfig, ``--segments`` segments (a build and adds); batch-1 p50/p95 of
  ``Searcher.search`` vs ``open_local_shards(K)`` (the sharded merge in one process),
  and with ``--serve`` of ``POST /search`` (vectors) on Ray Serve with K shard
  replicas (``mvr serve --ray --shards K``: HTTP, JSON and two Serve hops included).
  Query encoding is excluded everywhere (cached query vectors); the sharded answers
  are checked against the single process's: ``agree`` = the share of queries with the
  same ids in the same order, ``max_score_diff`` = the largest absolute difference of
  the scores at equal ranks (``scripts/check_sharded_scifact.py`` checks every SciFact
  query, tie-tolerant, and fails on differences).

::

    .venv/bin/python scripts/bench_distributed.py --docs 4000 --vector-docs 30000 \\
        --queries 200 --shards 2 --serve --out runs/distributed
    .venv/bin/python scripts/bench_distributed.py --smoke    # a minute: checks it runs

Prints a markdown table and writes ``OUT/distributed.json``. On a 2-core machine the two
workers share the cores with the driver and Ray's own processes: the scaling measured
here is a floor, not what separate nodes give.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYPI = Path("/work/shared/data/pypi")
VECTORS = ROOT / ".cache/vectors/pypi30k"


def _texts(corpus: Path, n: int) -> list[tuple[str, str]]:
    from indexing.corpus import read_corpus

    out = []
    for doc in read_corpus(corpus):
        out.append((doc[0], doc[1]))
        if len(out) == n:
            break
    return out


def bench_build(corpus: Path, n: int, segment_size: int, out: Path) -> dict[str, Any]:
    import ray

    import indexing
    from indexing._distributed import DistributedConfig, build_index_distributed

    docs = _texts(corpus, n)
    res: dict[str, Any] = {"documents": len(docs), "segment_size": segment_size}
    import encoders

    encoder = encoders.load("default")
    encoder.encode_documents([t for _, t in docs[:64]])  # model loaded and warm
    t = time.perf_counter()
    indexing.build_index(out / "single", docs, encoder, progress=False, overwrite=True)
    res["single_s"] = time.perf_counter() - t
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        for workers in (1, 2):
            cluster = DistributedConfig(concurrency=workers, num_cpus=1.0,
                                        segment_size=segment_size)
            t = time.perf_counter()
            build_index_distributed(out / f"ray{workers}", docs, "default",
                                    cluster=cluster, progress=False, overwrite=True)
            res[f"ray{workers}_s"] = time.perf_counter() - t
    finally:
        ray.shutdown()
    for key in ("single", "ray1", "ray2"):
        res[f"{key}_docs_per_s"] = len(docs) / res[f"{key}_s"]
    res["scaling_2_over_1"] = res["ray1_s"] / res["ray2_s"]
    return res


def _vector_docs(vectors: Path, lo: int, hi: int):
    import encoders

    table = encoders._precomputed.PrecomputedTable(vectors / "documents")
    ids = np.load(vectors / "documents" / "ids.npy", mmap_mode="r")
    for a in range(lo, hi, 4096):
        rows = np.arange(a, min(a + 4096, hi))
        mv = table.get(rows)
        for i, r in enumerate(rows.tolist()):
            yield str(ids[r]), np.asarray(mv[i], dtype=np.float32)


def build_vector_index(vectors: Path, n: int, segments: int, path: Path) -> None:
    from indexing import IndexWriter, build_index

    cuts = np.linspace(0, n, segments + 1).astype(int)
    build_index(path, _vector_docs(vectors, 0, int(cuts[1])), progress=False, overwrite=True)
    with IndexWriter(path) as w:
        for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
            w.add(_vector_docs(vectors, int(a), int(b)))


Ranked = tuple[list[list[str]], list[np.ndarray]]  # ids and scores per query


def _latency(search: Any, queries: Any) -> tuple[dict[str, float], Ranked]:
    """Batch-1 p50/p95 of ``search`` (which returns ``(ids, scores)`` per query batch)."""
    search(queries[:2])  # warm-up (numba, faiss)
    lat, ids, scores = [], [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        got_ids, got_scores = search(queries[i : i + 1])
        lat.append(time.perf_counter() - t)
        ids += got_ids
        scores += [np.asarray(s, dtype=np.float64) for s in got_scores]
    return {"p50_ms": 1e3 * float(np.percentile(lat, 50)),
            "p95_ms": 1e3 * float(np.percentile(lat, 95))}, (ids, scores)


def _agree(ref: Ranked, got: Ranked) -> dict[str, float]:
    """``agree``: share of queries with the same ids in the same order; ``max_score_diff``:
    the largest absolute score difference at equal ranks (inf where the lengths differ)."""
    same = [x == y for x, y in zip(ref[0], got[0], strict=True)]
    diffs = [float(np.abs(a - b).max()) if len(a) == len(b) and len(a) else
             0.0 if len(a) == len(b) else float("inf")
             for a, b in zip(ref[1], got[1], strict=True)]
    return {"agree": float(np.mean(same)), "max_score_diff": max(diffs, default=0.0)}


def bench_search(vectors: Path, n: int, segments: int, nq: int, shards: int, mode: str,
                 serve: bool, out: Path) -> dict[str, Any]:
    import encoders
    from serving import Searcher
    from serving._sharded import open_local_shards

    path = out / "vectors.mvr"
    t = time.perf_counter()
    build_vector_index(vectors, n, segments, path)
    res: dict[str, Any] = {"documents": n, "segments": segments, "shards": shards,
                           "mode": mode, "queries": nq, "build_s": time.perf_counter() - t}
    _, q, _, _ = encoders.read_precomputed(vectors / "queries.zarr")
    q = q[:nq].astype(np.float32)
    with Searcher.open(path, mode=mode) as single:
        res["single"], ref = _latency(lambda x: _ranked(single.search(x, k=10)), q)
    sharded = open_local_shards(path, shards, mode=mode)
    try:
        res["local_shards"], got = _latency(lambda x: _ranked(sharded.search(x, k=10)), q)
        res["local_shards"].update(_agree(ref, got))
    finally:
        sharded.close()
    if serve:
        res["ray_serve_http"] = _bench_serve(path, q, shards, mode, ref)
    return res


def _ranked(results: Any) -> Ranked:
    return results.ids, list(results.scores)


def _bench_serve(path: Path, q: Any, shards: int, mode: str, ref: Ranked) -> dict[str, Any]:
    import httpx
    import ray
    from ray import serve

    from serving._ray_serve import APP_NAME, ShardedServeConfig, build_app
    from serving.http import ServerSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServerSettings(index_path=path, mode=mode, preload_encoder=False,
                                  batch_window_ms=0)
        cfg = ShardedServeConfig(shards=shards, shard_cpus=0.5, graceful_shutdown_s=1.0)
        serve.run(build_app(settings, cfg), name=APP_NAME, route_prefix="/")
        with httpx.Client(timeout=60) as c:
            def search(x: Any) -> Ranked:
                r = c.post(f"http://127.0.0.1:{port}/search",
                           json={"vectors": [v.tolist() for v in x], "k": 10,
                                 "return_texts": False})
                r.raise_for_status()
                rows = r.json()["results"]
                return [row["ids"] for row in rows], [np.asarray(row["scores"]) for row in rows]

            lat, got = _latency(search, q)
        return {**lat, **_agree(ref, got)}
    finally:
        serve.shutdown()
        ray.shutdown()


def _table(res: dict[str, Any]) -> str:
    lines = []
    b = res.get("build")
    if b:
        lines += [f"build from text, {b['documents']:,} PyPI documents, segments of "
                  f"{b['segment_size']:,}", "",
                  "| build | wall s | docs/s |", "|---|---:|---:|"]
        for key, name in (("single", "build_index (1 process)"),
                          ("ray1", "Ray, 1 encoder worker"), ("ray2", "Ray, 2 encoder workers")):
            lines.append(f"| {name} | {b[f'{key}_s']:.1f} | {b[f'{key}_docs_per_s']:.1f} |")
        lines += ["", f"scaling 2 workers / 1: {b['scaling_2_over_1']:.2f}x", ""]
    s = res.get("search")
    if s:
        lines += [f"search, {s['documents']:,} documents in {s['segments']} segments, "
                  f"{s['queries']} queries, batch 1, mode {s['mode']}", "",
                  "| searcher | p50 ms | p95 ms | same ids as single | max abs score diff |",
                  "|---|---:|---:|---:|---:|"]
        for key, name in (("single", "Searcher (1 process)"),
                          ("local_shards", f"{s['shards']} shards, one process"),
                          ("ray_serve_http", f"{s['shards']} shards, Ray Serve over HTTP")):
            if key in s:
                r = s[key]
                agree = f"{r['agree']:.3f}" if "agree" in r else "-"
                diff = f"{r['max_score_diff']:.2e}" if "max_score_diff" in r else "-"
                lines.append(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {agree} | "
                             f"{diff} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=PYPI)
    ap.add_argument("--vectors", type=Path, default=VECTORS)
    ap.add_argument("--docs", type=int, default=4000, help="texts for the build part")
    ap.add_argument("--segment-size", type=int, default=1024)
    ap.add_argument("--vector-docs", type=int, default=30_000)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--mode", default="ssd", choices=("memory", "mmap", "ssd"))
    ap.add_argument("--serve", action="store_true", help="also Ray Serve over HTTP")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/distributed")
    a = ap.parse_args()
    if a.smoke:
        a.docs, a.segment_size, a.vector_docs, a.queries = 512, 256, 3000, 10
    a.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"args": {k: str(v) for k, v in vars(a).items()}}
    if not a.skip_build:
        res["build"] = bench_build(a.corpus, a.docs, a.segment_size, a.out / "build")
    res["search"] = bench_search(a.vectors, a.vector_docs, a.segments, a.queries, a.shards,
                                 a.mode, a.serve, a.out)
    (a.out / "distributed.json").write_text(json.dumps(res, indent=2))
    print(_table(res))
    if a.smoke:
        shutil.rmtree(a.out / "build", ignore_errors=True)


if __name__ == "__main__":
    main()

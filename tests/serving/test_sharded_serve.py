"""``mvr serve --ray --shards K`` (serving._ray_serve): real Ray Serve on a loopback
cluster, real HTTP, a real SIGKILL of a shard replica's process.

One cluster and one Serve application for the module (2 shards + the ingress): the
answers over HTTP equal the single-process searcher's (ids, scores within float
rounding); killing shard 1's replica gives 503 (Retry-After), or with
``partial_results`` exactly the answer of shard 0 alone flagged ``partial``; /stats
reports shard 1 down; when Serve has started a new replica the answers are complete
and equal to the ones before the kill again."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray.serve")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402
from ray_testlib import init_local_ray  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr import FirstStageConfig  # noqa: E402
from serving import Searcher  # noqa: E402
from serving._sharded import ShardedSearcher, ShardSearcher, assign_shards  # noqa: E402

# Ray's own processes outlive its Popen objects (they are reaped by the raylet): not ours
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ResourceWarning",
                               "ignore::pytest.PytestUnraisableExceptionWarning"),
]


_READY = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = clustered_docs(600, seed=21)
    cfg = small_config(table_dtype="res4", codec_train_tokens=600, codec_centroids=32,
                       default_candidates=60, default_rerank=15, centroid_candidates=40,
                       centroid_nprobe=4, first_stage=FirstStageConfig(kind="exact"))
    path = tmp_path_factory.mktemp("serve") / "idx"
    build_index(path, docs[:300], config=cfg, progress=False)
    with IndexWriter(path) as w:
        w.add(docs[300:])
        w.delete([d for d, _ in docs[3:600:41]])
    return path


@pytest.fixture(scope="module")
def served(index: Path) -> Any:
    """(base URL, index path): the Serve app of ``mvr serve --ray --shards 2``."""
    import ray
    from ray import serve

    from serving._ray_serve import APP_NAME, ShardedServeConfig, build_app
    from serving.http import ServerSettings

    port = _free_port()
    # Serve's controller kills a proxy not ready within 5 s; a loaded 2-core machine
    # takes longer to start its process (the raylet and its workers inherit this)
    saved = os.environ.get(_READY)
    os.environ[_READY] = "120"
    init_local_ray(2, extra_pythonpath=[str(Path(__file__).resolve().parents[2])])
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServerSettings(index_path=index, preload_encoder=False, batch_window_ms=0)
        cfg = ShardedServeConfig(shards=2, shard_cpus=0.5, shard_timeout_s=5.0,
                                 health_check_period_s=1.0, graceful_shutdown_s=0.5)
        serve.run(build_app(settings, cfg), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        if saved is None:
            os.environ.pop(_READY, None)
        else:
            os.environ[_READY] = saved


def _post(url: str, body: dict[str, Any]) -> Any:
    import httpx

    return httpx.post(url, json=body, timeout=60)


def _vectors(q: Any) -> list[list[list[float]]]:
    return [v.tolist() for v in q]


def test_http_answers_equal_the_single_process(served: str, index: Path) -> None:
    import httpx

    q = queries_like(clustered_docs(600, seed=21), 12, seed=2)
    with Searcher.open(index) as single:
        for kw in ({"k": 10}, {"k": 5, "candidates": 200}):
            r = _post(f"{served}/search", {"vectors": _vectors(q), "return_texts": False, **kw})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["partial"] is False and body["missing_shards"] == []
            ref = single.search(q, **kw)
            assert [x["ids"] for x in body["results"]] == ref.ids
            for x, s in zip(body["results"], ref.scores, strict=True):
                np.testing.assert_allclose(x["scores"], s, atol=1e-5)
        ids = ref.ids[0][:3] + ["doc-599"]
        r = _post(f"{served}/rerank", {"vectors": q[0].tolist(), "documents": ids})
        assert r.status_code == 200, r.text
        want = single.rerank(q[:1], [ids])
        assert [h["id"] for h in r.json()["results"]] == want.ids[0]
        assert _post(f"{served}/rerank", {"vectors": q[0].tolist(),
                                          "documents": ["doc-3"]}).status_code == 404  # deleted
        health = httpx.get(f"{served}/health", timeout=30).json()
        assert health["status"] == "ok" and health["num_documents"] == single.num_documents
    st = httpx.get(f"{served}/stats", timeout=30).json()["searcher"]
    assert [s["status"] for s in st["shards"]] == ["ok", "ok"]
    assert st["shards_up"] == 2 and sum(s["documents"] for s in st["shards"]) == 600 - 15


def test_killed_shard_is_503_or_partial_then_recovers(served: str, index: Path) -> None:
    import httpx
    from ray import serve

    from serving._ray_serve import APP_NAME

    q = queries_like(clustered_docs(600, seed=21), 8, seed=3)
    body = {"vectors": _vectors(q), "k": 10, "return_texts": True}
    before = _post(f"{served}/search", body).json()
    handle = serve.get_deployment_handle("shard_1", app_name=APP_NAME)
    pid = handle.pid.remote().result(timeout_s=30)
    os.kill(pid, signal.SIGKILL)  # the replica's process, as a lost node would be

    down = _post(f"{served}/search", body)
    if down.status_code == 200:
        # Serve restarted the replica (or retried the call on it) before this request
        # reached it: seen on a fast, idle machine; then only the complete answer will do
        got = down.json()
        assert got["partial"] is False and got["missing_shards"] == []
        assert [x["ids"] for x in got["results"]] == [x["ids"] for x in before["results"]]
        return
    assert down.status_code == 503, down.text
    assert "shard(s) [1]" in down.json()["detail"] and "Retry-After" in down.headers
    part = _post(f"{served}/search", {**body, "partial_results": True})
    assert part.status_code == 200, part.text
    got = part.json()
    if got["partial"] is False:
        # Serve restarted the replica between the two requests (it can be that quick on an
        # idle machine): then the answer must be the complete one, never a wrong merge
        assert [x["ids"] for x in got["results"]] == [x["ids"] for x in before["results"]]
        return
    assert got["missing_shards"] == [1]
    # exactly what shard 0 answers alone (never shard 1's documents, never a wrong merge)
    from mvr._manifest import read_manifest

    manifest = read_manifest(index)
    spans = assign_shards(manifest, 2)
    alone = ShardedSearcher(index, [ShardSearcher(index, manifest, spans[0], 0)], [spans[0]],
                            manifest=manifest)
    try:
        ref = alone.search(q, k=10)
    finally:
        alone.close()
    assert [x["ids"] for x in got["results"]] == ref.ids
    assert all(len(x["texts"]) == len(x["ids"]) for x in got["results"])  # get_texts: shard 0
    shards = httpx.get(f"{served}/stats", timeout=30).json()["searcher"]["shards"]
    assert shards[0]["status"] == "ok"
    # "down", unless Serve already restarted the replica since the partial answer (an idle
    # machine can be that quick): then the loop below sees the complete answer at once
    assert shards[1]["status"] in ("down", "ok"), shards[1]

    deadline = time.monotonic() + 180  # Serve replaces the replica: a new process
    while True:
        r = _post(f"{served}/search", body)
        if r.status_code == 200:
            break
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, "shard 1 was not restarted by Serve"
        time.sleep(0.5)
    after = r.json()
    assert after["partial"] is False
    assert [x["ids"] for x in after["results"]] == [x["ids"] for x in before["results"]]
    assert handle.pid.remote().result(timeout_s=30) != pid

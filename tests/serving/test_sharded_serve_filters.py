"""Filters, hybrid fusion and ``/explain`` through ``mvr serve --ray --shards 2``: real
Ray Serve on a loopback cluster, real HTTP, text queries encoded by the ingress with the
REAL default encoder (all-MiniLM-L6-v2); every answer is compared with the single
process (``serving.Searcher`` and ``serving._explain.explain`` on the same index).

The index (two segments, a tombstone, metadata, stored texts so BM25) is served with
Serve's proxy request timeout set from ``ShardedServeConfig.request_timeout_s``, and the
test reads the timeout back from Serve's controller."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray.serve")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from ray_testlib import init_local_ray  # noqa: E402

from serving import Searcher  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ResourceWarning",
                               "ignore::pytest.PytestUnraisableExceptionWarning"),
]

_READY = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
REQUEST_TIMEOUT_S = 150.0
TEXTS = [
    "A fever is a temporary rise in body temperature, often caused by an infection.",
    "Influenza viruses cause fever, cough and muscle aches in winter.",
    "The cat sat on the warm mat by the fire.",
    "Python lists are mutable sequences that hold references to objects.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Photosynthesis converts light energy into chemical energy in green plants.",
    "Antibiotics treat bacterial infections but do not work against viruses.",
    "Mount Everest is the highest mountain above sea level.",
    "A hash table maps keys to values with constant expected lookup time.",
    "Heat stroke happens when the body can no longer cool itself.",
    "The French Revolution began in 1789 with the storming of the Bastille.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Rust guarantees memory safety without a garbage collector.",
    "Bees communicate the location of flowers with a waggle dance.",
    "Dehydration can cause headaches, dizziness and fatigue.",
    "The Pacific is the largest and deepest of the Earth's oceans.",
    "Malaria is spread by mosquitoes and causes recurring fevers and chills.",
    "A binary search halves the search interval at every step.",
    "Coffee contains caffeine, a stimulant of the central nervous system.",
    "Jupiter is the largest planet in the solar system.",
    "Inflammation is the body's response to injury or infection.",
    "The violin has four strings tuned in perfect fifths.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "Measles is a highly contagious viral disease with fever and a rash.",
    "Glaciers carve U-shaped valleys as they move downhill.",
    "The stock market fell sharply after the announcement.",
    "Paracetamol lowers a high temperature and relieves mild pain.",
    "Tides are caused by the gravitational pull of the moon.",
    "A compiler translates source code into machine instructions.",
    "Penguins live almost exclusively in the southern hemisphere.",
]
HEALTH = {0, 1, 6, 9, 11, 14, 16, 20, 23, 26}
QUERIES = ["what causes a fever?", "how do computers run programs", "largest things on earth"]


def _items(lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"id": f"doc-{i:02d}", "text": TEXTS[i],
             "metadata": {"topic": "health" if i in HEALTH else "other", "n": i}}
            for i in range(lo, hi)]


@pytest.fixture(scope="module")
def encoder() -> Any:
    import encoders

    return encoders.load("default", progress=False)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, encoder: Any) -> Path:
    from indexing import IndexWriter, build_index
    from mvr import IndexConfig

    path = tmp_path_factory.mktemp("serve_filters") / "idx"
    build_index(path, _items(0, 18), encoder, IndexConfig(batch_size=8), progress=False)
    with IndexWriter(path, encoder=encoder) as w:
        w.add(_items(18, len(TEXTS)))
        w.delete(["doc-03"])
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(index: Path) -> Any:
    """The base URL of ``mvr serve IDX --ray --shards 2 --request-timeout 150``."""
    import ray
    from ray import serve

    from serving._ray_serve import APP_NAME, ShardedServeConfig, build_app, http_options
    from serving.http import ServerSettings

    saved = os.environ.get(_READY)
    os.environ[_READY] = "120"  # a loaded 2-core machine starts the proxy slowly
    init_local_ray(2, extra_pythonpath=[str(Path(__file__).resolve().parents[2])])
    try:
        settings = ServerSettings(index_path=index, port=_free_port(), preload_encoder=False,
                                  batch_window_ms=0)
        cfg = ShardedServeConfig(shards=2, shard_cpus=0.5, shard_timeout_s=60.0,
                                 request_timeout_s=REQUEST_TIMEOUT_S)
        serve.start(http_options=http_options(settings, cfg))  # what run_sharded does
        serve.run(build_app(settings, cfg), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        if saved is None:
            os.environ.pop(_READY, None)
        else:
            os.environ[_READY] = saved


@pytest.fixture(scope="module")
def single(index: Path, encoder: Any) -> Any:
    with Searcher.open(index, encoder=encoder) as s:
        yield s


def _post(url: str, body: dict[str, Any]) -> Any:
    import httpx

    return httpx.post(url, json=body, timeout=120)


REQUESTS = [
    {"filter": {"field": "topic", "eq": "health"}},
    {"filter": {"and": [{"field": "n", "gte": 5}, {"not": {"field": "topic", "eq": "health"}}]},
     "k": 4},
    {"filter": {"ids": ["doc-00", "doc-03", "doc-19", "doc-25", "doc-28"]}},
    {"hybrid": {}},
    {"hybrid": {"fusion": "rrf", "depth": 8}, "filter": {"field": "n", "lt": 24}},
    {"hybrid": {"fusion": "weighted", "weight": 0.3}, "filter": {"field": "topic", "eq": "other"},
     "k": 6},
]


def test_filtered_and_hybrid_http_answers_equal_the_single_process(served: str,
                                                                    single: Any) -> None:
    for req in REQUESTS:
        body = {"queries": QUERIES, "k": 5, "return_texts": False, **req}
        r = _post(f"{served}/search", body)
        assert r.status_code == 200, (req, r.text)
        got = r.json()
        assert got["partial"] is False
        kw = {"k": body["k"], "filter": req.get("filter"), "hybrid": req.get("hybrid")}
        ref = single.search(QUERIES, **kw)
        assert [x["ids"] for x in got["results"]] == ref.ids, req
        for x, s in zip(got["results"], ref.scores, strict=True):
            np.testing.assert_allclose(x["scores"], s, rtol=1e-5, atol=1e-5)
        if "filter" in req and "ids" not in req["filter"]:
            assert all(x["ids"] for x in got["results"]), req


def test_bad_filter_is_422_naming_the_field(served: str) -> None:
    r = _post(f"{served}/search", {"queries": QUERIES[:1], "filter": {"field": "year", "gte": 2000}})
    assert r.status_code == 422, r.text
    assert "unknown metadata field 'year'; expected one of 'n', 'topic'" in r.text


def test_explain_over_shards_equals_the_single_process(served: str, single: Any) -> None:
    from serving._explain import explain

    for doc_id in ("doc-00", "doc-23"):  # one in each shard
        r = _post(f"{served}/explain", {"query": QUERIES[0], "id": doc_id})
        assert r.status_code == 200, r.text
        got, want = r.json(), explain(single, QUERIES[0], doc_id)
        assert got["text"] == want.text and got["vectors"] == want.vectors
        assert got["num_vectors"] == want.num_vectors
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        assert got["total"] == pytest.approx(want.total, abs=1e-5)
        assert [m["vector"] for m in got["matches"]] == [m.vector for m in want.matches]
        np.testing.assert_allclose([m["similarity"] for m in got["matches"]],
                                   [m.similarity for m in want.matches], atol=1e-5)
        assert [t["vector"] for t in got["document_tokens"]] == [
            t.vector for t in want.document_tokens]
    r = _post(f"{served}/explain", {"query": QUERIES[0], "id": "doc-03"})  # deleted
    assert r.status_code == 404, r.text


def test_the_proxy_request_timeout_is_the_one_configured(served: str) -> None:
    from ray.serve.context import _get_global_client

    assert _get_global_client().http_config.request_timeout_s == REQUEST_TIMEOUT_S

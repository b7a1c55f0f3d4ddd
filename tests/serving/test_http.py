"""The HTTP service against a real (tiny) index: results checked against brute-force MaxSim.

The index is built by ``indexing.build_index`` from texts with a real encoder:
precomputed token vectors (``encoders.save_precomputed``, looked up by text), so
text queries work without a model. Oracles are exact MaxSim in numpy over the
same vectors (stored as float16 by the index).
"""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from serving.http import ServerSettings, create_app

DIM = 16
N_DOCS = 40
N_QUERIES = 6


def _unit(rng: np.random.Generator, t: int) -> np.ndarray:
    x = rng.standard_normal((t, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny index built from texts, the encoder directory, and the raw vectors."""
    import encoders
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    root = tmp_path_factory.mktemp("http")
    rng = np.random.default_rng(0)
    ids = [f"d{i}" for i in range(N_DOCS)]
    texts = [f"document {i} about topic {i % 7}" for i in range(N_DOCS)]
    docs = [_unit(rng, int(rng.integers(3, 12))) for _ in range(N_DOCS)]
    qids = [f"q{j}" for j in range(N_QUERIES)]
    qtexts = [f"question {j}?" for j in range(N_QUERIES)]
    queries = [_unit(rng, int(rng.integers(2, 6))) for _ in range(N_QUERIES)]
    enc_dir = root / "encoder"
    enc_dir.mkdir()
    encoders.save_precomputed(enc_dir / "documents.npz", ids, docs, texts, dtype=np.float32)
    encoders.save_precomputed(enc_dir / "queries.npz", qids, queries, qtexts, dtype=np.float32)
    encoder = encoders.load(enc_dir)
    config = IndexConfig(pooling=PoolingConfig(pool_factor=1), batch_size=16, default_candidates=20,
                         table_dtype="float16")
    build_index(root / "index", list(zip(ids, texts, strict=True)), encoder, config, progress=False)
    return {
        "index": root / "index", "encoder": str(enc_dir), "ids": ids, "texts": texts,
        "docs": docs, "qtexts": qtexts, "queries": queries,
    }


def _settings(corpus, **overrides) -> ServerSettings:
    return ServerSettings(index_path=corpus["index"], encoder=corpus["encoder"], **overrides)


@pytest.fixture(scope="module")
def client(corpus):
    with TestClient(create_app(_settings(corpus, max_k=20, max_queries_per_request=8,
                                         max_text_chars=100, max_candidates=100,
                                         max_documents_per_request=50,
                                         max_tokens_per_query=32,
                                         max_body_bytes=64 * 1024))) as c:
        yield c


def maxsim_np(q: np.ndarray, d: np.ndarray) -> float:
    """Exact MaxSim of one query against one document (document stored as float16)."""
    sim = q.astype(np.float32) @ d.astype(np.float16).astype(np.float32).T
    return float(sim.max(axis=1).sum())


def _oracle(corpus, q: np.ndarray) -> np.ndarray:
    return np.array([maxsim_np(q, d) for d in corpus["docs"]], dtype=np.float32)


def _check_topk(corpus, ids, scores, q, k):
    """Top-k ids and scores equal the brute force, allowing ties at the boundary."""
    exact = _oracle(corpus, q)
    assert len(ids) == k
    got = np.asarray(scores, dtype=np.float32)
    np.testing.assert_allclose(got, np.sort(exact)[::-1][:k], rtol=0, atol=2e-3)
    for doc_id, s in zip(ids, got, strict=True):
        assert abs(exact[corpus["ids"].index(doc_id)] - s) <= 2e-3
    assert np.all(np.diff(got) <= 1e-6)


def _vec(q: np.ndarray) -> list[list[float]]:
    return q.astype(float).tolist()


# ---------------------------------------------------------------------- happy paths
def test_health_and_openapi(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "index_loaded": True, "num_documents": N_DOCS, "dim": DIM}
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/search", "/rerank", "/explain", "/health", "/stats"}
    assert client.get("/docs").status_code == 200


def test_search_by_vectors_matches_brute_force(client, corpus):
    qs = corpus["queries"][:4]
    r = client.post("/search", json={"vectors": [_vec(q) for q in qs], "k": 5,
                                     "candidates": N_DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 5 and len(body["results"]) == 4
    for q, res in zip(qs, body["results"], strict=True):
        _check_topk(corpus, res["ids"], res["scores"], q, 5)
        assert res["texts"] == [corpus["texts"][corpus["ids"].index(d)] for d in res["ids"]]


def test_search_by_text_equals_search_by_vectors(client, corpus):
    by_text = client.post("/search", json={"queries": corpus["qtexts"], "k": 7,
                                           "candidates": N_DOCS, "return_texts": False})
    by_vec = client.post("/search", json={"vectors": [_vec(q) for q in corpus["queries"]],
                                          "k": 7, "candidates": N_DOCS, "return_texts": False})
    assert by_text.status_code == 200 and by_vec.status_code == 200
    for a, b, q in zip(by_text.json()["results"], by_vec.json()["results"], corpus["queries"],
                       strict=True):
        assert a["texts"] is None
        _check_topk(corpus, a["ids"], a["scores"], q, 7)
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)


def test_search_default_k_and_candidates(client, corpus):
    r = client.post("/search", json={"queries": corpus["qtexts"][:1]})
    assert r.status_code == 200
    body = r.json()
    assert body["k"] == 10 and body["candidates"] is None
    assert len(body["results"][0]["ids"]) == 10


def test_rerank_by_ids_orders_by_exact_maxsim(client, corpus):
    q = corpus["queries"][0]
    given = ["d5", "d1", "d30", "d5", "d17", "d2"]  # d5 twice: scored once
    r = client.post("/rerank", json={"vectors": _vec(q), "documents": given,
                                     "return_texts": True})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    unique = ["d5", "d1", "d30", "d17", "d2"]
    exact = {d: maxsim_np(q, corpus["docs"][corpus["ids"].index(d)]) for d in unique}
    assert sorted(h["id"] for h in hits) == sorted(unique)
    want = sorted(unique, key=lambda d: -exact[d])
    assert [h["id"] for h in hits] == want
    for h in hits:
        assert h["score"] == pytest.approx(exact[h["id"]], abs=2e-3)
        assert given[h["index"]] == h["id"] and h["index"] == given.index(h["id"])
        assert h["text"] == corpus["texts"][corpus["ids"].index(h["id"])]
    r2 = client.post("/rerank", json={"query": corpus["qtexts"][0], "documents": given, "k": 2})
    assert [h["id"] for h in r2.json()["results"]] == want[:2]


def test_rerank_by_texts_encodes_and_scores(client, corpus):
    q = corpus["queries"][3]
    picks = [7, 3, 25, 11]
    docs = [{"text": corpus["texts"][i], "id": f"mine-{i}"} for i in picks]
    docs.append({"text": corpus["texts"][0]})  # no id
    r = client.post("/rerank", json={"query": corpus["qtexts"][3], "documents": docs})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    exact = [float((q @ corpus["docs"][i].T).max(axis=1).sum()) for i in [*picks, 0]]
    order = np.argsort(-np.array(exact), kind="stable")
    assert [h["index"] for h in hits] == order.tolist()
    for h in hits:
        assert h["score"] == pytest.approx(exact[h["index"]], abs=1e-4)
        assert h["id"] == docs[h["index"]].get("id")


# ---------------------------------------------------------------------- errors
def _error(r: httpx.Response, status: int, *needles: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    for n in needles:
        assert n in body["detail"], body
    return body


def test_unknown_ids_answer_404_listing_them(client, corpus):
    r = client.post("/rerank", json={"vectors": _vec(corpus["queries"][0]),
                                     "documents": ["d1", "nope-1", "d2", "nope-2"]})
    body = _error(r, 404, "nope-1", "nope-2")
    assert body["error"] == "DocumentNotFoundError"
    if body.get("missing_ids") is not None:
        assert sorted(body["missing_ids"]) == ["nope-1", "nope-2"]


@pytest.mark.parametrize(
    ("payload", "status", "needles"),
    [
        ({"queries": ["a"], "k": 21}, 422, ("max_k", "21", "20")),
        ({"queries": ["a"], "candidates": 101}, 422, ("max_candidates", "101", "100")),
        ({"queries": ["a"] * 9}, 413, ("max_queries_per_request", "9", "8")),
        ({"queries": ["x" * 101]}, 413, ("max_text_chars", "101", "100")),
        ({"vectors": [[[0.1] * DIM] * 33]}, 413, ("max_tokens_per_query", "33", "32")),
    ],
)
def test_search_limits_name_the_limit_and_value(client, payload, status, needles):
    _error(client.post("/search", json=payload), status, *needles)


def test_rerank_limits(client):
    _error(client.post("/rerank", json={"query": "q", "documents": ["d1"] * 51}), 413,
           "max_documents_per_request", "51", "50")
    _error(client.post("/rerank", json={"query": "q", "documents": [{"text": "y" * 101}]}), 413,
           "max_text_chars", "101")
    _error(client.post("/rerank", json={"query": "q", "documents": ["d1"], "k": 99}), 422,
           "max_k", "99")


def test_body_size_limit_is_413(client):
    big = json.dumps({"queries": ["a" * 70_000]})
    body = _error(client.post("/search", content=big,
                              headers={"content-type": "application/json"}),
                  413, "max_body_bytes", str(64 * 1024))
    assert body["error"] == "LimitExceededError"

    def chunks():  # no Content-Length: counted while reading
        for _ in range(70):
            yield b" " * 1024

    _error(client.post("/search", content=chunks(), headers={"content-type": "application/json"}),
           413, "max_body_bytes")


def test_vector_dimension_mismatch_is_422(client):
    r = client.post("/search", json={"vectors": [[[0.1] * (DIM - 1)]]})
    _error(r, 422, f"expected dim {DIM}", f"got {DIM - 1}")
    r = client.post("/search", json={"vectors": [[[0.1] * DIM, [0.1] * (DIM + 2)]]})
    _error(r, 422, "token 1", f"got {DIM + 2}")
    r = client.post("/rerank", json={"vectors": [[0.5] * 3], "documents": ["d1"]})
    _error(r, 422, f"expected dim {DIM}", "got 3")


@pytest.mark.parametrize(
    "raw",
    [
        '{"vectors": [[[NaN' + ", 0.1" * (DIM - 1) + "]]]}",
        '{"vectors": [[[1e39' + ", 0.1" * (DIM - 1) + "]]]}",
        '{"vectors": [[]]}',
        '{"vectors": []}',
        '{"queries": []}',
        '{"queries": ["a"], "vectors": [[[0.1]]]}',
        "{}",
        '{"queries": "not a list"}',
        '{"queries": ["a"], "k": 0}',
        '{"queries": ["a"], "unknown": 1}',
        "{not json",
        '{"query": "q", "documents": []}',
        '{"documents": ["d1"]}',
        '{"query": "q", "documents": ["d1", {"text": "mixed"}]}',
    ],
)
def test_malformed_bodies_are_422_never_500(client, raw):
    path = "/rerank" if "documents" in raw else "/search"
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_text_the_encoder_cannot_encode_is_4xx(client):
    # The precomputed encoder only knows its stored texts; an unknown one is a client error.
    r = client.post("/search", json={"queries": ["a query nobody stored"]})
    assert 400 <= r.status_code < 500, r.text


def test_api_key(corpus):
    app = create_app(_settings(corpus, api_key="s3cret"))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        body = {"queries": corpus["qtexts"][:1], "k": 3}
        r = c.post("/search", json=body)
        _error(r, 401, "X-API-Key")
        assert r.headers["www-authenticate"].startswith("APIKey")
        _error(c.post("/search", json=body, headers={"X-API-Key": "wrong"}), 401, "wrong")
        assert c.get("/stats").status_code == 401
        assert c.post("/search", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert any(s.get("name") == "X-API-Key" for s in schemes.values())


def test_nothing_loads_at_import_or_create_app(tmp_path):
    from mvr.errors import IndexNotFoundError

    app = create_app(ServerSettings(index_path=tmp_path / "missing"))
    with pytest.raises(IndexNotFoundError), TestClient(app):
        pass


def test_unloadable_index_encoder_fails_startup_or_serves_vectors_only(corpus):
    from mvr.errors import EncoderMismatchError

    # The index records the precomputed encoder's identity, which encoders.load cannot find.
    with pytest.raises(EncoderMismatchError, match="--no-preload-encoder"), \
            TestClient(create_app(ServerSettings(index_path=corpus["index"]))):
        pass
    app = create_app(ServerSettings(index_path=corpus["index"], preload_encoder=False))
    with TestClient(app) as c:
        r = c.post("/search", json={"vectors": [_vec(corpus["queries"][0])], "k": 2})
        assert r.status_code == 200
        r = c.post("/search", json={"queries": [corpus["qtexts"][0]], "k": 2})
        assert r.status_code == 409 and "encoder" in r.json()["detail"]


def test_settings_come_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MVR_INDEX_PATH", str(tmp_path))
    monkeypatch.setenv("MVR_MAX_K", "17")
    monkeypatch.setenv("MVR_STORE_OPTIONS", '{"cache_bytes": 1000}')
    s = ServerSettings()
    assert s.index_path == tmp_path and s.max_k == 17 and s.store_options == {"cache_bytes": 1000}
    assert s.host == "127.0.0.1" and s.api_key is None
    with pytest.raises(ValueError, match="default_k"):
        ServerSettings(index_path=tmp_path, max_k=5, default_k=6)
    with pytest.raises(ValueError, match="extra"):
        ServerSettings(index_path=tmp_path, max_kk=5)


# ---------------------------------------------------------------------- batching, 503, stats
async def _concurrently(app, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await asyncio.gather(*(c.post(p, json=b) for p, b in requests))


def test_concurrent_requests_are_batched_with_the_same_results(corpus):
    reqs = [("/search", {"vectors": [_vec(q)], "k": 4, "candidates": N_DOCS})
            for q in corpus["queries"]]
    reqs += [("/rerank", {"vectors": _vec(q), "documents": ["d3", "d9", "d12"]})
             for q in corpus["queries"][:3]]
    batched = asyncio.run(_concurrently(
        create_app(_settings(corpus, batch_window_ms=200.0)), reqs))
    alone = asyncio.run(_concurrently(create_app(_settings(corpus, batch_window_ms=0.0)), reqs))
    assert all(r.status_code == 200 for r in batched + alone)
    assert max(r.json()["batch_size"] for r in batched[:N_QUERIES]) > 1
    assert all(r.json()["batch_size"] == 1 for r in alone)
    for b, a in zip(batched, alone, strict=True):
        rb, ra = b.json()["results"], a.json()["results"]
        if isinstance(rb, list) and rb and "ids" in rb[0]:
            assert [x["ids"] for x in rb] == [x["ids"] for x in ra]
            np.testing.assert_allclose(rb[0]["scores"], ra[0]["scores"], atol=1e-5)
        else:
            assert [h["id"] for h in rb] == [h["id"] for h in ra]


def test_an_error_in_a_batch_reaches_only_its_request(corpus):
    q = _vec(corpus["queries"][0])
    reqs = [("/rerank", {"vectors": q, "documents": ["d1", "d2"]}),
            ("/rerank", {"vectors": q, "documents": ["d1", "missing-x"]}),
            ("/rerank", {"vectors": q, "documents": ["d4"]})]
    rs = asyncio.run(_concurrently(create_app(_settings(corpus, batch_window_ms=200.0)), reqs))
    assert [r.status_code for r in rs] == [200, 404, 200]
    assert "missing-x" in rs[1].json()["detail"]


def test_full_queue_answers_503_with_retry_after(corpus):
    app = create_app(_settings(corpus, queue_size=1, max_batch_size=1, batch_window_ms=0.0,
                               retry_after_s=3))
    reqs = [("/search", {"vectors": [_vec(corpus["queries"][0])], "k": 3})] * 40
    rs = asyncio.run(_concurrently(app, reqs))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes
    busy = next(r for r in rs if r.status_code == 503)
    assert busy.headers["retry-after"] == "3"
    assert "queue_size=1" in busy.json()["detail"]


def test_stats_count_requests_and_latencies(corpus):
    with TestClient(create_app(_settings(corpus))) as c:
        for _ in range(3):
            assert c.post("/search", json={"queries": corpus["qtexts"][:2], "k": 2}).status_code == 200
        c.post("/search", json={"queries": ["a"], "k": 0})
        c.get("/nowhere")
        s = c.get("/stats").json()
    assert s["requests"]["/search"] == {"200": 3, "422": 1}
    assert s["requests"]["other"] == {"404": 1}
    lat = s["latency_ms"]["/search"]
    assert lat["count"] == 4 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert s["batching"]["queries"] == 6 and s["batching"]["batches"] >= 1
    assert isinstance(s["searcher"], dict)


# ---------------------------------------------------------------------- schema fuzzing
@pytest.mark.parametrize(("path", "method"), [("/search", "POST"), ("/rerank", "POST"),
                                              ("/stats", "GET"), ("/health", "GET")])
def test_fuzzed_requests_never_answer_5xx(corpus, path, method):
    """schemathesis generates requests from the OpenAPI schema (valid and not); no 5xx."""
    import schemathesis
    from hypothesis import given
    from schemathesis.checks import not_a_server_error

    app = create_app(_settings(corpus, max_k=50, max_candidates=200, max_queries_per_request=8,
                               max_body_bytes=256 * 1024))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    strategy = schema[path][method].as_strategy()

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()

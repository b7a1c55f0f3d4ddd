"""The HTTP service with a real transformer encoder (a tiny random Stanford ColBERT checkpoint).

Text queries and ``/rerank`` of texts go through ``encoders.load(checkpoint)``; the
oracle is exact MaxSim in numpy over that encoder's own outputs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.http import ServerSettings, create_app

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "cat", "runs",
         "fast", "and", "sleeps", "on", "mat", "red", "blue", "green", "is", "big"]


def _tiny_checkpoints():
    """The encoders tests' checkpoint builder (tests/encoders/_tiny_checkpoints.py)."""
    path = Path(__file__).resolve().parents[1] / "encoders" / "_tiny_checkpoints.py"
    spec = importlib.util.spec_from_file_location("_http_tiny_checkpoints", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import encoders
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    root = tmp_path_factory.mktemp("http_enc")
    ckpt = _tiny_checkpoints().build_stanford(root / "colbert")
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(25)]
    ids = [f"t{i}" for i in range(len(texts))]
    encoder = encoders.load(ckpt, progress=False)
    config = IndexConfig(pooling=PoolingConfig(pool_factor=1), batch_size=10, table_dtype="float16")
    build_index(root / "index", list(zip(ids, texts, strict=True)), encoder, config,
                progress=False)
    settings = ServerSettings(index_path=root / "index", encoder=str(ckpt))
    with TestClient(create_app(settings)) as client:
        yield client, encoder, ids, texts


def _maxsim(q: np.ndarray, d: np.ndarray) -> float:
    return float((q.astype(np.float32) @ d.astype(np.float32).T).max(axis=1).sum())


def test_text_search_with_a_transformer_encoder(served):
    client, encoder, ids, texts = served
    queries = ["quick brown dog", "a cat sleeps on the mat"]
    r = client.post("/search", json={"queries": queries, "k": 5, "candidates": len(ids)})
    assert r.status_code == 200, r.text
    qv, dv = encoder.encode_queries(queries), encoder.encode_documents(texts)
    for i, res in enumerate(r.json()["results"]):
        exact = np.array([_maxsim(qv[i], dv[j].astype(np.float16)) for j in range(len(ids))])
        np.testing.assert_allclose(res["scores"], np.sort(exact)[::-1][:5], atol=5e-3)
        for doc_id, s in zip(res["ids"], res["scores"], strict=True):
            assert exact[ids.index(doc_id)] == pytest.approx(s, abs=5e-3)


def test_rerank_texts_with_a_transformer_encoder(served):
    client, encoder, _, _ = served
    docs = ["the lazy dog", "green fox jumps", "a big red cat runs fast", "mat"]
    r = client.post("/rerank", json={"query": "red cat", "documents": [{"text": d} for d in docs]})
    assert r.status_code == 200, r.text
    qv, dv = encoder.encode_queries(["red cat"]), encoder.encode_documents(docs)
    exact = np.array([_maxsim(qv[0], dv[j]) for j in range(len(docs))])
    hits = r.json()["results"]
    assert [h["index"] for h in hits] == np.argsort(-exact, kind="stable").tolist()
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(exact)[::-1], atol=1e-4)

"""``POST /search`` with ``filter`` and ``hybrid``: validated, 422 naming the bad clause."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.http import ServerSettings, create_app

DIM = 16
N_DOCS = 30


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import encoders
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    root = tmp_path_factory.mktemp("httpf")
    rng = np.random.default_rng(0)

    def unit(t):
        x = rng.standard_normal((t, DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    ids = [f"d{i}" for i in range(N_DOCS)]
    texts = [f"document {i} about topic {i % 7}" for i in range(N_DOCS)]
    enc_dir = root / "encoder"
    enc_dir.mkdir()
    encoders.save_precomputed(enc_dir / "documents.npz", ids, [unit(int(rng.integers(3, 9))) for _ in ids],
                              texts, dtype=np.float32)
    encoders.save_precomputed(enc_dir / "queries.npz", ["q0", "q1"], [unit(3), unit(4)],
                              ["question 0?", "topic 3"], dtype=np.float32)
    encoder = encoders.load(enc_dir)
    docs = [(d, t, {"year": 2000 + i, "topic": f"t{i % 7}"}) for i, (d, t) in enumerate(zip(ids, texts, strict=True))]
    build_index(root / "index", docs, encoder,
                IndexConfig(pooling=PoolingConfig(pool_factor=1), batch_size=16, default_candidates=20),
                progress=False)
    with TestClient(create_app(ServerSettings(index_path=root / "index", encoder=str(enc_dir)))) as c:
        yield c


def test_filtered_search(client):
    r = client.post("/search", json={"queries": ["question 0?"], "k": 5,
                                     "filter": {"field": "year", "gte": 2020}})
    assert r.status_code == 200, r.text
    ids = r.json()["results"][0]["ids"]
    assert len(ids) == 5 and all(int(d[1:]) >= 20 for d in ids)


def test_hybrid_search(client):
    r = client.post("/search", json={"queries": ["topic 3"], "k": 4, "hybrid": {"fusion": "weighted"},
                                     "filter": {"field": "topic", "in": ["t3", "t4"]}})
    assert r.status_code == 200, r.text
    ids = r.json()["results"][0]["ids"]
    assert len(ids) == 4 and all(int(d[1:]) % 7 in (3, 4) for d in ids)


@pytest.mark.parametrize("body, message", [
    ({"filter": {"field": "year", "gte": "2000"}}, "filter.gte: expected a number, got str '2000'"),
    ({"filter": {"and": [{"field": "year", "eq": 1}, {"nor": []}]}}, "filter.and[1]: expected one of"),
    ({"filter": {"field": "colour", "eq": "red"}}, "unknown metadata field 'colour'; expected one of 'topic', 'year'"),
    ({"filter": {"field": "topic", "lt": 3}}, "'range' on field 'topic' expects a field of type number"),
    ({"hybrid": {"fusion": "max"}}, "fusion"),
    ({"hybrid": {"weight": 2}}, "weight"),
])
def test_bad_filters_and_hybrid_options_are_422(client, body, message):
    r = client.post("/search", json={"queries": ["question 0?"], "k": 3, **body})
    assert r.status_code == 422, r.text
    assert message in r.text


def test_hybrid_needs_texts(client):
    r = client.post("/search", json={"vectors": [[[1.0] + [0.0] * (DIM - 1)]], "k": 3, "hybrid": {}})
    assert r.status_code == 422 and "'hybrid' needs query texts" in r.text

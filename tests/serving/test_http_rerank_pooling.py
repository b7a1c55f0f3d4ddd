"""``POST /rerank`` of texts scores documents as the index stores them (pooled per the
manifest's pooling config), so its scores are on the scale of ``/rerank`` by ids."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.http import ServerSettings, create_app

DIM = 16


def _unit(rng: np.random.Generator, t: int) -> np.ndarray:
    x = rng.standard_normal((t, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rerank_by_text_pools_like_the_index(tmp_path) -> None:
    import encoders
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    rng = np.random.default_rng(7)
    ids = [f"d{i}" for i in range(12)]
    texts = [f"pooled document {i}" for i in range(12)]
    docs = [_unit(rng, int(rng.integers(6, 14))) for _ in ids]
    enc_dir = tmp_path / "encoder"
    enc_dir.mkdir()
    encoders.save_precomputed(enc_dir / "documents.npz", ids, docs, texts, dtype=np.float32)
    encoders.save_precomputed(enc_dir / "queries.npz", ["q"], [_unit(rng, 4)], ["a question"],
                              dtype=np.float32)
    config = IndexConfig(pooling=PoolingConfig(pool_factor=3), batch_size=8, table_dtype="float16")
    build_index(tmp_path / "index", list(zip(ids, texts, strict=True)), encoders.load(enc_dir),
                config, progress=False)
    settings = ServerSettings(index_path=tmp_path / "index", encoder=str(enc_dir))
    with TestClient(create_app(settings)) as c:
        by_id = c.post("/rerank", json={"query": "a question", "documents": ids})
        by_text = c.post("/rerank", json={"query": "a question",
                                          "documents": [{"text": t} for t in texts]})
    assert by_id.status_code == 200 and by_text.status_code == 200, (by_id.text, by_text.text)
    id_scores = {h["id"]: h["score"] for h in by_id.json()["results"]}
    text_scores = {ids[h["index"]]: h["score"] for h in by_text.json()["results"]}
    assert text_scores.keys() == id_scores.keys()
    for d in ids:  # the index stores float16: equal within its rounding
        assert text_scores[d] == pytest.approx(id_scores[d], abs=5e-3), d

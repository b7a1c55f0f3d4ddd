"""A real ``mvr serve`` process (python -m mvr.cli serve) on 127.0.0.1, started by the test."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving._serve_process import start_serve, stop_serve

DIM = 8


@pytest.fixture(scope="module")
def vector_index(tmp_path_factory):
    """An index built from token vectors (no encoder), with texts stored."""
    from indexing import build_index
    from mvr import PoolingConfig
    from mvr._index_config import IndexConfig

    rng = np.random.default_rng(1)
    docs = []
    for i in range(30):
        x = rng.standard_normal((int(rng.integers(2, 9)), DIM)).astype(np.float32)
        docs.append((f"doc-{i}", f"text of doc {i}", x / np.linalg.norm(x, axis=1, keepdims=True)))
    path = tmp_path_factory.mktemp("served") / "index"
    config = IndexConfig(pooling=PoolingConfig(pool_factor=1), batch_size=8)
    build_index(path, docs, None, config, progress=False)
    return path, docs


def _start(index: Path, *args: str, env: dict[str, str] | None = None):
    root = Path(__file__).resolve().parents[2]
    return start_serve([str(index), *args], timeout=60, cwd=root,
                       env={**os.environ, **(env or {})})


def test_mvr_serve_process_answers_and_stops(vector_index):
    index, docs = vector_index
    proc, port, lines = _start(index, "--batch-window-ms", "1", env={"MVR_API_KEY": "k3y", "MVR_MAX_K": "20"})
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as c:
            # uvicorn reports its port after the lifespan has loaded the index: ready now
            assert c.get("/health").json()["num_documents"] == 30
            q = docs[4][2][:2]
            body = {"vectors": [q.tolist()], "k": 3, "candidates": 30}
            assert c.post("/search", json=body).status_code == 401
            r = c.post("/search", json=body, headers={"X-API-Key": "k3y"})
            assert r.status_code == 200, r.text
            res = r.json()["results"][0]
            exact = [float((q @ d[2].astype(np.float16).astype(np.float32).T).max(1).sum())
                     for d in docs]
            want = [docs[i][0] for i in np.argsort(exact)[::-1][:3]]
            assert res["ids"] == want
            assert res["texts"] == [f"text of {w.replace('-', ' ')}" for w in want]
            r = c.post("/search", json={**body, "k": 21}, headers={"X-API-Key": "k3y"})
            assert r.status_code == 422 and "max_k: got 21" in r.json()["detail"]  # from the env
            # the index records no encoder: a text query is a client error, not a 500
            r = c.post("/search", json={"queries": ["hello"]}, headers={"X-API-Key": "k3y"})
            assert r.status_code == 422 and "encoder" in r.json()["detail"]
    finally:
        out = stop_serve(proc, timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), "".join(lines) + out
    assert "Application shutdown complete" in out


def test_mvr_serve_refuses_a_directory_without_index(tmp_path):
    from typer.testing import CliRunner

    from mvr.cli import app

    r = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "0"])
    assert r.exit_code != 0
    assert "manifest.json" in r.output
    r = CliRunner().invoke(app, ["serve", str(tmp_path), "--mode", "tape"])
    assert r.exit_code != 0 and "mode" in r.output

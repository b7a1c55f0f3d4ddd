"""Security properties of the HTTP service, each checked directly: the API key compared in
constant time (``secrets.compare_digest``); body, text and batch limits refused before any
search runs; loopback by default; no string of a request reaches the filesystem. And
schemathesis against a real ``mvr serve`` in each store mode: no 5xx."""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from serving._serve_process import start_serve, stop_serve  # noqa: E402
from serving.http import ServerSettings, create_app  # noqa: E402

REPO = Path(__file__).parents[2]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexing import build_index

    path = tmp_path_factory.mktemp("hard") / "idx"
    docs = [(i, f"text of {i}", v) for i, v in clustered_docs(60, seed=3)]
    build_index(path, docs, None, small_config(batch_size=32), progress=False)
    return path


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the searches the service runs."""
    from serving._searcher import Searcher

    calls: list[int] = []
    real = Searcher.search

    def search(self: Any, *a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(Searcher, "search", search)
    return calls


def _client(index: Path, **kw: Any) -> TestClient:
    return TestClient(create_app(ServerSettings(index_path=index, api_key=KEY,
                                                batch_window_ms=0, **kw)))


def _query() -> list[list[float]]:
    return queries_like(clustered_docs(60, seed=3), 1)[0].tolist()


def test_api_key_is_compared_in_constant_time(index: Path, monkeypatch: pytest.MonkeyPatch,
                                              searches: list[int]) -> None:
    import serving.http._service as service

    seen: list[tuple[bytes, bytes]] = []
    real = service.secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service.secrets, "compare_digest", spy)
    with _client(index) as c:
        body = {"vectors": [_query()], "k": 3}
        assert c.post("/search", json=body, headers={"X-API-Key": "s3cret-kez"}).status_code == 401
        assert c.post("/search", json=body).status_code == 401
        assert searches == []
        assert c.post("/search", json=body, headers={"X-API-Key": KEY}).status_code == 200
    assert (b"s3cret-kez", KEY.encode()) in seen and (KEY.encode(), KEY.encode()) in seen


@pytest.mark.parametrize("what", ["body", "text", "queries", "tokens", "k"])
def test_limits_are_refused_before_any_work(index: Path, searches: list[int], what: str) -> None:
    headers = {"X-API-Key": KEY}
    with _client(index, max_body_bytes=64 * 1024, max_text_chars=50,
                 max_queries_per_request=4, max_tokens_per_query=8, max_k=20) as c:
        q = _query()
        body: dict[str, Any] = {
            "body": {"vectors": [[q[0]] * 2000]},  # ~ 300 KB of JSON
            "text": {"queries": ["x" * 51]},
            "queries": {"vectors": [q] * 5},
            "tokens": {"vectors": [[q[0]] * 9]},
            "k": {"vectors": [q], "k": 21},
        }[what]
        r = c.post("/search", json=body, headers=headers)
    assert r.status_code in (413, 422), r.text  # 413: a limit of the server, 422: of the schema
    assert searches == [], "a search ran before the limit was checked"
    name = {"body": "max_body_bytes", "text": "max_text_chars", "queries": "max_queries",
            "tokens": "max_tokens", "k": "k"}[what]
    assert name in r.text, r.text


def test_binds_loopback_unless_told_otherwise() -> None:
    assert ServerSettings(index_path=".").host == "127.0.0.1"
    from typer.testing import CliRunner

    from mvr.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--host.*127\.0\.0\.1", out), out


def test_no_request_string_reaches_the_filesystem(index: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "zz-marker"
    evil = [f"../../{marker}/passwd", f"/tmp/{marker}", f"segments/{marker}", f"~/{marker}"]
    with _client(index) as c:
        opened: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def spy_open(file: Any, *a: Any, **kw: Any) -> Any:
            opened.append(str(file))
            return real_open(file, *a, **kw)

        def spy_os_open(path: Any, *a: Any, **kw: Any) -> Any:
            opened.append(str(path))
            return real_os_open(path, *a, **kw)

        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(os, "open", spy_os_open)
        h = {"X-API-Key": KEY}
        for s in evil:
            c.post("/rerank", json={"vectors": _query(), "documents": [s, "doc-1"]}, headers=h)
            c.post("/search", json={"vectors": [_query()], "filter": {"field": s, "eq": s}},
                   headers=h)
            c.post("/search", json={"vectors": [_query()], "filter": {"ids": [s]}}, headers=h)
            c.post("/explain", json={"query": s, "id": s}, headers=h)
            c.post("/search", json={"queries": [s]}, headers=h)
            c.get(f"/{s}", headers=h)
            c.get(f"/ui/{s}", headers=h)
        monkeypatch.undo()
    assert not [p for p in opened if marker in p], opened


def _serve(index: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    proc, port, _ = start_serve([str(index), "--mode", mode, "--no-preload-encoder"], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, port


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["memory", "mmap", "ssd"])
def test_fuzzed_requests_to_a_real_server_never_answer_5xx(index: Path, mode: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    proc, port = _serve(index, mode)
    try:
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
        for path, method in (("/search", "POST"), ("/rerank", "POST"), ("/health", "GET"),
                             ("/stats", "GET")):
            strategy = schema[path][method].as_strategy()

            @given(case=strategy)
            @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            fuzz()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert c.get("/health").status_code == 200
    finally:
        out = stop_serve(proc)
    assert "Traceback" not in out, out[-3000:]

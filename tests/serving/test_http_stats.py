"""``GET /stats`` never waits on a lazy encoder load (which holds for the whole model
load) and never blocks the event loop."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import HashEncoder, small_config  # noqa: E402

from indexing import build_index  # noqa: E402
from serving import Searcher  # noqa: E402
from serving.http import ServerSettings, create_app  # noqa: E402


def test_stats_answers_while_the_encoder_loads(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    texts = [(f"d{i}", f"word{i % 5} other{i % 3} thing{i}") for i in range(20)]
    build_index(tmp_path / "idx", texts, HashEncoder(seed=0), small_config(), progress=False)
    loading, release = threading.Event(), threading.Event()

    def slow_load(self: Searcher) -> HashEncoder:  # a model load that takes until released
        loading.set()
        release.wait(30)
        return HashEncoder(seed=0)

    monkeypatch.setattr(Searcher, "_load_encoder", slow_load)
    app = create_app(ServerSettings(index_path=tmp_path / "idx", preload_encoder=False))
    # if /stats blocked the event loop, nothing in it could release the load: a timer does
    safety = threading.Timer(8.0, release.set)

    async def main() -> tuple[httpx.Response, float, httpx.Response, bool]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                search = asyncio.create_task(
                    c.post("/search", json={"queries": ["word1 thing3"], "k": 2}))
                assert await asyncio.to_thread(loading.wait, 20)
                t0 = time.perf_counter()
                stats = await c.get("/stats")
                took = time.perf_counter() - t0
                still_loading = not release.is_set()
                release.set()
                return stats, took, await search, still_loading

    safety.start()
    try:
        stats, took, search, still_loading = asyncio.run(main())
    finally:
        safety.cancel()
        release.set()
    assert still_loading and took < 2.0, took
    assert stats.status_code == 200 and stats.json()["searcher"]["documents"] == 20
    assert search.status_code == 200, search.text

"""MicroBatcher: gathering within the window, batching off, bounded queue, error isolation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.http._batcher import Job, MicroBatcher
from serving.http._errors import QueueFullError, ShuttingDownError


def _echo_runner(calls: list[list[int]]):
    def run(jobs):
        calls.append([j.payload for j in jobs])
        return [j.payload * 10 if j.payload >= 0 else ValueError(f"bad {j.payload}") for j in jobs]

    return run


async def _submit_all(batcher: MicroBatcher, payloads: list[int]) -> list:
    return await asyncio.gather(
        *(batcher.submit(Job("k", None, p)) for p in payloads), return_exceptions=True
    )


def test_concurrent_jobs_share_a_batch_and_get_their_own_result():
    calls: list[list[int]] = []

    async def main():
        b = MicroBatcher(_echo_runner(calls), window_s=0.2, max_batch_size=64, queue_size=100)
        await b.start()
        try:
            return await _submit_all(b, list(range(8))), b.stats()
        finally:
            await b.stop()

    results, stats = asyncio.run(main())
    assert results == [p * 10 for p in range(8)]
    assert sum(len(c) for c in calls) == 8
    assert max(len(c) for c in calls) > 1  # gathered
    assert stats["batches"] == len(calls) and stats["jobs"] == 8


def test_window_zero_runs_each_job_alone():
    calls: list[list[int]] = []

    async def main():
        b = MicroBatcher(_echo_runner(calls), window_s=0.0, max_batch_size=64, queue_size=100)
        await b.start()
        try:
            return await _submit_all(b, list(range(6)))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [p * 10 for p in range(6)]
    assert [len(c) for c in calls] == [1] * 6


def test_max_batch_size_bounds_a_batch():
    calls: list[list[int]] = []

    async def main():
        b = MicroBatcher(_echo_runner(calls), window_s=0.2, max_batch_size=3, queue_size=100)
        await b.start()
        try:
            return await _submit_all(b, list(range(10)))
        finally:
            await b.stop()

    assert asyncio.run(main()) == [p * 10 for p in range(10)]
    assert max(len(c) for c in calls) <= 3
    assert sorted(p for c in calls for p in c) == list(range(10))


def test_an_error_reaches_only_its_own_job():
    calls: list[list[int]] = []

    async def main():
        b = MicroBatcher(_echo_runner(calls), window_s=0.1, max_batch_size=64, queue_size=100)
        await b.start()
        try:
            return await _submit_all(b, [1, -1, 2])
        finally:
            await b.stop()

    r = asyncio.run(main())
    assert r[0] == 10 and r[2] == 20
    assert isinstance(r[1], ValueError) and "bad -1" in str(r[1])


def test_full_queue_refuses_with_queue_full_error():
    release = threading.Event()
    started = threading.Event()

    def blocking(jobs):
        started.set()
        release.wait(10)
        return [j.payload for j in jobs]

    async def main():
        b = MicroBatcher(blocking, window_s=0.0, max_batch_size=1, queue_size=1)
        await b.start()
        try:
            first = asyncio.create_task(b.submit(Job("k", None, 1)))
            while not started.is_set():  # job 1 is running in the worker thread
                await asyncio.sleep(0.005)
            second = asyncio.create_task(b.submit(Job("k", None, 2)))  # waits in the queue
            await asyncio.sleep(0.02)
            with pytest.raises(QueueFullError, match=r"queue_size=1") as info:
                await b.submit(Job("k", None, 3))
            assert info.value.retry_after_s == 1
            release.set()
            return await first, await second, b.stats()["rejected"]
        finally:
            release.set()
            await b.stop()

    assert asyncio.run(main()) == (1, 2, 1)


def test_stop_fails_waiting_jobs_with_shutting_down():
    release = threading.Event()
    started = threading.Event()

    def blocking(jobs):
        started.set()
        release.wait(10)
        return [j.payload for j in jobs]

    async def main():
        b = MicroBatcher(blocking, window_s=0.0, max_batch_size=1, queue_size=10)
        await b.start()
        first = asyncio.create_task(b.submit(Job("k", None, 1)))
        while not started.is_set():
            await asyncio.sleep(0.005)
        waiting = asyncio.create_task(b.submit(Job("k", None, 2)))
        await asyncio.sleep(0.02)
        stopping = asyncio.create_task(b.stop())
        await asyncio.sleep(0.02)
        release.set()
        await stopping
        return await first, await asyncio.gather(waiting, return_exceptions=True)

    first, (waiting,) = asyncio.run(main())
    assert first == 1
    assert isinstance(waiting, ShuttingDownError)


def test_stop_resolves_a_job_taken_into_a_forming_batch():
    calls: list[list[int]] = []

    async def main():
        b = MicroBatcher(_echo_runner(calls), window_s=5.0, max_batch_size=64, queue_size=10)
        await b.start()
        job = asyncio.create_task(b.submit(Job("k", None, 1)))
        await asyncio.sleep(0.1)
        assert b.depth == 0 and not job.done()  # taken into a batch that waits for more
        await b.stop()
        done, _ = await asyncio.wait({job}, timeout=5)
        return job in done and (job.exception() or job.result())

    out = asyncio.run(main())
    assert isinstance(out, ShuttingDownError), out  # resolved, not left waiting forever
    assert "shutting down" in str(out)


@pytest.mark.parametrize("seed", range(4))
def test_stop_under_load_resolves_every_future(seed):
    import random
    import time

    rng = random.Random(seed)

    def slow(jobs):
        time.sleep(0.002 * len(jobs))
        return [j.payload * 10 for j in jobs]

    async def main():
        b = MicroBatcher(slow, window_s=0.01, max_batch_size=8, queue_size=10_000,
                         concurrency=2)
        await b.start()
        tasks = []

        async def client(i):
            await asyncio.sleep(rng.random() * 0.2)
            return await b.submit(Job("k", None, i))

        tasks = [asyncio.create_task(client(i)) for i in range(300)]
        await asyncio.sleep(0.05 + rng.random() * 0.1)
        await b.stop()
        done, pending = await asyncio.wait(tasks, timeout=10)
        for t in pending:
            t.cancel()
        return tasks, pending

    tasks, pending = asyncio.run(main())
    assert not pending, f"{len(pending)} of {len(tasks)} futures never resolved"
    results = [t.exception() or t.result() for t in tasks]
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, ShuttingDownError) for e in failed), failed[:3]
    assert sorted(ok) == sorted(10 * i for i, r in enumerate(results) if r in ok)
    assert ok and failed  # the stop came while some were served and some waited

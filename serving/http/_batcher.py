"""Micro-batching: requests that arrive within a short window run as one batch.

Handlers :meth:`MicroBatcher.submit` a job and await its future. One asyncio
task takes the first waiting job, gathers more for ``window_s`` (or until
``max_batch_size`` queries), and hands the batch to a worker thread, so the
blocking search never runs on the event loop. While a batch runs, the next one
forms in the queue. The queue is bounded: when full, :meth:`submit` raises
:class:`QueueFullError` (answered 503 with ``Retry-After``) instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from serving.http._errors import QueueFullError, ShuttingDownError

__all__ = ["Job", "MicroBatcher"]

log = logging.getLogger("serving.http")


@dataclass(eq=False)
class Job:
    """One request's work: ``kind`` and ``key`` decide what may share a call.

    ``payload`` is whatever the runner understands; ``size`` is the number of
    queries it holds (counted against ``max_batch_size``).
    """

    kind: str
    key: Hashable
    payload: Any
    size: int = 1
    future: asyncio.Future | None = None
    submitted: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    batch_size: int = 0


#: Runs a batch in a worker thread; returns, per job, a result or the exception it raised.
BatchRunner = Callable[[Sequence[Job]], list[Any]]


class MicroBatcher:
    """Gather concurrent jobs into batches and run them off the event loop.

    Parameters
    ----------
    runner : callable
        ``runner(jobs) -> list`` (same length; an item may be an exception,
        raised to that job's caller). Called in a worker thread.
    window_s : float
        How long to wait for more jobs after the first; 0 turns batching off
        (each job runs alone).
    max_batch_size : int
        Most queries in one batch (a single larger job still runs, alone).
    queue_size : int
        Most jobs waiting; more are refused with :class:`QueueFullError`.
    concurrency : int
        Batches running at the same time (worker threads).
    retry_after_s : int
        Advertised in the 503's ``Retry-After``.
    """

    def __init__(
        self,
        runner: BatchRunner,
        *,
        window_s: float,
        max_batch_size: int,
        queue_size: int,
        concurrency: int = 1,
        retry_after_s: int = 1,
    ) -> None:
        self._runner = runner
        self.window_s = float(window_s)
        self.max_batch_size = int(max_batch_size)
        self.queue_size = int(queue_size)
        self.concurrency = int(concurrency)
        self.retry_after_s = int(retry_after_s)
        self._queue: asyncio.Queue[Job] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._carry: Job | None = None
        self._forming: list[Job] = []  # taken from the queue by _gather, not yet running
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._executor: ThreadPoolExecutor | None = None
        # counters
        self.batches = 0
        self.jobs = 0
        self.queries = 0
        self.largest_batch = 0
        self.rejected = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the gathering task (call from the running event loop)."""
        self._stopping = False
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mvr-batch")
        self._task = asyncio.create_task(self._loop(), name="mvr-batcher")

    async def stop(self) -> None:
        """Stop gathering, let running batches finish, fail jobs still waiting (queued,
        carried, or taken into a batch that was still forming) with ShuttingDownError."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        waiting = list(self._forming) + ([self._carry] if self._carry is not None else [])
        self._forming, self._carry = [], None
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if job.future is not None and not job.future.done():
                job.future.set_exception(ShuttingDownError("server is shutting down; retry"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ submit
    async def submit(self, job: Job) -> Any:
        """Queue ``job`` and wait for its result (raises what the runner returned for it)."""
        if self._stopping:
            raise ShuttingDownError("server is shutting down; retry")
        if self._queue is None or self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        job.future = asyncio.get_running_loop().create_future()
        job.submitted = time.perf_counter()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.rejected += 1
            raise QueueFullError(self.queue_size, self.retry_after_s) from None
        return await job.future

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet in a batch)."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    def stats(self) -> dict[str, float]:
        return {
            "window_ms": self.window_s * 1000.0,
            "batches": self.batches,
            "jobs": self.jobs,
            "queries": self.queries,
            "mean_jobs_per_batch": self.jobs / self.batches if self.batches else 0.0,
            "mean_queries_per_batch": self.queries / self.batches if self.batches else 0.0,
            "largest_batch": self.largest_batch,
            "queue_depth": self.depth,
            "queue_size": self.queue_size,
            "rejected": self.rejected,
            "running": len(self._running),
        }

    # ------------------------------------------------------------------ internals
    async def _next(self, timeout: float | None) -> Job | None:
        assert self._queue is not None
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _gather(self) -> list[Job]:
        first = await self._next(None)
        assert first is not None
        batch, size = [first], first.size
        self._forming = batch  # stop() fails these if it cancels the gathering
        if self.window_s <= 0:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while size < self.max_batch_size:
            job = await self._next(deadline - loop.time())
            if job is None:
                break
            if size + job.size > self.max_batch_size:
                self._carry = job  # starts the next batch
                break
            batch.append(job)
            size += job.size
        return batch

    async def _loop(self) -> None:
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                batch = await self._gather()
            except BaseException:
                self._slots.release()
                raise
            self._forming = []
            batch = [j for j in batch if j.future is not None and not j.future.done()]
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[Job]) -> None:
        assert self._slots is not None
        try:
            now = time.perf_counter()
            n = sum(j.size for j in batch)
            for j in batch:
                j.started, j.batch_size = now, n
            self.batches += 1
            self.jobs += len(batch)
            self.queries += n
            self.largest_batch = max(self.largest_batch, n)
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self._executor, self._runner, batch)
            except Exception as exc:  # the runner itself failed: every job gets the error
                log.exception("batch runner failed")
                results = [exc] * len(batch)
            if len(results) != len(batch):
                err = RuntimeError(
                    f"batch runner: expected {len(batch)} results, got {len(results)}"
                )
                log.error("%s", err)
                results = [err] * len(batch)
            for job, res in zip(batch, results, strict=True):
                if job.future is None or job.future.done():
                    continue
                if isinstance(res, BaseException):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)
        finally:
            for job in batch:  # never leave a caller waiting (cancelled, or a bug above)
                if job.future is not None and not job.future.done():
                    job.future.set_exception(ShuttingDownError("the batch was not run; retry"))
            self._slots.release()

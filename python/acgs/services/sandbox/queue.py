"""The run queue: at most ``concurrency`` runs execute at once, each in its own worker thread
(runtimes block); up to ``max_waiting`` more wait their turn, and past that callers are told
to come back later rather than piling up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from acgs.errors import AcgsError

T = TypeVar("T")


class QueueFull(AcgsError):
    code = "queue_full"


class ExecutionQueue:
    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency + max_waiting, thread_name_prefix="acgs-sandbox-run"
        )
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.peak_running = 0

    def submit(self, run: Callable[[], T], on_start: Callable[[], None] | None = None) -> concurrent.futures.Future[T]:
        """Queue ``run``; ``on_start`` is called in the worker once a slot is free. Raises
        :class:`QueueFull` when ``max_waiting`` runs already wait."""
        with self._lock:
            if self.waiting >= self.max_waiting + max(0, self.concurrency - self.running):
                raise QueueFull(f"{self.waiting} runs are already waiting (limit {self.max_waiting})")
            self.waiting += 1
        try:
            return self._pool.submit(self._in_slot, run, on_start)
        except BaseException:
            with self._lock:
                self.waiting -= 1
            raise

    def _in_slot(self, run: Callable[[], T], on_start: Callable[[], None] | None) -> T:
        self._slots.acquire()
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        try:
            if on_start is not None:
                on_start()
            return run()
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()

    async def run(self, run: Callable[[], T], on_start: Callable[[], None] | None = None) -> T:
        """Queue ``run`` and wait for it. The run goes on if the caller stops waiting (a
        client that disconnects), since its result is persisted by ``run`` itself."""
        future = self.submit(run, on_start)
        return await asyncio.shield(asyncio.wrap_future(future))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "concurrency": self.concurrency,
                "running": self.running,
                "waiting": self.waiting,
                "max_waiting": self.max_waiting,
                "peak_running": self.peak_running,
            }

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

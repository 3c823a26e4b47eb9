"""Bounded concurrency with a queue limit: excess work is refused at once, never queued forever.

A kiosk on a small ARM board has a fixed amount of CPU. Accepting unbounded work would let a
burst of requests grow memory (every request holds a decoded photograph) until the process is
killed. :class:`BoundedExecutor` runs at most ``workers`` jobs at a time, lets at most
``max_queue`` more wait, and raises :class:`Overloaded` for anything beyond that, which the
web layer turns into HTTP 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """All worker slots and queue places are taken; the caller should retry later."""


class BoundedExecutor:
    """A thread pool that admits at most ``workers + max_queue`` jobs at any moment.

    Parameters
    ----------
    workers : int
        Jobs processed in parallel (threads). The segmenter releases the GIL in native code,
        so more than one worker helps only when the board has spare cores.
    max_queue : int
        Jobs allowed to wait for a worker. Zero means "refuse whenever all workers are busy".
    """

    def __init__(self, workers: int, max_queue: int) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        self.workers = workers
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kiosk-worker")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def in_flight(self) -> int:
        """Jobs admitted and not yet finished (running plus waiting)."""
        return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise Overloaded("the scanner is busy; please try again in a moment")
            self._admitted += 1

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a worker thread, or raise :class:`Overloaded` immediately."""
        self._admit()
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Finish running jobs and stop the threads (called when the server stops)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

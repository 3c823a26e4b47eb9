"""Bounded concurrency with a queue limit: excess work is refused at once, never queued forever.

A kiosk on a small ARM board has a fixed amount of CPU. Accepting unbounded work would let a
burst of requests grow memory (every request holds a decoded photograph) until the process is
killed. :class:`BoundedExecutor` runs at most ``workers`` jobs at a time, lets at most
``max_queue`` more wait, and raises :class:`Overloaded` for anything beyond that, which the
web layer turns into HTTP 503 with ``Retry-After``.

A request is admitted only once its body has arrived, so that a client trickling its body
cannot hold a worker place. While bodies arrive, :class:`BodyBudget` bounds the bytes they
hold in memory (counted as they arrive, so trickling costs the budget nothing) and
:class:`ClientLimiter` bounds how many requests one client address has in progress.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """All worker slots and queue places are taken; the caller should retry later."""


class TooManyFromClient(Overloaded):
    """One client already has its share of requests in progress (HTTP 429)."""


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
        """Jobs admitted and not yet finished (running, waiting, or still reading their input)."""
        return self._admitted

    def admit(self) -> Slot:
        """Take a place now, or raise :class:`Overloaded`; use the slot as a context manager.

        Admission comes after the request body is read (within its deadline), so a slow
        client holds no place; :class:`BodyBudget` bounds the bodies held before admission.
        """
        with self._lock:
            if self._admitted >= self.workers + self.max_queue:
                raise Overloaded("the scanner is busy; please try again in a moment")
            self._admitted += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        """Finish running jobs and stop the threads (called when the server stops)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class Slot:
    """One admitted place. It is given back when its job finishes on the worker thread (not
    when the awaiting request is cancelled), or on leaving the ``with`` block if no job ran."""

    def __init__(self, executor: BoundedExecutor) -> None:
        self._executor = executor
        self._submitted = False

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._submitted:
            self._executor._release()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a worker thread and wait for its result."""
        future = self._executor._pool.submit(fn)
        self._submitted = True
        future.add_done_callback(lambda _: self._executor._release())
        return await asyncio.wrap_future(future)


class BodyBudget:
    """Bytes of request bodies held in memory at once, across all requests.

    Bytes are taken as they arrive, not as declared, so a client that declares 16 MB and
    sends one byte every few seconds costs one byte; a burst of large uploads beyond the
    budget is refused (503) instead of growing the process. Used from the event loop only.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used = 0

    @contextmanager
    def reserve(self) -> Iterator[Callable[[int], None]]:
        """Yield ``take(n)``, which raises :class:`Overloaded` past the budget; all bytes
        taken are given back on leaving the block (the request has finished with them)."""
        held = 0

        def take(n: int) -> None:
            nonlocal held
            if self.used + n > self.limit_bytes:
                raise Overloaded("the scanner is busy; please try again in a moment")
            self.used += n
            held += n

        try:
            yield take
        finally:
            self.used -= held


class ClientLimiter:
    """At most ``per_client`` requests of one client address in progress at once.

    Keeps one client (e.g. a slow-loris opening many sockets) from taking every connection
    the server accepts. Used from the event loop only.
    """

    def __init__(self, per_client: int) -> None:
        if per_client < 1:
            raise ValueError("per_client must be at least 1")
        self.per_client = per_client
        self._active: Counter[str] = Counter()

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._active[client] >= self.per_client:
            raise TooManyFromClient(
                f"too many requests from this client at once (at most {self.per_client})"
            )
        self._active[client] += 1
        try:
            yield
        finally:
            self._active[client] -= 1
            if not self._active[client]:
                del self._active[client]

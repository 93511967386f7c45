"""Reading one block ahead: the next block is read and parsed on a worker thread while the
caller decides this one.

Reading a file and Arrow's JSON parse release the GIL, so on a machine with a second core the
parse of block k+1 costs the pipeline nothing while it works on block k (the embedded file
source and both Flink jobs' chunk readers use it). The work is a pure function of the bytes
read: results are the same as reading in line, only sooner. At most one block is ahead, so
memory grows by one block; an early stop waits for that one block, then the worker ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["AheadReader", "read_ahead"]

T = TypeVar("T")
U = TypeVar("U")
_END = object()


def read_ahead(items: Iterator[T], work: Callable[[T], U]) -> Iterator[U]:
    """``map(work, items)``, with ``next(items)`` and ``work`` for the next item running on a
    worker thread while the caller handles the current result (errors surface in order).

    >>> list(read_ahead(iter([1, 2, 3]), lambda x: x * 10))
    [10, 20, 30]
    """

    def step() -> object:
        for item in items:
            return work(item)
        return _END

    with ThreadPoolExecutor(1, thread_name_prefix="fraudstream-read-ahead") as pool:
        pending = pool.submit(step)
        while True:
            result = pending.result()
            if result is _END:
                return
            pending = pool.submit(step)
            yield result  # type: ignore[misc]


class AheadReader(Generic[T, U]):
    """``work`` over items asked for one at a time, each known in advance by its successor
    (``following``): when asked for an item it starts the next one on a worker thread.

    A result is used only for the very item it was made for; anything else (a replay after a
    restart, an item out of plan) is worked in line, so the answer never depends on timing.

    >>> reader = AheadReader(lambda x: x * 10, lambda x: x + 1 if x < 3 else None)
    >>> reader.start(1)
    >>> [reader.get(1), reader.get(2), reader.get(2), reader.get(3)]
    [10, 20, 20, 30]
    >>> reader.close()
    """

    def __init__(
        self,
        work: Callable[[T], U],
        following: Callable[[T], T | None],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.work = work
        self.following = following
        self.on_close = on_close  # after the worker stopped (what ``work`` holds open)
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[T, Future[U]] | None = None

    def start(self, item: T) -> None:
        """Starts ``work(item)`` on the worker now, unless an item is already ahead (the
        first item of a plan, before anything is asked)."""
        if self._ahead is None:
            self._ahead = (item, self._submit(item))

    def get(self, item: T) -> U:
        """``work(item)``, made ahead if it was; the following item starts on the worker."""
        ahead, self._ahead = self._ahead, None
        following = self.following(item)
        if following is not None:
            self._ahead = (following, self._submit(following))
        if ahead is not None and ahead[0] == item:
            return ahead[1].result()
        return self.work(item)

    def _submit(self, item: T) -> Future[U]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="fraudstream-read-ahead")
        return self._pool.submit(self.work, item)

    def close(self) -> None:
        """Stops the worker (after the item it is on, if any)."""
        self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.on_close is not None:
            self.on_close()

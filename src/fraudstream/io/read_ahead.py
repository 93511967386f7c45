"""Reading one block ahead: the next block is read and parsed on a worker thread while the
caller decides this one.

Reading a file and Arrow's JSON parse release the GIL, so on a machine with a second core the
parse of block k+1 costs the pipeline nothing while it works on block k (the embedded file
source and both Flink jobs' chunk readers use it). The work is a pure function of the bytes
read: results are the same as reading in line, only sooner. At most ``depth`` blocks are
ahead (one by default), so memory grows by that many blocks; an early stop waits for the
blocks being worked, then the workers end.
"""

from __future__ import annotations

from collections import deque
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
    (``following``): up to ``depth`` items after the one asked for are worked meanwhile, each
    on its own worker thread (``work`` may serialize them, as a child process does).

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
        depth: int = 1,
    ) -> None:
        self.work = work
        self.following = following
        self.on_close = on_close  # after the workers stopped (what ``work`` holds open)
        self.depth = max(1, depth)
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: deque[tuple[T, Future[U]]] = deque()

    def start(self, item: T) -> None:
        """Starts ``work`` on ``item`` and the ``depth - 1`` items after it now, unless items
        are already ahead (the first items of a plan, before anything is asked)."""
        if not self._ahead:
            self._ahead.append((item, self._submit(item)))
            self._top_up(item, self.depth - 1)

    def get(self, item: T) -> U:
        """``work(item)``, made ahead if it was; the items after it start on the workers."""
        if self._ahead and self._ahead[0][0] == item:
            _, made = self._ahead.popleft()
            self._top_up(self._ahead[-1][0] if self._ahead else item, self.depth)
            return made.result()
        self._ahead.clear()  # out of plan: whatever was ahead is not used
        self._top_up(item, self.depth)
        return self.work(item)

    def _top_up(self, last: T, depth: int) -> None:
        """Submits the items after ``last`` until ``depth`` are ahead."""
        while len(self._ahead) < depth:
            following = self.following(last)
            if following is None:
                return
            self._ahead.append((following, self._submit(following)))
            last = following

    def _submit(self, item: T) -> Future[U]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.depth, thread_name_prefix="fraudstream-read-ahead")
        return self._pool.submit(self.work, item)

    def close(self) -> None:
        """Stops the workers (after the items they are on, if any)."""
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.on_close is not None:
            self.on_close()

"""`Pool`: many calls, each in a sandbox, on every core.

::

    Pool.submit / map / imap_unordered / amap
        │  _Work (function, arguments, a concurrent.futures.Future)
        ▼
    one queue ──> worker threads "sbm-pool-<n>-<i>", at most ``processes`` of them
                    each owns one `Sandbox(policy, max_calls=...)`:
                      max_calls=1 (default): a fresh sandbox process per call
                      max_calls=N / None:    one process serves N calls / all of them
                    and replaces it when it turns sticky (``error != 0``) or was killed

Why threads: the work happens in the sandbox processes; a host thread only waits on a
socket (no GIL held), so one thread per sandbox is all the host needs, and results arrive
as plain data without a second hop through another process.

Design choices, each visible in behaviour:

- **Per-item errors do not stop a batch.** Every item ends with a result or an exception
  (a `SandboxError`; or e.g. a `TypeError` if an argument cannot be sent). With
  ``return_exceptions=True`` the exception instance takes the item's place in the
  output; otherwise the first error is raised when its item is reached (in output order),
  as `concurrent.futures.Executor.map` does, and the batch's items not yet started are
  cancelled.
- **Bounded batches.** ``map`` reads its iterable lazily, keeping at most ``4 * processes``
  (at least 16) items submitted and not yet yielded, so an endless or huge input stream
  is fine. Items are submitted as soon as ``map`` is called (like ``Executor.map``) and
  refilled as results are taken. An ordered ``map`` waits for a slow item while the
  window fills (head-of-line); ``imap_unordered`` does not.
- **Progress** ``progress(done, total)`` is called in the thread that consumes the
  results (the caller's thread, or the event loop's for ``amap``), once per finished item,
  in completion order; ``total`` is ``len(iterable)``. An iterable without ``len()`` is
  read up front when a progress callback is given (to know ``total``).
- **Bytes-like arguments** (bytes, bytearray, memoryview) go in with ``copy_in``, as in
  `sandboxmode.run`: the function receives a read-only memoryview. They are snapshotted
  when the call starts (SPEC-7): do not mutate them until the item is done.
- **Cancellation.** Cancelling the task awaiting ``amap`` cancels the batch's queued
  items and kills its running sandboxes, then waits until they are reaped.
  ``terminate()`` (and leaving a ``with`` block by an exception) does the same for the
  whole pool. A killed or cancelled item ends with `concurrent.futures.CancelledError`.
  ``close()`` (and leaving a ``with`` block normally) finishes queued work first.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import CancelledError, Future
from types import EllipsisType, TracebackType
from typing import Any

from sandboxmode import _spawner
from sandboxmode._errors import SandboxClosed
from sandboxmode._sandbox import Sandbox
from sandboxmode._target import Isolation, _target_ref
from sandboxmode.policy import Policy

__all__ = ["Pool", "Progress"]

#: ``progress(done, total)``
Progress = Callable[[int, int], None]

_BYTES = (bytes, bytearray, memoryview)
_ids = itertools.count(1)
#: How often a kill is repeated while a killed call has not ended yet (a kill that lands
#: before the call's sandbox process exists cannot stop it; see `_Core.kill`).
_REKILL = 0.05

_ = _spawner  # imported first so that its atexit hook (zygote shutdown) runs after ours
_cores: weakref.WeakSet[_Core] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child has none of its parent's worker threads nor sandboxes: its copies
    # of the parent's pools are closed (SandboxClosed) instead of hanging on submit.
    for core in list(_cores):
        core.closed = True
        core.killing = True
        core.threads = []
        core.running = set()
        core.unused = []
        core.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Work:
    """One submitted call."""

    __slots__ = ("args", "box", "fn", "future", "killed", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future[Any] = Future()
        self.box: Sandbox | None = None  # set while the call runs (under _Core.lock)
        self.killed = False


class _Core:
    """The state the worker threads share. Holds no reference to the `Pool`, so that an
    unreachable pool is collected and its finalizer stops the workers."""

    def __init__(self, processes: int, policy: Policy, isolation: Isolation,
                 max_calls: int | None, timeout: float | EllipsisType | None,
                 first: Sandbox) -> None:
        self.processes = processes
        self.policy = policy
        self.isolation = isolation
        self.max_calls = max_calls
        self.timeout = timeout
        self.name = f"sbm-pool-{next(_ids)}"
        self.lock = threading.Lock()
        self.queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.idle = 0
        self.closed = False
        self.killing = False
        self.running: set[_Work] = set()
        self.unused: list[Sandbox] = [first]  # made in __init__, adopted by a worker

    # -- submission --------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> _Work:
        work = _Work(fn, args, kwargs)
        with self.lock:
            if self.closed:
                raise SandboxClosed("this pool is closed", {"reason": "pool closed"})
            self.queue.put(work)
            if self.idle > 0:
                self.idle -= 1
            elif len(self.threads) < self.processes:
                t = threading.Thread(target=self._worker, daemon=True,
                                     name=f"{self.name}-{len(self.threads)}")
                self.threads.append(t)
                t.start()
        return work

    # -- workers -----------------------------------------------------------------------

    def _worker(self) -> None:
        box: Sandbox | None = None
        try:
            while True:
                work = self.queue.get()
                if work is None:
                    return
                box = self._run(work, box)
                del work  # drop the arguments and the future before waiting again
                with self.lock:
                    self.idle += 1
        finally:
            if box is not None:
                box.destroy()

    def _new_box(self) -> Sandbox:
        with self.lock:
            if self.unused:
                return self.unused.pop()
        return Sandbox(self.policy, isolation=self.isolation, max_calls=self.max_calls)

    def _run(self, work: _Work, box: Sandbox | None) -> Sandbox | None:
        fut = work.future
        if not fut.set_running_or_notify_cancel():
            return box
        try:
            if box is None:
                box = self._new_box()
        except BaseException as e:
            fut.set_exception(e)
            return None
        with self.lock:
            if self.killing:  # terminate() began after this item left the queue
                work.killed = True
            work.box = box
            self.running.add(work)
            ran = not work.killed
        exc: BaseException | None = None
        result: Any = None
        if ran:
            try:
                args = tuple(box.copy_in(a) if isinstance(a, _BYTES) else a
                             for a in work.args)
                result = box.call(work.fn, *args, timeout=self.timeout, **work.kwargs)
            except BaseException as e:
                exc = e
        with self.lock:
            work.box = None
            self.running.discard(work)
            killed = work.killed
        # A sticky sandbox is of no further use; a killed one may have lost its process
        # between calls (persistent mode), which its next call would report as a fault.
        if killed or box.error != 0 or isinstance(exc, SandboxClosed):
            box.destroy()
            box = None
        if killed and (exc is not None or not ran):
            # (a call that finished before the kill landed keeps its result)
            cancelled = CancelledError("the call was cancelled and its sandbox killed")
            cancelled.__cause__ = exc
            exc = cancelled
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        return box

    # -- cancellation and shutdown -----------------------------------------------------

    def kill(self, work: _Work) -> None:
        """Cancel a queued item, or kill the sandbox process running it.

        The kill goes through ``Sandbox.cancel()``, which can only reach a process that
        exists: a kill that lands while the call is still obtaining its process is lost,
        so callers that wait for the item repeat it every ``_REKILL`` seconds."""
        if work.future.cancel():
            return
        with self.lock:  # the worker clears work.box under this lock: never a wrong kill
            work.killed = True
            box = work.box
            if box is not None:
                try:
                    box.cancel()
                except (OSError, TypeError, ValueError):
                    pass  # the process ended meanwhile

    def kill_and_wait(self, works: list[_Work]) -> None:
        from concurrent.futures import wait

        for w in works:
            self.kill(w)
        while works:
            wait([w.future for w in works], timeout=_REKILL)
            works = [w for w in works if not w.future.done()]
            for w in works:
                self.kill(w)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False,
                 kill: bool = False) -> None:
        with self.lock:
            first = not self.closed
            self.closed = True
            self.killing = self.killing or kill
            threads = list(self.threads)
            running = list(self.running) if kill else []
        if cancel_futures or kill:
            sentinels = 0
            while True:
                try:
                    w = self.queue.get_nowait()
                except queue.Empty:
                    break
                if w is None:
                    sentinels += 1
                else:
                    w.future.cancel()
            for _ in range(sentinels):
                self.queue.put(None)
        if first:
            for _ in threads:
                self.queue.put(None)
        if kill:
            if wait:
                self.kill_and_wait(running)
            else:
                for w in running:
                    self.kill(w)
        if wait:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()
            with self.lock:
                unused, self.unused = self.unused, []
            for box in unused:
                box.destroy()


class _Batch:
    """The bookkeeping of one ``map``: a window of submitted items, completions in,
    items out in the requested order. Used from one consuming thread."""

    def __init__(self, core: _Core, fn: Callable[..., Any], iterable: Iterable[Any],
                 ordered: bool, progress: Progress | None,
                 notify: Callable[[int], None]) -> None:
        if progress is not None and not isinstance(iterable, Sized):
            iterable = list(iterable)
        self.total = len(iterable) if isinstance(iterable, Sized) else -1
        self.items = iter(iterable)
        self.core = core
        self.fn = fn
        self.ordered = ordered
        self.progress = progress
        self.notify = notify
        self.window = max(16, 4 * core.processes)
        self.works: dict[int, _Work] = {}  # submitted and not yet handed out
        self.completed: set[int] = set()  # ordered: finished, waiting for their turn
        self.next_out = 0
        self.submitted = 0
        self.done = 0
        self.exhausted = False
        self.fill()

    @property
    def finished(self) -> bool:
        return self.exhausted and not self.works

    def fill(self) -> None:
        while not self.exhausted and len(self.works) < self.window:
            try:
                item = next(self.items)
            except StopIteration:
                self.exhausted = True
                break
            i = self.submitted
            work = self.core.submit(self.fn, (item,), {})
            self.works[i] = work
            self.submitted += 1
            work.future.add_done_callback(functools.partial(self._done, i))

    def _done(self, i: int, _fut: Future[Any]) -> None:
        self.notify(i)

    def take(self, i: int) -> list[_Work]:
        """Item ``i`` finished: the items now ready to hand out, in output order."""
        out: list[_Work] = []
        if i not in self.works or i in self.completed:
            return out  # abandoned meanwhile
        self.done += 1
        if self.ordered:
            self.completed.add(i)
            while self.next_out in self.completed:
                self.completed.discard(self.next_out)
                out.append(self.works.pop(self.next_out))
                self.next_out += 1
        else:
            out.append(self.works.pop(i))
        self.fill()
        if self.progress is not None:
            self.progress(self.done, self.total)
        return out

    def abandon(self) -> list[_Work]:
        """Stop: cancel the queued items, read no more input. Returns the items already
        running (they go on unless killed)."""
        self.exhausted = True
        running = [w for w in self.works.values() if not w.future.cancel()]
        return [w for w in running if not w.future.done()]


def _value(work: _Work, return_exceptions: bool) -> Any:
    fut = work.future
    exc: BaseException | None
    exc = CancelledError() if fut.cancelled() else fut.exception()
    if exc is None:
        return fut.result()
    if return_exceptions:
        return exc
    raise exc


class _MapIterator(Iterator[Any]):
    def __init__(self, core: _Core, fn: Callable[..., Any], iterable: Iterable[Any],
                 ordered: bool, return_exceptions: bool, progress: Progress | None) -> None:
        self._q: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._out: deque[_Work] = deque()
        self._return_exceptions = return_exceptions
        self._closed = False
        self._batch = _Batch(core, fn, iterable, ordered, progress, self._q.put)

    def __iter__(self) -> _MapIterator:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            while not self._out:
                if self._batch.finished:
                    self._closed = True
                    raise StopIteration
                self._out.extend(self._batch.take(self._q.get()))
            return _value(self._out.popleft(), self._return_exceptions)
        except StopIteration:
            raise
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop early: queued items are cancelled, running ones finish unseen."""
        if not self._closed:
            self._closed = True
            self._out.clear()
            self._batch.abandon()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


class Pool:
    """Run many calls in sandboxes, ``processes`` at a time. Context manager, thread-safe.

    Args:
        processes: sandboxes running at once (default: ``os.cpu_count()``).
        policy: the `Policy` of every sandbox (default: `Policy()`).
        max_calls: calls served by one sandbox process. 1 (default): a fresh process
            per call, nothing survives from one input to the next (use this for inputs
            from different strangers). N > 1 or ``None`` (unlimited): persistent
            processes, much faster for small calls, but a call can leave state for a
            later call *in the same process*. A process that aborts (any sticky error)
            is always replaced.
        timeout: wall-clock seconds per call (default: ``policy.timeout``).
        isolation, require: as for `Sandbox`.

    Raises:
        SandboxUnavailable: the isolation asked for is not available (checked at once).
        ValueError: ``processes`` or ``max_calls`` is not a positive int.

    Functions must be importable by name (module level), as for `Sandbox.call`; keyword
    arguments named ``timeout`` or ``validate`` cannot be passed to them (as for `run`).
    See the module docstring for errors, ordering, progress and cancellation.

    Example:
        >>> with Pool() as pool:                                      # doctest: +SKIP
        ...     for cert in pool.map(parsers.openpgp, blobs, return_exceptions=True):
        ...         print(cert)
    """

    def __init__(self, processes: int | None = None, policy: Policy | None = None,
                 max_calls: int | None = 1, timeout: float | EllipsisType | None = ...,
                 *, isolation: Isolation | None = None,
                 require: Isolation | None = None) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
            raise ValueError(f"processes must be an int >= 1, not {processes!r}")
        if max_calls is not None and (not isinstance(max_calls, int)
                                      or isinstance(max_calls, bool) or max_calls < 1):
            raise ValueError(f"max_calls must be None or an int >= 1, not {max_calls!r}")
        if not (timeout is None or isinstance(timeout, EllipsisType)
                or (isinstance(timeout, (int, float)) and timeout > 0)):
            raise ValueError(f"timeout must be > 0, None or omitted, not {timeout!r}")
        # One sandbox now: a bad policy or a missing isolation level fails here, not
        # once per item. The first worker adopts it.
        first = Sandbox(policy, isolation=isolation, require=require, max_calls=max_calls)
        self._core = _Core(processes, first.policy, first.isolation, max_calls, timeout, first)
        _cores.add(self._core)
        self._finalizer = weakref.finalize(self, self._core.shutdown, False)

    @property
    def processes(self) -> int:
        return self._core.processes

    @property
    def max_calls(self) -> int | None:
        return self._core.max_calls

    @property
    def isolation(self) -> Isolation:
        return self._core.isolation

    @property
    def policy(self) -> Policy:
        return self._core.policy

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __repr__(self) -> str:
        c = self._core
        state = "closed" if c.closed else "open"
        return (f"<Pool {c.name} {state} processes={c.processes} max_calls={c.max_calls} "
                f"isolation={c.isolation.name}>")

    # -- work --------------------------------------------------------------------------

    def _check(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        if self._core.isolation == Isolation.STRONG:
            _target_ref(fn)  # a lambda or a local function fails here, not per item
        if self._core.closed:
            raise SandboxClosed("this pool is closed", {"reason": "pool closed"})

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; its `Future` holds the result or the error.

        Raises:
            SandboxClosed: the pool is closed.
            TypeError: ``fn`` cannot be imported by the sandbox (a lambda, a local
                function, a function of ``__main__``).
        """
        self._check(fn)
        return self._core.submit(fn, args, kwargs).future

    def map(self, fn: Callable[..., Any], iterable: Iterable[Any], *, ordered: bool = True,
            return_exceptions: bool = False,
            progress: Progress | None = None) -> Iterator[Any]:
        """``fn(item)`` for every item, in sandboxes; results in input order (or in
        completion order with ``ordered=False``).

        Work starts at once; the returned iterator yields results (or, with
        ``return_exceptions=True``, the exception instance of a failed item) and raises
        the first error it reaches otherwise. Stop early with its ``close()``.

        Raises:
            SandboxClosed: the pool is closed (also while iterating, if it is closed
                before every item was submitted).
        """
        self._check(fn)
        return _MapIterator(self._core, fn, iterable, ordered, return_exceptions, progress)

    def imap(self, fn: Callable[..., Any], iterable: Iterable[Any], *,
             return_exceptions: bool = False,
             progress: Progress | None = None) -> Iterator[Any]:
        """``map`` (ordered); the name ``multiprocessing.Pool`` users look for."""
        return self.map(fn, iterable, return_exceptions=return_exceptions, progress=progress)

    def imap_unordered(self, fn: Callable[..., Any], iterable: Iterable[Any], *,
                       return_exceptions: bool = False,
                       progress: Progress | None = None) -> Iterator[Any]:
        """``map(..., ordered=False)``: results as they finish."""
        return self.map(fn, iterable, ordered=False, return_exceptions=return_exceptions,
                        progress=progress)

    async def amap(self, fn: Callable[..., Any], iterable: Iterable[Any], *,
                   ordered: bool = True, return_exceptions: bool = False,
                   progress: Progress | None = None) -> list[Any]:
        """``map`` for asyncio: a coroutine returning the list of results.

        A list (like ``asyncio.gather``) rather than an async iterator: a batch then has
        one owner, and cancelling the awaiting task is the one way to stop it, which
        cancels the queued items and kills the running sandboxes before re-raising
        `asyncio.CancelledError`. ``progress`` is called in the event loop's thread.

        Raises:
            The first error in output order unless ``return_exceptions`` (the queued
            items of the batch are then cancelled, running ones finish unseen).
        """
        self._check(fn)
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[int] = asyncio.Queue()

        def notify(i: int) -> None:
            try:
                loop.call_soon_threadsafe(ready.put_nowait, i)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

        batch = _Batch(self._core, fn, iterable, ordered, progress, notify)
        results: list[Any] = []
        try:
            while not batch.finished:
                for work in batch.take(await ready.get()):
                    results.append(_value(work, return_exceptions))
        except asyncio.CancelledError:
            running = batch.abandon()
            for w in running:
                self._core.kill(w)
            while any(not w.future.done() for w in running):
                try:
                    await asyncio.wait_for(ready.get(), _REKILL)
                except TimeoutError:
                    for w in running:
                        self._core.kill(w)
            raise
        except BaseException:
            batch.abandon()
            raise
        return results

    # -- lifecycle ---------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; with ``wait``, finish the queued work (or cancel it, with
        ``cancel_futures``), then stop the workers and destroy their sandboxes.
        Idempotent."""
        self._core.shutdown(wait=wait, cancel_futures=cancel_futures)

    def close(self) -> None:
        """``shutdown(wait=True)``: finish queued work, release everything. Idempotent."""
        self._core.shutdown(wait=True)

    def terminate(self) -> None:
        """Cancel queued work, kill the running sandboxes, release everything."""
        self._core.shutdown(wait=True, cancel_futures=True, kill=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

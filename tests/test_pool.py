"""Pool and asyncio: correctness only (no timing assertions).

Waits that could hang are bounded by generous hang guards (``asyncio.wait_for``, a
thread join with a timeout) that only turn a hang into a failure; nothing here waits
for time to pass as a way to synchronise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import pool_targets as pt
import sandboxmode as sbm
from sandboxmode import Isolation, _spawner
from sandboxmode._pool import Pool

HANG_GUARD = 60.0
#: Only a kill can end a call under this policy (no wall-clock limit, a huge CPU limit).
ENDLESS = sbm.Policy(timeout=None, cpu_seconds=3600)


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool(processes=2) as p:
        yield p


def pool_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("sbm-pool-")}


# -- map ---------------------------------------------------------------------------------

def test_map_results_in_input_order(pool: Pool) -> None:
    assert list(pool.map(pt.square, range(40))) == [x * x for x in range(40)]
    assert list(pool.imap(pt.square, [3, 1, 2])) == [9, 1, 4]


def test_map_empty_input(pool: Pool) -> None:
    assert list(pool.map(pt.square, [])) == []
    assert list(pool.imap_unordered(pt.square, iter([]))) == []


def test_map_reads_a_generator_lazily_and_completely(pool: Pool) -> None:
    seen: list[int] = []

    def items() -> Iterator[int]:
        for i in range(100):  # more than one window of work
            seen.append(i)
            yield i

    assert list(pool.map(pt.square, items())) == [i * i for i in range(100)]
    assert seen == list(range(100))


def test_unordered_is_complete(pool: Pool) -> None:
    got = list(pool.imap_unordered(pt.square, range(50)))
    assert sorted(got) == [x * x for x in range(50)]
    got = list(pool.map(pt.square, range(50), ordered=False))
    assert sorted(got) == [x * x for x in range(50)]


def test_bytes_like_arguments_go_in_read_only(pool: Pool) -> None:
    items = [b"", b"abcdef", bytearray(b"xy"), memoryview(b"12345")]
    assert list(pool.map(pt.describe, items)) == [
        ["memoryview", True, 0, b""],
        ["memoryview", True, 6, b"abcd"],
        ["memoryview", True, 2, b"xy"],
        ["memoryview", True, 5, b"1234"],
    ]


# -- errors ------------------------------------------------------------------------------

MIXED = [2, "raise", "crash", 3, "exit", 4]


@pytest.mark.parametrize("max_calls", [1, None], ids=["one-shot", "persistent"])
def test_per_item_errors_with_return_exceptions(max_calls: int | None) -> None:
    with Pool(processes=2, max_calls=max_calls) as p:
        out = list(p.map(pt.act, MIXED, return_exceptions=True))
        assert out[0] == 4 and out[3] == 9 and out[5] == 16
        assert isinstance(out[1], sbm.TargetError)
        assert out[1].remote_type == "ValueError" and out[1].remote_message == "bad item"
        assert isinstance(out[2], sbm.SandboxFault) and out[2].errno == errno.EFAULT
        assert isinstance(out[4], sbm.SandboxFault)
        # the same through imap_unordered: every item accounted for
        un = list(p.imap_unordered(pt.act, MIXED, return_exceptions=True))
        assert sorted(x for x in un if isinstance(x, int)) == [4, 9, 16]
        assert sorted(type(x).__name__ for x in un if not isinstance(x, int)) == [
            "SandboxFault", "SandboxFault", "TargetError"]
        # the pool carries on after faults
        assert list(p.map(pt.square, [5, 6])) == [25, 36]


def test_first_error_raised_when_its_item_is_reached(pool: Pool) -> None:
    it = pool.map(pt.act, [1, 2, "crash", 3, "raise"])
    assert next(it) == 1
    assert next(it) == 4
    with pytest.raises(sbm.SandboxFault):
        next(it)
    with pytest.raises(StopIteration):  # the batch ends at its first error
        next(it)
    it = pool.map(pt.act, [1, "raise", "crash"])
    with pytest.raises(sbm.TargetError) as ei:
        list(it)
    assert ei.value.remote_type == "ValueError"
    assert list(pool.map(pt.square, [7])) == [49]


def test_unordered_raises_the_error_it_reaches(pool: Pool) -> None:
    with pytest.raises(sbm.TargetError):
        list(pool.imap_unordered(pt.act, [1, 2, "raise", 3]))


def test_refused_functions_fail_at_once(pool: Pool) -> None:
    with pytest.raises(TypeError, match="lambda"):
        pool.submit(lambda: 0)
    with pytest.raises(TypeError, match="callable"):
        pool.map(42, [1])  # type: ignore[arg-type]


def test_unsendable_argument_is_a_per_item_error(pool: Pool) -> None:
    out = list(pool.map(pt.echo, [1, threading.Lock(), 2], return_exceptions=True))
    assert out[0] == [[1], {}] and out[2] == [[2], {}]
    assert isinstance(out[1], TypeError)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(ValueError):
        Pool(max_calls=0)
    with pytest.raises(ValueError):
        Pool(timeout=-1.0)


# -- persistence -------------------------------------------------------------------------

def test_one_shot_sandboxes_keep_nothing() -> None:
    with Pool(processes=1, max_calls=1) as p:
        assert list(p.map(pt.counter, range(5))) == [1, 1, 1, 1, 1]


def test_persistent_sandbox_keeps_state() -> None:
    with Pool(processes=1, max_calls=None) as p:
        assert list(p.map(pt.counter, range(3))) == [1, 2, 3]
        assert p.submit(pt.counter).result(timeout=HANG_GUARD) == 4


def test_max_calls_recycles_the_process() -> None:
    with Pool(processes=1, max_calls=2) as p:
        assert list(p.map(pt.counter, range(5))) == [1, 2, 1, 2, 1]


def test_persistent_sandbox_replaced_after_abort_not_after_target_error() -> None:
    with Pool(processes=1, max_calls=None) as p:
        out = list(p.map(pt.act, ["count", "raise", "count", "crash", "count", "count"],
                         return_exceptions=True))
    assert out[0] == 1
    assert isinstance(out[1], sbm.TargetError)
    assert out[2] == 2  # a TargetError is not sticky: same process
    assert isinstance(out[3], sbm.SandboxFault)
    assert out[4:] == [1, 2]  # a fresh process after the abort


# -- progress ----------------------------------------------------------------------------

def test_progress_called_with_done_and_total(pool: Pool) -> None:
    calls: list[tuple[int, int]] = []
    threads: set[str] = set()

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        threads.add(threading.current_thread().name)

    assert list(pool.map(pt.square, range(10), progress=progress)) == [
        x * x for x in range(10)]
    assert calls == [(i, 10) for i in range(1, 11)]
    assert threads == {threading.current_thread().name}  # in the consuming thread


def test_progress_with_an_unsized_iterable_and_errors(pool: Pool) -> None:
    calls: list[tuple[int, int]] = []
    out = list(pool.imap_unordered(pt.act, iter([1, "raise", 2]), return_exceptions=True,
                                   progress=lambda d, t: calls.append((d, t))))
    assert len(out) == 3
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_progress_error_stops_the_batch(pool: Pool) -> None:
    def progress(done: int, total: int) -> None:
        raise RuntimeError("stop")

    it = pool.map(pt.square, range(100), progress=progress)
    with pytest.raises(RuntimeError, match="stop"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


# -- submit, lifecycle -------------------------------------------------------------------

def test_submit_futures(pool: Pool) -> None:
    fs = [pool.submit(pt.square, i) for i in range(20)]
    _done, not_done = concurrent.futures.wait(fs, timeout=HANG_GUARD)
    assert not not_done
    assert [f.result() for f in fs] == [i * i for i in range(20)]
    f = pool.submit(pt.echo, 1, [b"ab"], key="value")
    assert f.result(timeout=HANG_GUARD) == [[1, [b"ab"]], {"key": "value"}]
    f = pool.submit(pt.describe, b"abcdef")  # bytes-like go in with copy_in
    assert f.result(timeout=HANG_GUARD) == ["memoryview", True, 6, b"abcd"]
    bad = pool.submit(pt.act, "raise")
    assert isinstance(bad.exception(timeout=HANG_GUARD), sbm.TargetError)


def test_close_is_idempotent_and_refuses_new_work() -> None:
    before = pool_threads()
    p = Pool(processes=2)
    assert list(p.map(pt.square, range(4))) == [0, 1, 4, 9]
    assert pool_threads() - before  # the workers are named sbm-pool-...
    p.close()
    p.close()
    p.shutdown()
    p.terminate()
    assert p.closed
    assert pool_threads() - before == set()  # and they are gone
    with pytest.raises(sbm.SandboxClosed):
        p.submit(pt.square, 1)
    with pytest.raises(sbm.SandboxClosed):
        p.map(pt.square, [1])
    with pytest.raises(sbm.SandboxClosed):
        asyncio.run(p.amap(pt.square, [1]))
    assert "closed" in repr(p)


def test_close_finishes_queued_work() -> None:
    p = Pool(processes=1)
    fs = [p.submit(pt.square, i) for i in range(6)]
    p.close()
    assert [f.result(timeout=0) for f in fs] == [i * i for i in range(6)]


def test_shutdown_cancel_futures() -> None:
    p = Pool(processes=1)
    fs = [p.submit(pt.square, i) for i in range(50)]
    p.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in fs)
    for i, f in enumerate(fs):  # each item either ran to its result or never ran
        assert f.cancelled() or f.result(timeout=0) == i * i


def _in_thread(fn: Any) -> None:
    """Run ``fn`` in a thread with a hang guard."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run, name="sbm-test-guard")
    t.start()
    t.join(HANG_GUARD)
    assert not t.is_alive(), f"{fn} did not return"
    if errors:
        raise errors[0]


def test_terminate_kills_running_sandboxes() -> None:
    p = Pool(processes=2, policy=ENDLESS)
    spinning = [p.submit(pt.spin) for _ in range(2)]
    queued = [p.submit(pt.square, i) for i in range(3)]
    _in_thread(p.terminate)
    for f in spinning + queued:
        assert f.cancelled() or isinstance(f.exception(timeout=0),
                                           concurrent.futures.CancelledError)
    assert _spawner.census()["children"] == []


def test_with_block_left_by_an_exception_terminates() -> None:
    spinning: list[concurrent.futures.Future[Any]] = []

    def body() -> None:
        with pytest.raises(KeyError), Pool(processes=1, policy=ENDLESS) as p:
            spinning.append(p.submit(pt.spin))
            raise KeyError("leave")

    _in_thread(body)
    assert spinning[0].cancelled() or isinstance(spinning[0].exception(timeout=0),
                                                 concurrent.futures.CancelledError)


def test_closing_a_map_early_cancels_its_queued_items(pool: Pool) -> None:
    it = pool.map(pt.square, range(1000))
    assert next(it) == 0
    it.close()  # type: ignore[attr-defined]
    with pytest.raises(StopIteration):
        next(it)
    assert list(pool.map(pt.square, [2])) == [4]


def test_forked_child_sees_the_pool_closed(pool: Pool) -> None:
    assert pool.submit(pt.square, 2).result(timeout=HANG_GUARD) == 4  # workers running
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: its copy of the pool has no workers, so it must refuse work
        code = 2
        try:
            pool.submit(pt.square, 2)
            code = 1
        except sbm.SandboxClosed:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.submit(pt.square, 3).result(timeout=HANG_GUARD) == 9  # the parent's is fine


def test_weak_isolation_pool() -> None:
    with Pool(processes=2, isolation=Isolation.WEAK) as p:
        assert p.isolation == Isolation.WEAK
        out = list(p.map(pt.act, [2, "raise", 3], return_exceptions=True))
        assert out[0] == 4 and out[2] == 9 and isinstance(out[1], sbm.TargetError)


# -- asyncio -----------------------------------------------------------------------------

def test_amap(pool: Pool) -> None:
    async def main() -> None:
        loop_thread = threading.current_thread().name
        seen: list[tuple[int, int, str]] = []

        def progress(done: int, total: int) -> None:
            seen.append((done, total, threading.current_thread().name))

        assert await pool.amap(pt.square, range(20), progress=progress) == [
            x * x for x in range(20)]
        assert [(d, t) for d, t, _ in seen] == [(i, 20) for i in range(1, 21)]
        assert {name for _, _, name in seen} == {loop_thread}
        un = await pool.amap(pt.square, range(20), ordered=False)
        assert sorted(un) == [x * x for x in range(20)]
        out = await pool.amap(pt.act, MIXED, return_exceptions=True)
        assert [type(x).__name__ for x in out] == [
            "int", "TargetError", "SandboxFault", "int", "SandboxFault", "int"]
        with pytest.raises(sbm.TargetError):
            await pool.amap(pt.act, [1, "raise", 2])
        # concurrent batches on one pool
        a, b = await asyncio.gather(pool.amap(pt.square, range(10)),
                                    pool.amap(pt.square, range(10, 20)))
        assert a + b == [x * x for x in range(20)]

    asyncio.run(main())


def test_acall() -> None:
    async def main() -> None:
        with sbm.Sandbox() as box:
            assert await box.acall(pt.square, 12) == 144
            with pytest.raises(sbm.TargetError):
                await box.acall(pt.act, "raise")
            assert await box.acall(pt.echo, 1, k=2) == [[1], {"k": 2}]

    asyncio.run(main())


def test_cancelling_acall_kills_the_sandbox_promptly() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with sbm.SharedBuffer(4096) as flag, sbm.Sandbox(policy=ENDLESS) as box:
            task = asyncio.create_task(box.acall(pt.started_then_spin, box.map_writable(flag)))
            view = flag.view
            try:
                started = await loop.run_in_executor(None, pt.wait_started, view, HANG_GUARD)
            finally:
                view.release()
            assert started, "the sandboxed function never started"
            assert len(_spawner.census()["children"]) == 1
            task.cancel()
            # Without a kill the call would spin for an hour: the guard turns that into
            # a TimeoutError; a prompt kill ends the task with CancelledError.
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, HANG_GUARD)
            assert _spawner.census()["children"] == []
            assert box.error == 0  # cancelled by us: not sticky (SandboxCancelled)
            assert box.call(pt.square, 2) == 4  # a fresh process serves the next call

    asyncio.run(main())


def test_cancelling_amap_kills_its_sandboxes() -> None:
    async def main() -> None:
        with Pool(processes=2, policy=ENDLESS) as p:
            first_done = asyncio.Event()
            task = asyncio.create_task(p.amap(pt.act, [1, "spin", "spin", 2, 3],
                                              progress=lambda d, t: first_done.set()))
            await asyncio.wait_for(first_done.wait(), HANG_GUARD)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, HANG_GUARD)
            assert _spawner.census()["children"] == []
            # the pool is still usable, with fresh sandboxes
            assert await p.amap(pt.square, [3, 4]) == [9, 16]

    asyncio.run(main())

"""Cancellation (SPEC-23): from another thread, from asyncio, before the call has even
started, and while idle. The cause is recorded before the kill; the process is reaped;
the instance stays usable."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

import pool_targets
import sandboxmode as sbm
import targets

pytestmark = pytest.mark.isolation

# Nothing but a kill can end these calls: no wall-clock limit, an hour of CPU.
FOREVER = sbm.Policy(timeout=None, cpu_seconds=3600)


def test_cancel_from_another_thread_ends_a_running_call() -> None:
    with sbm.SharedBuffer(4096) as flag, sbm.Sandbox(policy=FOREVER) as box:
        def cancel_when_started() -> None:
            assert pool_targets.wait_started(flag.view, 60), "the target never started"
            box.cancel()

        t = threading.Thread(target=cancel_when_started)
        t.start()
        with pytest.raises(sbm.SandboxCancelled) as ei:
            box.call(pool_targets.started_then_spin, box.map_writable(flag))
        t.join()
        assert ei.value.errno == errno.ECANCELED
        assert ei.value.evidence["cause"] == "cancelled"
        assert box.error == 0  # not sticky
        assert box.call(targets.good) == 0x600D600D  # a fresh process serves the next call


def test_cancel_while_idle_does_not_touch_the_next_call() -> None:
    with sbm.Sandbox() as box:
        assert box.call(targets.counter) == 1
        box.cancel()  # kills the idle process
        assert box.call(targets.counter) == 1  # a new process: state is gone, call runs
        assert box.error == 0


def test_asyncio_cancel_before_the_call_started() -> None:
    async def main() -> None:
        with sbm.Sandbox(policy=FOREVER, max_calls=1) as box:
            task = asyncio.create_task(box.acall(pool_targets.spin))
            await asyncio.sleep(0)  # the call may or may not have reached its process
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)  # hang guard only
            assert box.call(targets.good) == 0x600D600D

    asyncio.run(main())


def test_asyncio_cancel_of_a_running_call() -> None:
    async def main() -> None:
        with sbm.SharedBuffer(4096) as flag, sbm.Sandbox(policy=FOREVER) as box:
            task = asyncio.create_task(
                box.acall(pool_targets.started_then_spin, box.map_writable(flag)))
            started = await asyncio.to_thread(pool_targets.wait_started, flag.view, 60)
            assert started
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)
            assert box.error == 0

    asyncio.run(main())


def test_cancel_racing_with_one_shot_calls_is_safe() -> None:
    """cancel() from a thread looping while calls come and go: every call either returns
    or is cancelled; no descriptor error, no other sandbox killed."""
    stop = threading.Event()
    errors: list[BaseException] = []
    with sbm.Sandbox(max_calls=1) as box:
        def canceller() -> None:
            try:
                while not stop.is_set():
                    box.cancel()
            except BaseException as e:  # pragma: no cover - the bug this test is for
                errors.append(e)

        t = threading.Thread(target=canceller)
        t.start()
        outcomes = set()
        try:
            for _ in range(60):
                try:
                    outcomes.add(box.call(targets.good))
                except sbm.SandboxCancelled:
                    outcomes.add("cancelled")
        finally:
            stop.set()
            t.join()
    assert not errors, errors
    assert outcomes <= {0x600D600D, "cancelled"}

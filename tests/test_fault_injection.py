"""Injected failures around a call: each row says what goes wrong, when, and the exact
outcome; every row then checks that the host carries on (the next call works) and, through
the autouse leak check, that no process, descriptor or thread was left behind.

The failures come from outside the sandboxed code (the kill of a process, a signal to the
host, a host out of descriptors), where `test_faults.py` has the sandboxed code misbehave.

Synchronisation is by observable events, never by sleeping: the target sets a futex word in
a writable shared mapping and wakes the host (`pool_targets.started_then_spin`), a helper
thread blocked in FUTEX_WAIT (`pool_targets.wait_started`) then injects the failure while
the call is certainly running. Waits are bounded by `GUARD` and fail with a message.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

import pool_targets as pt
import sandboxmode as sbm
import targets
from sandboxmode import _spawner

pytestmark = pytest.mark.isolation

#: Upper bound of every wait on an observable condition (a hang fails instead of blocking).
GUARD = 20.0
#: Calls that only end by an injected failure (or the guard) use this wall-clock limit.
ENDLESS = sbm.Policy(timeout=GUARD, cpu_seconds=60)


# -- helpers --------------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, bound: float = GUARD) -> None:
    """Poll an observable condition until it holds; fail with ``what`` after ``bound`` s."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {bound} s waiting for {what}")
        time.sleep(0.001)  # a polling interval, not a synchronisation


def _state(pid: int) -> str:
    """The one-letter state of a process (proc(5): /proc/PID/stat, field 3)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


def _is_dead(pidfd: int, bound: float = GUARD) -> bool:
    """True once the process behind our own pidfd has exited (it polls readable)."""
    r, _, _ = select.select([pidfd], [], [], bound)
    return bool(r)


def _is_reaped(pidfd: int) -> bool:
    """True once the process is gone from the process table: a zombie still takes
    signal 0 through its pidfd, a reaped process gives ESRCH (pidfd_send_signal(2))."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return True
    return False


@dataclass
class Running:
    """What the injector saw of the call it interrupted."""

    zygote: int = 0
    pid: int = 0
    pidfd: int = -1  # our own pidfd on the sandbox process: closed by ``close()``

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


@contextmanager
def _injected(box: sbm.Sandbox, flag: sbm.SharedBuffer, inject: Callable[[Running], None],
              running: Running) -> Iterator[None]:
    """Run ``inject`` in a helper thread once the target has started (the futex word in
    ``flag`` is set) while the body of the ``with`` makes the call; at the end, wait for
    the helper and raise its error if it had one."""
    errors: list[BaseException] = []
    running.zygote = _zygote_pid()

    def injector() -> None:
        try:
            view = flag.view
            try:
                started = pt.wait_started(view, GUARD)
            finally:
                view.release()
            if not started:
                raise AssertionError("the sandboxed function never started")
            proc = box._backend.proc
            running.pid = proc.pid
            running.pidfd = os.pidfd_open(proc.pid)
            inject(running)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=injector, name="fault-injector")
    t.start()
    try:
        yield
    except BaseException as body:
        t.join(GUARD)
        if errors:
            raise errors[0] from body
        raise
    t.join(GUARD)
    assert not t.is_alive(), "the injector thread hung"
    if errors:
        raise errors[0]


def _carries_on() -> None:
    """The host carries on: a fresh sandbox works, with strong isolation."""
    assert sbm.run(targets.good, require=sbm.Isolation.STRONG) == 0x600D600D


def _zygote_pid() -> int:
    zh = _spawner.zygote_for(sbm.Policy())
    assert zh.proc is not None
    return zh.proc.pid


# -- processes killed or stopped mid-call ---------------------------------------------------


def _kill_zygote(r: Running) -> None:
    os.kill(r.zygote, signal.SIGKILL)


def _kill_sandbox(r: Running) -> None:
    signal.pidfd_send_signal(r.pidfd, signal.SIGKILL)


def _stop_sandbox(r: Running) -> None:
    signal.pidfd_send_signal(r.pidfd, signal.SIGSTOP)
    _wait_for(lambda: _state(r.pid) == "T", "the sandbox process to be stopped")


# (what goes wrong, inject, policy, exception, evidence, text in the message)
MID_CALL: list[Any] = [
    pytest.param(_kill_zygote, ENDLESS, sbm.SandboxFault, {"cause": "lost"}, "lost",
                 id="zygote SIGKILLed", marks=pytest.mark.zygote_may_change),
    pytest.param(_kill_sandbox, ENDLESS, sbm.SandboxFault,
                 {"signal": signal.SIGKILL, "signal_name": "SIGKILL(-9)"}, "SIGKILL",
                 id="sandbox SIGKILLed"),
    pytest.param(_stop_sandbox, ENDLESS.replace(timeout=1.0), sbm.SandboxTimeout,
                 {"limit": "timeout"}, "wall-clock", id="sandbox SIGSTOPped"),
]


@pytest.mark.parametrize(("inject", "policy", "exc", "evidence", "text"), MID_CALL)
def test_process_lost_mid_call(inject: Callable[[Running], None], policy: sbm.Policy,
                               exc: type[sbm.SandboxError], evidence: dict[str, Any],
                               text: str) -> None:
    running = Running()
    try:
        with sbm.SharedBuffer(4096) as flag, sbm.Sandbox(policy=policy) as box:
            with _injected(box, flag, inject, running), pytest.raises(exc) as ei:
                box.call(pt.started_then_spin, box.map_writable(flag))
            e = ei.value
            assert type(e) is exc, repr(e)
            for k, v in evidence.items():
                assert e.evidence.get(k) == v, (k, e.evidence)
            assert text.lower() in str(e).lower(), str(e)
            assert box.error == -exc.errno  # an abort: sticky (SPEC-3)
            with pytest.raises(exc):
                box.call(targets.good)
        # The sandbox process is dead; unless it died with its zygote (init reaps it
        # then), the host had it reaped before the call returned.
        assert _is_dead(running.pidfd), "the sandbox process is still alive"
        if inject is not _kill_zygote:
            assert _is_reaped(running.pidfd), "the sandbox process was not reaped"
    finally:
        running.close()
    _carries_on()
    assert (_zygote_pid() != running.zygote) == (inject is _kill_zygote)


# -- the host interrupted: KeyboardInterrupt, its own signal handlers -----------------------


def test_keyboard_interrupt_mid_call_kills_and_reaps_the_sandbox() -> None:
    """SPEC-23: Ctrl-C during a call propagates at once; the sandbox process is killed and
    reaped, and a new sandbox works."""
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()

    def interrupt(r: Running) -> None:
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    running = Running()
    try:
        with sbm.SharedBuffer(4096) as flag, sbm.Sandbox(policy=ENDLESS) as box:
            with _injected(box, flag, interrupt, running), pytest.raises(KeyboardInterrupt):
                box.call(pt.started_then_spin, box.map_writable(flag))
            assert box._backend.proc is None, "the interrupted process was kept"
        assert _is_dead(running.pidfd), "the interrupted sandbox is still alive"
        assert _spawner.census()["children"] == []  # reaps what the host let go of
        assert _is_reaped(running.pidfd), "the interrupted sandbox was not reaped"
    finally:
        running.close()
        signal.signal(signal.SIGINT, old)
    with sbm.Sandbox() as fresh:
        assert fresh.call(targets.good) == 0x600D600D


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_futex, _FUTEX_WAKE = 202, 1  # x86_64


def _release(view: memoryview) -> None:
    """Set the futex word at the start of ``view`` and wake its waiter (another process:
    a futex in a MAP_SHARED mapping is keyed on the memory, not the address)."""
    word = ctypes.c_uint32.from_buffer(view)
    try:
        word.value = 1
        _libc.syscall(ctypes.c_long(_SYS_futex), ctypes.c_void_p(ctypes.addressof(word)),
                      ctypes.c_long(_FUTEX_WAKE), ctypes.c_long(1 << 30), None, None,
                      ctypes.c_long(0))
    finally:
        del word


def _in_syscall(box: sbm.Sandbox, nr: int) -> bool:
    """The sandbox process of ``box`` is blocked in system call ``nr`` (proc(5):
    /proc/PID/syscall; the host may read it, the sandbox being its descendant)."""
    proc = box._backend.proc
    if proc is None:
        return False
    try:
        with open(f"/proc/{proc.pid}/syscall") as f:
            return f.read().split()[0] == str(nr)
    except (OSError, IndexError):
        return False


def test_host_signal_handlers_run_during_a_call() -> None:
    """SPEC-23: a host signal handler runs while a call is in progress, not after it.

    The sandboxed function waits (in FUTEX_WAIT, in the sandbox) until a word of shared
    memory is set, and only the host's SIGUSR1 handler sets it: the call can only return
    once the handler ran. The signal is process-directed (kill(2) to ourselves, as from
    another program) and sent once the sandbox waits; the kernel gives it to the main
    thread, which does not block it, interrupting its wait for the sandbox.
    """
    with sbm.SharedBuffer(4096) as gate, sbm.Sandbox(policy=ENDLESS) as box:
        view = gate.view
        seen: list[bool] = []

        def handler(signum: int, frame: Any) -> None:
            seen.append(box._lock.locked())  # the call is still in progress
            _release(view)

        errors: list[BaseException] = []

        def send() -> None:
            try:
                _wait_for(lambda: _in_syscall(box, _SYS_futex), "the sandbox to wait")
                os.kill(os.getpid(), signal.SIGUSR1)
            except BaseException as e:
                errors.append(e)
                _release(view)  # end the call instead of waiting for the guard

        old = signal.signal(signal.SIGUSR1, handler)
        sender = threading.Thread(target=send, name="signal-sender")
        try:
            sender.start()
            # pool_targets.wait_started, run inside the sandbox: True once the word is set.
            released = box.call(pt.wait_started, box.map_writable(gate), GUARD)
        finally:
            sender.join(GUARD)
            signal.signal(signal.SIGUSR1, old)
            view.release()
        if errors:
            raise errors[0]
        assert seen == [True], "the handler did not run during the call"
        assert released is True, "the call returned without the handler's release"
        assert box.error == 0
        assert box.call(targets.good) == 0x600D600D


# -- the host out of descriptors ------------------------------------------------------------


def _open_fds() -> set[int]:
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor of the listing itself
        out.add(int(name))
    return out


def _limit_leaving(free: int) -> int:
    """An RLIMIT_NOFILE under which exactly ``free`` more descriptors can be opened
    (a new descriptor takes the lowest free number, EMFILE at or above the limit)."""
    used = _open_fds()
    fd = 0
    while True:
        if fd not in used:
            if free == 0:
                return fd
            free -= 1
        fd += 1


@contextmanager
def _descriptors_left(free: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_leaving(free), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def _no_spares() -> Iterator[None]:
    """Make the calling thread set up its own sandbox process: no spare made ahead."""
    _spawner.spares.pause()
    try:
        _spawner.spares.clear()
        yield
    finally:
        _spawner.spares.resume()


def _names_descriptors(e: BaseException) -> bool:
    cause = e.__cause__
    return ("descriptor" in str(e).lower() or e.evidence.get("errno") == errno.EMFILE
            if isinstance(e, sbm.SandboxError) else False) or (
        isinstance(cause, OSError) and cause.errno == errno.EMFILE)


# (where the descriptors run out, descriptors left, with an output buffer)
SET_UP: list[Any] = [
    pytest.param(0, True, id="output buffer memfd"),
    pytest.param(1, False, id="channel socketpair"),
    pytest.param(2, False, id="seccomp listener received with SCM_RIGHTS"),
]


@pytest.mark.parametrize(("free", "buffer"), SET_UP)
def test_host_out_of_descriptors_during_set_up(free: int, buffer: bool) -> None:
    """SPEC-1: a sandbox that cannot be set up raises a SandboxError, half-made pieces
    are released (leak check), and the host carries on once descriptors are back."""
    out = bytearray(b"keep")
    with sbm.Sandbox() as box:
        args = (box.copy_out(out),) if buffer else ()
        with _no_spares(), pytest.raises(sbm.SandboxError) as ei, _descriptors_left(free):
            box.call(targets.write_marker if buffer else targets.good, *args)
        assert not isinstance(ei.value, sbm.TargetError), repr(ei.value)
        assert _names_descriptors(ei.value), repr(ei.value)
    assert out == b"keep"
    _carries_on()


def test_host_with_descriptors_for_one_sandbox_only() -> None:
    """The row after the last failing one above: three descriptors are enough."""
    with sbm.Sandbox() as box, _no_spares():
        with _descriptors_left(3):
            result = box.call(targets.good)
        assert result == 0x600D600D


@pytest.mark.zygote_may_change
@pytest.mark.parametrize("free", [
    pytest.param(0, id="no descriptor left"),
    pytest.param(1, id="too few for the zygote's Popen"),
])
def test_host_out_of_descriptors_while_the_zygote_restarts(free: int) -> None:
    """The zygote died and must be restarted while the host has no descriptors to spare:
    `Sandbox()` must fail with a SandboxError, not silently run with less isolation
    (SPEC-18: never a silent downgrade; the machine does support STRONG)."""
    zh = _spawner.zygote_for(sbm.Policy())
    assert zh.proc is not None
    os.kill(zh.proc.pid, signal.SIGKILL)
    _wait_for(lambda: not zh.alive(), "the zygote to die")
    made: sbm.Sandbox | None = None
    error: BaseException | None = None
    with _no_spares():
        try:
            with _descriptors_left(free):
                made = sbm.Sandbox()
        except sbm.SandboxError as e:
            error = e
        finally:
            isolation = made.isolation if made is not None else None
            if made is not None:
                made.destroy()
    assert made is None, f"Sandbox() gave {isolation!r} isolation instead of an error"
    assert error is not None and _names_descriptors(error), repr(error)
    _carries_on()


# -- the spare maker after a zygote restart -------------------------------------------------


def _spares_idle() -> bool:
    """The spare maker has nothing in flight and nothing left to make."""
    with _spawner.spares.cond:
        return not _spawner.spares.busy and _spawner.spares._needed() is None


@pytest.mark.zygote_may_change
def test_spares_settle_after_the_zygote_generation_changes() -> None:
    """A program that goes idle after its zygote was restarted must not keep forking."""
    policy = sbm.Policy(timeout=29.0)  # a spare key of its own
    zh = _spawner.zygote_for(policy)
    _spawner.spares.pause()
    try:
        _spawner.spares.clear()
        with sbm.Sandbox(policy=policy) as box:  # wants spares for its key, none made yet
            assert box.call(targets.good) == 0x600D600D
        assert zh.proc is not None
        os.kill(zh.proc.pid, signal.SIGKILL)
        _wait_for(lambda: not zh.alive(), "the zygote to die")
        _spawner.zygote_for(policy)  # restarted: a new generation
    finally:
        _spawner.spares.resume()
    _spawner.spares.kick()
    _wait_for(_spares_idle, "the spare maker to settle", bound=3.0)

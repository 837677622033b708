"""Strong isolation: one locked-down process per sandbox, supervised by the host.

::

    Sandbox.call ─> Proc (spare from the zygote, already locked down and READY)
                     │  CALL frame (pickled by the host) + memfds (SCM_RIGHTS)
                     ▼
       supervise(): poll [channel, seccomp listener, pidfd] until a verdict:
         RESULT / ERROR / FAULT frame   -> decode with the bounded codec (never unpickle)
         seccomp notification           -> PolicyViolation (syscall, args), answered EPERM
         pidfd readable (process died)  -> status from the zygote -> SandboxFault / timeout
         deadline                       -> SIGKILL via pidfd -> SandboxTimeout

Ownership (invariant 3): a `Proc` owns its channel socket, pidfd and listener fd and
releases them in ``close()`` on every path; the zygote, its parent, reaps the process when
``close()`` tells it to ("forget"), or at once ("reap") when the status is needed.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import socket
import threading
import time
from typing import Any

from sandboxmode._child import REPORT_FAILED
from sandboxmode._errors import SandboxError, SandboxUnavailable
from sandboxmode._lockdown import notify as seccomp_notify
from sandboxmode._outcome import Outcome, Status, clip, describe_status
from sandboxmode._spawner import ZygoteHandle
from sandboxmode._wire import codec
from sandboxmode._wire.frame import FrameKind, recv_frame, send_frame
from sandboxmode.policy import Policy

__all__ = ["Proc", "spawn_proc", "supervise"]

#: How long a new sandbox may take to lock down and say READY.
READY_TIMEOUT = 30.0
#: After a violation or fault report, how long to wait for the child's traceback.
GRACE = 2.0


class Proc:
    """One sandbox process. See the module docstring for ownership."""

    def __init__(self, zh: ZygoteHandle, pid: int, sock: socket.socket, pidfd: int,
                 oneshot: bool, generation: int) -> None:
        self.zh = zh
        self.pid = pid
        self.sock: socket.socket | None = sock
        self.pidfd: int | None = pidfd
        self.listener: int | None = None
        self.oneshot = oneshot
        self.generation = generation  # the zygote's, when it forked: which imports it holds
        self.calls = 0
        self.status: int | None = None
        self.lock = threading.Lock()
        self.killed = False  # kill() was called: never hand this process a call again
        #: seconds per lockdown step, when asked for (``make bench``); plain data only
        self.timings: dict[str, float] = {}
        self.cpu_seconds: float | None = None
        self.cpu_limit: int | None = None

    def fds(self) -> list[int]:
        out = [fd for fd in (self.pidfd, self.listener) if fd is not None]
        if self.sock is not None:
            out.append(self.sock.fileno())
        return out

    def exited(self) -> bool:
        if self.pidfd is None:
            return True
        r, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(r)

    def kill(self) -> None:
        """Thread-safe (cancel() calls it from other threads): the pidfd cannot be closed,
        and its number reused by another sandbox, between the check and the signal."""
        with self.lock:
            self.killed = True
            if self.pidfd is not None:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_status(self) -> int | None:
        """Kill if needed, wait for death, and get the exit status from the zygote."""
        if self.status is None and self.pidfd is not None:
            if not self.exited():
                self.kill()
                select.select([self.pidfd], [], [])
            self.cpu_seconds = _cpu_seconds(self.pid)  # a zombie still has its /proc/stat
            self.status = self.zh.reap(self.pid)
            self._close_fds()
        return self.status

    def close(self) -> None:
        """Release everything; the process is killed unless it already exited."""
        if self.pidfd is None:
            return
        # Always: a one-shot child is exiting anyway, and one that is not must not go on.
        self.kill()
        self._close_fds()
        self.zh.forget(self.pid)

    def _close_fds(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.listener is not None:
            os.close(self.listener)
            self.listener = None
        with self.lock:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None


def spawn_proc(zh: ZygoteHandle, policy: Policy, oneshot: bool,
               inject_failure: str | None = None, timings: bool = False) -> Proc:
    """Fork a sandbox from the zygote and wait until it is locked down (READY).

    Raises:
        SandboxUnavailable: a lockdown step failed (evidence names it) or the process died.
    """
    host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        t0 = time.perf_counter()
        pid, generation = zh.spawn(child.fileno(), policy.to_wire(), oneshot, inject_failure,
                                   timings)
        forked = time.perf_counter() - t0
    except BaseException:
        host.close()
        raise
    finally:
        child.close()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        host.close()
        zh.forget(pid)
        raise
    proc = Proc(zh, pid, host, pidfd, oneshot, generation)
    if timings:
        proc.timings["fork (the zygote's reply)"] = forked
    proc.cpu_limit = None if policy.unsafe_no_rlimits else policy.cpu_seconds
    try:
        _await_ready(proc)
    except BaseException:
        proc.wait_status()
        proc.close()
        raise
    return proc


def _await_ready(proc: Proc) -> None:
    assert proc.sock is not None and proc.pidfd is not None
    deadline = time.monotonic() + READY_TIMEOUT
    r, _, _ = select.select([proc.sock.fileno(), proc.pidfd], [], [], READY_TIMEOUT)
    if proc.sock.fileno() not in r:
        if proc.pidfd in r:
            reason, ev = describe_status(proc.wait_status() or 0)
            raise SandboxUnavailable(f"sandbox process died before it was ready: {reason}",
                                     {"feature": "lockdown", **ev})
        raise SandboxUnavailable("sandbox process did not become ready", {"feature": "lockdown"})
    proc.sock.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        kind, payload, fds = recv_frame(proc.sock, 1 << 16, 1)
    except (OSError, SandboxError) as e:
        raise SandboxUnavailable(f"sandbox process failed before it was ready: {e}",
                                 {"feature": "lockdown"}) from e
    finally:
        proc.sock.settimeout(None)
    if kind == FrameKind.READY:
        if fds:
            proc.listener = fds[0]
        if payload:  # step timings (asked for by benchmarks): numbers, or nothing
            try:
                got = codec.decode(payload, codec.Limits(max_bytes=4096, max_items=64))
            except SandboxError:
                got = None
            if isinstance(got, dict):
                proc.timings.update({str(k)[:64]: float(v) for k, v in got.items()
                                     if isinstance(v, float)})
        return
    for fd in fds:
        os.close(fd)
    info: Any = None
    try:
        info = codec.decode(payload)
    except SandboxError:
        pass
    step = info.get("step", "?") if isinstance(info, dict) else "?"
    message = info.get("message", "") if isinstance(info, dict) else ""
    raise SandboxUnavailable(
        f"sandbox lockdown failed at step {clip(step, 64)!r}: {clip(message, 500)}; "
        "the target did not run", {"feature": "lockdown", "step": clip(step, 64)})


def supervise(proc: Proc, call_frame: bytes, fds: list[int], policy: Policy,
              outcome: Outcome, limits: codec.Limits, timeout: float | None) -> Any:
    """Send one call and watch the process until a verdict. Returns the decoded result
    when ``outcome`` ends OK; otherwise ``outcome`` holds the verdict.
    """
    assert proc.sock is not None and proc.pidfd is not None
    sock, pidfd, listener = proc.sock, proc.pidfd, proc.listener
    proc.calls += 1
    try:
        send_frame(sock, FrameKind.CALL, call_frame, fds)
    except OSError as e:
        # The process died before it could take the call.
        _died(proc, outcome, f"before the call was delivered ({e})")
        return None
    deadline = None if timeout is None else time.monotonic() + timeout
    sock_fd = sock.fileno()
    watch: list[int] = [sock_fd, pidfd] + ([listener] if listener is not None else [])
    result: Any = None
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            outcome.decide(Status.TIMEOUT, f"wall-clock timeout: the call took longer than "
                           f"{timeout} s", limit="timeout", seconds=timeout)
            proc.wait_status()
            return None
        r, _, _ = select.select(watch, [], [], remaining)
        if listener is not None and listener in r:
            if _on_notification(listener, outcome):
                if deadline is None or deadline - time.monotonic() > GRACE:
                    deadline = time.monotonic() + GRACE  # a traceback may follow; not forever
            else:
                # Readable without a notification: POLLHUP, the filter's last task is gone
                # (seccomp_unotify(2)); the pidfd tells the rest.
                watch.remove(listener)
                listener = None
            continue
        if sock_fd in r:
            sock.settimeout(None if deadline is None else max(0.001, deadline - time.monotonic()))
            try:
                kind, payload, rfds = recv_frame(sock, policy.max_result_bytes + 4096, 0)
            except TimeoutError:
                continue  # the deadline check above decides
            except EOFError:
                _died(proc, outcome, "")
                return None
            except SandboxError as e:  # malformed frame, oversized, fds attached...
                outcome.decide(Status.PROTOCOL, f"malformed frame from the sandbox: {e}",
                               **e.evidence)
                proc.wait_status()
                return None
            except OSError as e:
                _died(proc, outcome, f"({e})")
                return None
            finally:
                if proc.sock is not None:
                    sock.settimeout(None)
            for fd in rfds:  # pragma: no cover - recv_frame refuses fds already
                os.close(fd)
            result = _on_frame(kind, payload, outcome, limits)
            if outcome.decided:
                if outcome.status not in (Status.OK, Status.TARGET_ERROR):
                    proc.wait_status()  # an aborted sandbox never runs again
                return result
            continue
        if pidfd in r:
            # Drain what it said before dying (a result sent just before os._exit counts).
            rr, _, _ = select.select([sock_fd], [], [], 0)
            if rr:
                watch = [sock_fd]
                continue
            _died(proc, outcome, "")
            return None


#: System calls whose arguments at these positions are paths: shown in the message.
_PATH_ARGS: dict[str, tuple[int, ...]] = {
    "open": (0,), "creat": (0,), "openat": (1,), "openat2": (1,), "execve": (0,),
    "execveat": (1,), "stat": (0,), "lstat": (0,), "newfstatat": (1,), "statx": (1,),
    "access": (0,), "faccessat": (1,), "faccessat2": (1,), "readlink": (0,),
    "readlinkat": (1,), "mkdir": (0,), "mkdirat": (1,), "unlink": (0,), "unlinkat": (1,),
    "rmdir": (0,), "rename": (0, 1), "renameat": (1, 3), "renameat2": (1, 3),
    "chdir": (0,), "chroot": (0,), "truncate": (0,), "mknod": (0,), "mknodat": (1,),
    "symlink": (0, 1), "link": (0, 1), "chmod": (0,), "chown": (0,), "mount": (0, 1),
    "umount2": (0,), "pivot_root": (0, 1), "statfs": (0,), "getxattr": (0,),
    "setxattr": (0,), "listxattr": (0,), "utimensat": (1,), "inotify_add_watch": (1,),
}


def _read_string(pid: int, addr: int, limit: int = 512) -> str | None:
    """A NUL-terminated string from the stopped child's memory, for the report only
    (the call is refused whatever it says, so a race with the child changes nothing)."""
    if not addr:
        return None
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, limit, addr)
    except OSError:
        return None
    finally:
        os.close(fd)
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode("utf-8", "backslashreplace")


def _on_notification(listener: int, outcome: Outcome) -> bool:
    """Handle one notification; False if there was none (the listener hung up)."""
    try:
        n = seccomp_notify.recv_notification(listener)
    except OSError:
        return False  # the process died meanwhile (ENOENT): pidfd will tell
    if n is None:
        return False
    name = seccomp_notify.syscall_name(n.nr, n.arch)
    shown = [hex(a) for a in n.args]
    paths = {}
    for i in _PATH_ARGS.get(name, ()):
        path = _read_string(n.pid, n.args[i])
        if path is not None:
            paths[i] = path
            shown[i] = repr(path)
    outcome.decide(Status.VIOLATION,
                   f"forbidden system call {name}({', '.join(shown)}) "
                   "refused by the sandbox policy", syscall=name, nr=n.nr,
                   args=list(n.args), arch=n.arch,
                   **({"paths": [paths[i] for i in sorted(paths)]} if paths else {}))
    try:
        seccomp_notify.respond(listener, n.id, -errno.EPERM)  # Python: PermissionError
    except OSError:
        pass
    return True


def _on_frame(kind: int, payload: bytes, outcome: Outcome, limits: codec.Limits) -> Any:
    try:
        body = codec.decode(payload, limits)
    except SandboxError as e:
        outcome.decide(Status.PROTOCOL, f"sandbox output rejected: {e}", **e.evidence)
        return None
    if kind == FrameKind.RESULT:
        outcome.decide(Status.OK, "ok")
        return body
    if not isinstance(body, dict):
        outcome.decide(Status.PROTOCOL, f"unexpected {FrameKind(kind).name} frame body")
        return None
    tb = clip(body.get("traceback", ""))
    if kind == FrameKind.ERROR:
        if outcome.decided:
            outcome.add(traceback=tb, python_exception=clip(body.get("type"), 200))
            where = _last_frame(tb)
            if where and outcome.status is Status.VIOLATION:
                outcome.reason += f", at {where}"
                outcome.add(where=where)
            return None
        outcome.decide(Status.TARGET_ERROR,
                       f"{clip(body.get('type'), 200)}: {clip(body.get('message'), 2000)}",
                       type=clip(body.get("type"), 200), message=clip(body.get("message")),
                       traceback=tb)
        return None
    if kind == FrameKind.FAULT:
        fk = body.get("kind")
        msg = clip(body.get("message", ""), 2000)
        status = {"memory": Status.MEMORY, "recursion": Status.FAULT,
                  "import": Status.VIOLATION, "protocol": Status.PROTOCOL,
                  "call": Status.PROTOCOL}.get(fk if isinstance(fk, str) else "", Status.FAULT)
        ev: dict[str, Any] = {"kind": clip(fk, 64), "traceback": tb}
        if fk == "import":
            ev["module"] = clip(body.get("module"), 200)
        if fk == "memory":
            ev["limit"] = "memory"
        if outcome.decided:
            outcome.add(traceback=tb)
        else:
            outcome.decide(status, msg, **ev)
        return None
    outcome.decide(Status.PROTOCOL, f"unexpected frame kind {kind} from the sandbox")
    return None


_FRAME = re.compile(r'File "([^"]*)", line (\d+), in (\S+)')


def _last_frame(tb: str) -> str | None:
    """``targets.py:182 in open_file`` from the last frame of a traceback text."""
    frames = _FRAME.findall(tb)
    if not frames:
        return None
    file, line, func = frames[-1]
    return f"{os.path.basename(file)}:{line} in {func}"


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a (dead, unreaped) process, from /proc/PID/stat (proc(5))."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_cpu_limit(proc: Proc) -> float:
    return float(proc.cpu_limit) if proc.cpu_limit else float("inf")


def _died(proc: Proc, outcome: Outcome, detail: str) -> None:
    status = proc.wait_status()
    if status is None:
        why = ("its zygote (the fork server) died, and it with it" if not proc.zh.alive()
               else "its exit status could not be read")
        outcome.decide(Status.FAULT, f"sandbox process lost: {why} {detail}".strip(),
                       cause="lost")
        return
    reason, ev = describe_status(status)
    sig = ev.get("signal")
    if sig == signal.SIGXCPU:
        outcome.decide(Status.TIMEOUT, f"CPU time limit reached: {reason}", limit="cpu", **ev)
    elif sig == signal.SIGSYS:
        outcome.decide(Status.VIOLATION, f"forbidden system call: {reason}", **ev)
    elif sig == signal.SIGKILL and proc.cpu_seconds is not None \
            and proc.cpu_seconds >= proc_cpu_limit(proc):
        outcome.decide(Status.TIMEOUT, f"CPU time limit reached: {reason} at the hard limit "
                       "(SIGXCPU was ignored)", limit="cpu", **ev)
    elif sig == signal.SIGKILL and not outcome.decided:
        outcome.decide(Status.FAULT, f"sandbox process {reason} (not by the sandbox: "
                       "the kernel's OOM killer, a CPU hard limit or another process)", **ev)
    elif sig is not None:
        what = {signal.SIGSEGV: "invalid memory access or stack overflow",
                signal.SIGBUS: "bus error", signal.SIGILL: "illegal instruction",
                signal.SIGFPE: "arithmetic fault", signal.SIGABRT: "abort()"}.get(sig, "")
        outcome.decide(Status.FAULT, f"sandboxed code crashed: {reason}"
                       + (f" ({what})" if what else ""), **ev)
    elif ev.get("exit_code") == REPORT_FAILED:
        outcome.decide(Status.FAULT, "the sandbox could not send its report (out of memory "
                       "or a broken channel)", **ev)
    else:
        outcome.decide(Status.FAULT, f"sandbox process {reason} without returning a result "
                       "(os._exit or exit inside the sandbox)", **ev)

"""The host's handle on its zygote (the fork server in ``_zygote.py``).

Kept apart from ``_zygote.py`` so that the zygote never imports threading or subprocess:
a fork server must stay small and single-threaded.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from typing import Any

from sandboxmode._errors import SandboxError, SandboxUnavailable
from sandboxmode._outcome import Outcome, Status
from sandboxmode._wire import codec
from sandboxmode._zygote import BOOT, MAX_MSG, pack, unpack
from sandboxmode.policy import Policy

__all__ = ["ZygoteHandle"]


class ZygoteHandle:
    """The host's end of one zygote. Thread-safe: one request at a time, under a lock.

    Owns: the control socket and the zygote's Popen (reaped in ``close``).
    """

    def __init__(self, namespaces: bool = True) -> None:
        self.namespaces = namespaces
        self.lock = threading.Lock()
        self.ctl: socket.socket | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.features: dict[str, Any] = {}
        self.imported: set[str] = set()
        self.generation = 0
        self.pending_lock = threading.Lock()
        self.pending_forget: list[int] = []

    # -- lifecycle ---------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> None:
        """Start the zygote, or restart it if it died. Caller holds no lock."""
        if self.alive():
            # Fast path without the lock, which a spare being made may hold for a while.
            return
        with self.lock:
            if self.alive():
                return
            self._close_locked()
            self._start_locked()

    def _start_locked(self) -> None:
        try:
            host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            raise SandboxUnavailable(f"cannot start the zygote: {e}",
                                     {"feature": "zygote", "errno": e.errno}) from e
        try:
            # "" on sys.path means the host's working directory; the zygote runs in "/".
            path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path
                    if isinstance(p, str)]
            boot = json.dumps({"path": path,
                               "namespaces": self.namespaces})
            # -I: isolated mode (no PYTHON* variables, no user site, no cwd on the path);
            # env={}: no host environment variable ever reaches a sandbox.
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, str(child.fileno()), boot],
                env={}, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                cwd="/", close_fds=True)
        except OSError as e:
            host.close()
            child.close()
            raise SandboxUnavailable(f"cannot start the zygote: {e}",
                                     {"feature": "zygote"}) from e
        child.close()
        self.ctl = host
        try:
            reply = self._request_locked(None, timeout=60.0)
        except BaseException:
            self._close_locked()
            raise
        if not reply.get("ok"):
            self._close_locked()
            raise SandboxUnavailable(str(reply.get("error")), {"feature": "zygote"})
        self.features = reply["features"]
        self.imported = set()
        self.generation += 1

    def close(self) -> None:
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.ctl is not None:
            self.ctl.close()  # EOF: the zygote exits by itself
            self.ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    # -- requests ----------------------------------------------------------------------

    def _request_locked(self, msg: dict[str, Any] | None, fds: tuple[int, ...] = (),
                        timeout: float | None = 30.0, reply: bool = True) -> dict[str, Any]:
        ctl = self.ctl
        if ctl is None:
            raise SandboxError("zygote is not running")
        if msg is not None and self.pending_forget:
            with self.pending_lock:
                msg = {**msg, "forget": self.pending_forget}
                self.pending_forget = []
        try:
            if msg is not None:
                if fds:
                    socket.send_fds(ctl, [pack(msg)], list(fds))
                else:
                    ctl.send(pack(msg))
            if not reply:
                return {}
            ctl.settimeout(timeout)
            try:
                data = ctl.recv(MAX_MSG)
            finally:
                ctl.settimeout(None)
            return unpack(data)
        except (OSError, EOFError, ValueError) as e:
            # The zygote died or spoke garbage: it is no longer usable.
            self._close_locked()
            if isinstance(e, OSError) and e.errno in _TRANSIENT:
                raise host_error(e, "talk to the zygote") from e
            raise SandboxError(f"zygote failed: {e}", {"component": "zygote"}) from e

    def request(self, msg: dict[str, Any], fds: tuple[int, ...] = (),
                reply: bool = True) -> dict[str, Any]:
        with self.lock:
            return self._request_locked(msg, fds, reply=reply)

    def ensure_imported(self, modules: list[str]) -> None:
        """Import modules in the zygote (trusted host code) before forking sandboxes."""
        if all(m in self.imported for m in modules):
            return  # fast path, no lock
        with self.lock:
            need = [m for m in modules if m not in self.imported]
            if not need:
                return
            reply = self._request_locked({"op": "import", "modules": need})
            if not reply.get("ok"):
                raise SandboxError(f"cannot import {need} in the sandbox: {reply.get('error')}",
                                   {"modules": need})
            self.imported.update(need)
            # Processes forked before this import lack the modules: a new generation.
            self.generation += 1

    def spawn(self, channel_fd: int, policy: dict[str, Any], oneshot: bool,
              inject_failure: str | None = None, timings: bool = False) -> tuple[int, int]:
        """Fork a sandbox; returns (pid, generation): the generation the zygote had when it
        forked, i.e. which imports the new process holds."""
        with self.lock:
            generation = self.generation
            reply = self._request_locked(
                {"op": "spawn", "policy": policy, "oneshot": oneshot,
                 "inject_failure": inject_failure, "timings": timings}, (channel_fd,))
        if not reply.get("ok"):
            raise SandboxUnavailable(f"cannot create a sandbox: {reply.get('error')}",
                                     {"feature": "spawn"})
        return int(reply["pid"]), generation

    def reap(self, pid: int) -> int | None:
        """Exit status of a dead child (blocks until it is dead: call after its pidfd fired)."""
        try:
            reply = self.request({"op": "reap", "pid": pid})
        except SandboxError:
            return None
        return int(reply["status"]) if reply.get("ok") else None

    def forget(self, pid: int) -> None:
        """Let the zygote reap this child whenever it exits; nobody needs its status.

        Never waits: if another thread is talking to the zygote (a spare being made),
        the pid rides along with the next request instead.
        """
        with self.pending_lock:
            self.pending_forget.append(pid)
        if self.lock.acquire(blocking=False):
            try:
                self._request_locked({"op": "forget"}, reply=False)
            except SandboxError:
                pass
            finally:
                self.lock.release()



# ======================================================================================
# Zygotes per process, spares, and the strong backend.

_registry_lock = threading.Lock()
_zygotes: dict[bool, ZygoteHandle] = {}


def zygote_for(policy: Policy) -> ZygoteHandle:
    """The (running) zygote for this policy: one with namespaces, one without."""
    ns = not policy.unsafe_no_namespaces
    with _registry_lock:
        zh = _zygotes.get(ns)
        if zh is None:
            zh = _zygotes[ns] = ZygoteHandle(namespaces=ns)
    zh.ensure_running()
    return zh


#: Host errors that say "not now" rather than "not on this machine".
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN,
                        errno.ENOBUFS, errno.ETOOMANYREFS})


def host_error(e: OSError, what: str) -> SandboxUnavailable:
    """A host-side system error while setting a sandbox up, as a typed error (SPEC-1):
    the target did not run and nothing of the caller's was touched."""
    return SandboxUnavailable(
        f"cannot {what}: {e.strerror or e} (errno {e.errno}); the target did not run",
        {"feature": "host resources", "errno": e.errno, "step": what})


def strong_available(policy: Policy) -> list[str]:
    """What strong isolation lacks on this machine for this policy ([] = available)."""
    try:
        zh = zygote_for(policy)
    except SandboxError as e:
        if isinstance(e.__cause__, OSError) and e.__cause__.errno in _TRANSIENT:
            # The machine can do STRONG; this host process is short of something right
            # now. Never answer that with a silent downgrade to WEAK (SPEC-18).
            raise
        return [f"a working zygote ({e})"]
    f = zh.features
    missing = []
    if not f.get("seccomp") and not policy.unsafe_no_seccomp:
        missing.append("seccomp filter (libseccomp): " + str(f.get("errors", {}).get("seccomp", "")))
    if not f.get("landlock_abi") and not f.get("empty_root"):
        missing.append("filesystem isolation (Landlock or user+mount namespaces)")
    return missing


class Spares:
    """Locked-down sandboxes made ahead of demand, so that fork and lockdown are off the
    caller's path. One background thread ("sbm-spares") refills, per (zygote generation,
    policy, one-shot) key that was asked for, up to ``TARGET`` ready processes.

    Owns the spare `Proc`s (and so their fds) until ``take()`` hands one over.
    """

    TARGET = 2  #: spares per key to begin with
    MAX_TARGET = 8  #: sized by demand: each miss (no spare ready) asks for one more
    MAX_KEYS = 8

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.ready: dict[Any, list[Any]] = {}
        self.wanted: dict[Any, tuple[ZygoteHandle, Policy, bool]] = {}
        self.target: dict[Any, int] = {}
        self.thread: threading.Thread | None = None
        self.busy = False
        self.paused = 0
        self.closed = False

    @staticmethod
    def key(zh: ZygoteHandle, policy: Policy, oneshot: bool) -> Any:
        return (id(zh), zh.generation, policy, oneshot)

    def take(self, zh: ZygoteHandle, policy: Policy, oneshot: bool) -> Any:
        """A ready spare, or None (the caller then spawns one itself)."""
        key = self.key(zh, policy, oneshot)
        stale = []
        with self.cond:
            for k in list(self.ready):
                if k[0] == id(zh) and k[1] != zh.generation:
                    stale += self.ready.pop(k)
                    self.wanted.pop(k, None)
                    self.target.pop(k, None)
            procs = self.ready.get(key)
            proc = procs.pop(0) if procs else None
            if proc is None and key in self.wanted:
                # Demand outran the spares: keep more of them for this key from now on.
                self.target[key] = min(self.MAX_TARGET, self.target.get(key, self.TARGET) + 1)
            if key not in self.wanted and len(self.wanted) >= self.MAX_KEYS:
                old = next(iter(self.wanted))
                del self.wanted[old]
                self.target.pop(old, None)
                stale += self.ready.pop(old, [])
            self.wanted[key] = (zh, policy, oneshot)
        for p in stale:
            p.close()
        return proc

    def kick(self) -> None:
        """Refill now. Called when a call has finished, not when a spare is taken: making a
        spare (a fork in the zygote, a lockdown in the child) would otherwise compete for
        the CPU with the very call it replaces."""
        with self.cond:
            if self.thread is None and not self.closed:
                self.thread = threading.Thread(target=self._run, name="sbm-spares", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def _needed(self) -> Any:
        for key, spec in list(self.wanted.items()):
            if key[1] != spec[0].generation:
                # The zygote imported more since this key was asked for: a spare made
                # for it would be discarded at once. Forget the key (no endless refill).
                del self.wanted[key]
                self.target.pop(key, None)
                continue
            if len(self.ready.get(key, [])) < self.target.get(key, self.TARGET) \
                    and spec[0].alive():
                return key, spec
        return None

    def _run(self) -> None:
        from sandboxmode._strong import spawn_proc

        while True:
            with self.cond:
                while not self.closed and (self.paused or self._needed() is None):
                    self.cond.wait()
                if self.closed:
                    return
                key, (zh, policy, oneshot) = self._needed()
                self.busy = True
            proc = None
            try:
                proc = spawn_proc(zh, policy, oneshot)
            except BaseException:
                if proc is not None:
                    proc.close()
                proc = None
            with self.cond:
                if proc is not None and key in self.wanted and not self.closed \
                        and key[1] == zh.generation:
                    self.ready.setdefault(key, []).append(proc)
                    proc = None
                elif proc is None:
                    self.wanted.pop(key, None)  # failing to make spares: stop trying
            if proc is not None:
                proc.close()  # not wanted any more; still "busy" until it is let go
            with self.cond:
                self.busy = False
                self.cond.notify_all()

    def pause(self) -> None:
        """Stop refilling and wait for an in-flight spawn (leak checks need a still
        picture)."""
        with self.cond:
            self.paused += 1
            while self.busy:
                self.cond.wait()

    def resume(self) -> None:
        with self.cond:
            self.paused -= 1
            self.cond.notify_all()

    def owned(self) -> tuple[set[int], set[int]]:
        """(pids, fds) of the spares."""
        with self.cond:
            procs = [p for ps in self.ready.values() for p in ps]
        return {p.pid for p in procs}, {fd for p in procs for fd in p.fds()}

    def clear(self, close: bool = True) -> None:
        with self.cond:
            procs = [p for ps in self.ready.values() for p in ps]
            self.ready.clear()
            self.wanted.clear()
        if close:
            for p in procs:
                p.close()


spares = Spares()


def open_fds() -> dict[int, str]:
    """This process's open descriptors and what each points at (for leak checks: the
    test suite's, the soak's). The descriptor the listing itself used is left out."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # listdir's own descriptor, closed by now
    return out


def census() -> dict[str, Any]:
    """For leak checks: this process's zygotes, their fds here, and their live children
    (after every child the host let go of has been reaped), spares excluded."""
    out: dict[str, Any] = {"zygotes": [], "fds": [], "children": []}
    with _registry_lock:
        handles = list(_zygotes.values())
    spares.pause()
    try:
        spare_pids, spare_fds = spares.owned()
        out["fds"] += sorted(spare_fds)
        for zh in handles:
            if not zh.alive() or zh.ctl is None:
                continue
            out["zygotes"].append(zh.proc.pid if zh.proc else None)
            out["fds"].append(zh.ctl.fileno())
            reply = zh.request({"op": "census"})
            out["children"] += [p for p in reply.get("children", []) if p not in spare_pids]
    finally:
        spares.resume()
    return out


def shutdown() -> None:
    """Stop every zygote (and so every sandbox) of this process."""
    spares.clear()
    with _registry_lock:
        handles = list(_zygotes.values())
        _zygotes.clear()
    for zh in handles:
        zh.close()


def _after_fork_in_child() -> None:
    # A forked host child must not talk over its parent's control sockets, nor touch
    # its parent's spares (their fds are closed here, the processes are the parent's).
    global spares
    for ps in spares.ready.values():
        for p in ps:
            p._close_fds()
    spares = Spares()
    for zh in _zygotes.values():
        if zh.ctl is not None:
            zh.ctl.close()
        zh.ctl = None
        zh.proc = None
    _zygotes.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)


class StrongBackend:
    """Strong isolation for one `Sandbox`: owns at most one live `Proc` at a time."""

    def __init__(self, policy: Policy, max_calls: int | None) -> None:
        self.policy = policy
        self.max_calls = max_calls
        self.oneshot = max_calls == 1
        self.proc: Any = None
        self.pending: Any = None  # Outputs of the last successful call
        self.limits = codec.Limits(max_bytes=policy.max_result_bytes,
                                   max_depth=policy.max_depth, max_items=policy.max_items)
        self.inject_failure: str | None = None  # tests: fail this lockdown step
        self.cancel_requested = False
        self.outcome: Outcome | None = None  # of the call in progress, for cancel()
        self.took_spare = False  # this call asked the spares: refill them afterwards

    def _proc(self, zh: ZygoteHandle) -> Any:
        from sandboxmode._strong import spawn_proc

        p = self.proc
        if p is not None and (p.generation != zh.generation or p.pidfd is None
                              or p.killed or p.exited()):
            p.close()
            self.proc = p = None
        if p is None and self.inject_failure is None:
            p = self.proc = spares.take(zh, self.policy, self.oneshot)
            self.took_spare = True
        if p is None:
            p = self.proc = spawn_proc(zh, self.policy, self.oneshot, self.inject_failure)
        return p

    def call(self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], owner: int,
             outcome: Outcome, timeout: float | None) -> Any:
        from sandboxmode._buffers import CallBuffers
        from sandboxmode._sandbox import pickle_args
        from sandboxmode._strong import supervise
        from sandboxmode._target import _target_ref

        module, qualname, _raw = _target_ref(f)
        args_bytes, handles = pickle_args(args, kwargs, owner)
        try:
            zh = zygote_for(self.policy)
            zh.ensure_imported([module, *self.policy.preload])
            bufs = CallBuffers(handles)
        except OSError as e:
            raise host_error(e, "prepare the call's buffers or zygote") from e
        proc = None
        self.outcome = outcome
        self.took_spare = False
        try:
            try:
                proc = self._proc(zh)
            except OSError as e:
                raise host_error(e, "create the sandbox process") from e
            if self.cancel_requested:
                # cancel() came before there was a process to kill
                outcome.decide(Status.CANCELLED, "the call was cancelled",
                               cause="cancelled")
            frame = pickle.dumps({"module": module, "qualname": qualname, "args": args_bytes,
                                  "buffers": bufs.spec()}, protocol=pickle.HIGHEST_PROTOCOL)
            result = None
            if not outcome.decided:
                result = supervise(proc, frame, bufs.fds, self.policy, outcome, self.limits,
                                   timeout)
            bufs.release_sent()
            if outcome.status is Status.OK:
                try:
                    self.pending = bufs.take_outputs()
                except OSError as e:
                    outcome.overrule(Status.PROTOCOL, f"output buffers unreadable: {e}")
            return result
        except BaseException:
            # Interrupted (KeyboardInterrupt, a host error): the process must not go on.
            if proc is not None:
                proc.close()
                self.proc = None
            raise
        finally:
            self.outcome = None
            bufs.close()
            p = self.proc
            if outcome.status is Status.CANCELLED and p is not None:
                p.close()
                self.proc = p = None
            if p is not None and (p.pidfd is None or p.oneshot
                                  or (self.max_calls is not None and p.calls >= self.max_calls)):
                p.close()
                self.proc = None
            if self.took_spare:  # a persistent call that reused its process needs none
                spares.kick()

    def commit(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.copy_back()

    def discard(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.close()

    def broken(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None

    def cancel(self, busy: bool = True) -> None:
        """From any thread: record the verdict first, then kill (first verdict wins).
        With no call in progress (``busy`` False) only the idle process is ended."""
        if busy:
            self.cancel_requested = True
        outcome = self.outcome
        if outcome is not None:
            outcome.decide(Status.CANCELLED, "the call was cancelled; its sandbox process "
                           "was killed", cause="cancelled")
        p = self.proc
        if p is not None:
            p.kill()

    def close(self) -> None:
        self.discard()
        self.broken()

"""The sandbox process: its lockdown and its call loop.

This module runs in the process that touches hostile bytes, so it imports only the
standard library, msgpack (through the codec) and sandboxmode's own child-side modules.

Life of a child (forked by the zygote, see ``_zygote.py``)::

    lockdown()  -- one straight line, see below; any failure: report and _exit(RESERVED)
    READY       -- sent with the seccomp listener fd, so the host can supervise
    loop:
        CALL    <- pickled by the host (trusted direction), buffers as memfds
        run the target on memoryviews of the buffers
        RESULT / ERROR / FAULT ->  encoded with the bounded plain-data codec
        one-shot: _exit(0)

Invariant 1 (no untrusted byte enters a process before its lockdown is complete) is
kept here: nothing is read from the channel until ``lockdown()`` has returned.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.machinery
import io
import linecache
import mmap
import os
import pickle
import signal
import sys
import time
import traceback
import types
from collections.abc import Sequence
from typing import Any

from sandboxmode._ffi import libc
from sandboxmode._lockdown import caps, landlock, namespaces, rlimits
from sandboxmode._lockdown import seccomp as seccomp_layer
from sandboxmode._wire import codec
from sandboxmode._wire.frame import FrameKind, recv_frame, send_frame

#: True in a sandbox process: sandboxmode refuses to nest (SPEC-24).
IN_SANDBOX = False

#: Exit code of a child whose lockdown failed (after it reported which step).
LOCKDOWN_FAILED = 121
#: Exit code of a child that could not send its report.
REPORT_FAILED = 122
#: Largest call frame the child accepts from the host.
MAX_CALL = 1 << 30

PAGE = mmap.PAGESIZE

# Buffer kinds, as the host names them in a call frame.
IN, OUT, INOUT, SHARED_RO, SHARED_RW = "in", "out", "inout", "shared_ro", "shared_rw"


class LockdownError(Exception):
    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"lockdown step {step!r} failed: {error}")
        self.step = step


def lockdown(cfg: dict[str, Any], channel: int) -> int | None:
    """Lock this freshly forked process down. Returns the seccomp listener fd (or None).

    One straight line; each step says why it sits where it sits. ``cfg`` comes from the
    zygote (host-trusted). Raises LockdownError naming the failed step.
    """
    step = "start"
    policy = cfg["policy"]
    inject = cfg.get("inject_failure")
    timings: dict[str, float] | None = cfg.get("timings")
    last = [time.perf_counter()]

    def at(name: str) -> None:
        nonlocal step
        if timings is not None:  # `make bench`: the cost of each step
            now = time.perf_counter()
            timings[step] = now - last[0]
            last[0] = now
        step = name
        if inject == name:  # fault injection for tests: fail exactly this step
            raise OSError(0, "injected failure")

    try:
        # 1. Descriptors first: everything after this point, and the target, must see
        #    no descriptor but the channel (the zygote's control socket included).
        at("fds")
        os.closerange(0, channel)
        os.closerange(channel + 1, 1 << 20)
        # 2. Own session, and die with the zygote: a sandbox never outlives its owners.
        at("session")
        os.setsid()
        libc.check(libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        # 3. Limits before dropping privileges: lowering needs none, but after the
        #    filesystem is gone we cannot read /proc for the baseline, so it came in cfg.
        at("rlimits")
        if not policy["unsafe_no_rlimits"]:
            rlimits.apply(
                address_space=cfg["vm_baseline"] + policy["memory"],
                cpu_seconds=policy["cpu_seconds"],
                file_size=0,
                open_files=policy["open_files"],
                nproc=None if cfg["root"] else 0,
                core=0,
            )
        # 4. Filesystem gone: chroot into the zygote's empty, read-only tmpfs. Needs
        #    CAP_SYS_CHROOT in the zygote's user namespace, so before capabilities go.
        at("chroot")
        if cfg.get("empty_root") and not policy["unsafe_no_namespaces"]:
            namespaces.chroot_empty(cfg["empty_root"])
        # 5. Capabilities: nothing after this needs any.
        at("capabilities")
        if not policy["unsafe_keep_capabilities"]:
            caps.drop_all(cfg["last_cap"], bounding_set_empty=cfg.get("bounding_set_empty", False))
        # 6. no_new_privs: required by Landlock and by unprivileged seccomp.
        at("no_new_privs")
        caps.set_no_new_privs()
        # 7. Landlock: deny every filesystem and network access right this kernel knows,
        #    and scope signals and abstract unix sockets to this domain.
        at("landlock")
        if cfg["landlock_abi"] and not policy["unsafe_no_landlock"]:
            landlock.restrict_all(cfg["landlock_abi"])
        # 8. seccomp last: the steps above need system calls the filter forbids.
        at("seccomp")
        listener = None
        if not policy["unsafe_no_seccomp"]:
            listener = seccomp_layer.load(cfg["bpf"], notify=cfg["notify"])
        at("end")
        return listener
    except BaseException as e:
        raise LockdownError(step, e) from e


# --------------------------------------------------------------------------------------
# Imports after lockdown


class _ImportDenied(ImportError):
    pass


def denied_import_message(module: str) -> str:
    return (f"import of {module!r} inside the sandbox is not allowed: "
            f"preload it with Policy(preload=({module!r},))")


def type_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``package.module.Error`` otherwise: how a remote
    exception type is named in `TargetError` (WEAK names it the same way)."""
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class _DenyImports(importlib.abc.MetaPathFinder):
    """First on sys.meta_path after lockdown: a module not preloaded may not be imported.

    The denial is remembered, so that a target that catches ImportError still gets its
    call reported as a PolicyViolation naming the module.
    """

    def __init__(self) -> None:
        self.denied: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        self.denied.append(fullname)
        raise _ImportDenied(denied_import_message(fullname), name=fullname)


# --------------------------------------------------------------------------------------
# Buffers


class _Mapping:
    """A memfd mapped between two PROT_NONE guard pages; unmapped by close()."""

    def __init__(self, fd: int, size: int, writable: bool) -> None:
        self.base = 0
        self.total = 0
        self.view: memoryview
        if size == 0:
            self.view = memoryview(bytearray(0)) if writable else memoryview(b"")
            return
        span = -(-size // PAGE) * PAGE
        self.total = span + 2 * PAGE
        base = libc.mmap(None, self.total, libc.PROT_NONE,
                         libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE, -1, 0)
        if base in (None, libc.MAP_FAILED):
            raise MemoryError("cannot reserve address space for a buffer")
        self.base = base
        prot = libc.PROT_READ | (libc.PROT_WRITE if writable else 0)
        addr = libc.mmap(base + PAGE, span, prot, libc.MAP_SHARED | libc.MAP_FIXED, fd, 0)
        if addr in (None, libc.MAP_FAILED):
            raise MemoryError("cannot map a buffer")
        arr = (ctypes.c_char * size).from_address(addr)
        view = memoryview(arr).cast("B")
        self.view = view if writable else view.toreadonly()

    def close(self) -> None:
        if self.base:
            self.view.release()
            libc.munmap(self.base, self.total)
            self.base = 0


class _CallUnpickler(pickle.Unpickler):
    """host-to-sandbox: unpickles the arguments the host pickled for this call. Runs in
    the sandbox, on bytes from the host (trusted); never used on anything a sandbox wrote.
    """

    def __init__(self, data: bytes, views: list[memoryview]) -> None:
        super().__init__(io.BytesIO(data))
        self.views = views

    def persistent_load(self, pid: Any) -> Any:
        tag, index = pid
        if tag != "buf":
            raise pickle.UnpicklingError(f"unknown persistent id {tag!r}")
        return self.views[index]


# --------------------------------------------------------------------------------------
# The call loop


def _no_checkcache(filename: str | None = None) -> None:
    return None


def _no_updatecache(filename: str, module_globals: Any = None) -> list[str]:
    return []


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    # @sandboxed wraps; the child runs the original function.
    return getattr(obj, "__sandboxed_target__", obj)


def serve(channel: int, cfg: dict[str, Any]) -> None:
    """Entry point of a freshly forked child. Never returns."""
    import socket

    global IN_SANDBOX
    IN_SANDBOX = True
    try:
        listener = lockdown(cfg, channel)
    except LockdownError as e:
        try:
            sock = socket.socket(fileno=channel)
            send_frame(sock, FrameKind.FAULT, codec.encode(
                {"kind": "lockdown", "step": e.step, "message": str(e)}))
        finally:
            os._exit(LOCKDOWN_FAILED)
    sock = socket.socket(fileno=channel)
    # Tracebacks must not touch the filesystem (it is gone): source lines come only from
    # what the zygote cached for the modules it imported.
    linecache.checkcache = _no_checkcache
    linecache.updatecache = _no_updatecache
    denier = _DenyImports()
    sys.meta_path.insert(0, denier)
    limits = codec.Limits(max_bytes=cfg["policy"]["max_result_bytes"],
                          max_depth=cfg["policy"]["max_depth"],
                          max_items=cfg["policy"]["max_items"])
    t0 = time.perf_counter()
    _warm_up(limits)
    ready = b""
    timings = cfg.get("timings")
    if timings is not None:
        timings.pop("start", None)
        timings["warm-up"] = time.perf_counter() - t0
        ready = codec.encode(timings)
    try:
        send_frame(sock, FrameKind.READY, ready, [listener] if listener is not None else [])
        if listener is not None:
            os.close(listener)
        while True:
            _WARM[0] = False
            _serve_one(sock, denier, limits)
            if cfg["oneshot"] and not _WARM[0]:
                break
    except BaseException:
        # Could not even report (the channel broke, or memory is gone): a distinct code,
        # so the host says so instead of "exited without a result".
        os._exit(REPORT_FAILED)
    os._exit(0)


def _warm_up(limits: codec.Limits) -> None:
    """Touch, before READY, what every call touches, so that the copy-on-write page faults
    of a fresh fork are paid while the spare waits, not on the caller's time."""
    frame = pickle.dumps({"module": __name__, "qualname": "_warm_up", "args": pickle.dumps(
        ((b"x" * 64, 1, "s"), {})), "buffers": []})
    # host-to-sandbox path, exercised on bytes this function just made itself.
    call = pickle.loads(frame)
    pickle.loads(call["args"])
    codec.decode(codec.encode({"ok": [1, 2.0, "three", b"four", None, True]}, limits), limits)
    try:
        raise ValueError("warm-up")
    except ValueError as e:
        _traceback_text(e)


#: Set when the frame just served was a PING, which a one-shot sandbox does not count
#: as its one call.
_WARM = [False]


def _serve_one(sock: Any, denier: _DenyImports, limits: codec.Limits) -> None:
    kind, payload, fds = recv_frame(sock, MAX_CALL, 64)
    if kind == FrameKind.EXIT:
        raise SystemExit(0)
    if kind == FrameKind.PING:
        _WARM[0] = True
        send_frame(sock, FrameKind.PONG, b"")
        return
    mappings: list[_Mapping] = []
    try:
        denier.denied.clear()
        try:
            # host-to-sandbox: the CALL frame comes from the host, which trusts itself;
            # the host never unpickles what comes back (invariant 2: plain-data codec).
            call = pickle.loads(payload)
            for (bkind, size), fd in zip(call["buffers"], fds, strict=True):
                mappings.append(_Mapping(fd, size, bkind not in (IN, SHARED_RO)))
            views = [m.view for m in mappings]
            args, kwargs = _CallUnpickler(call["args"], views).load()
            target = _resolve(call["module"], call["qualname"])
        except BaseException as e:
            if denier.denied:
                _send_import_fault(sock, denier, e)
            else:
                _send_fault(sock, "call", f"cannot prepare the call: {e!r}", e)
            return
        try:
            value = target(*args, **kwargs)
        except RecursionError as e:
            _send_fault(sock, "recursion", "stack overflow: unbounded recursion "
                        "(RecursionError)", e)
            return
        except MemoryError as e:
            # The frames of the traceback still hold what filled the memory: free it
            # before anything else needs memory.
            traceback.clear_frames(e.__traceback__)
            _send_fault(sock, "memory", "memory limit reached (MemoryError)", e)
            return
        except BaseException as e:
            if denier.denied:
                _send_import_fault(sock, denier, e)
                return
            send_frame(sock, FrameKind.ERROR, codec.encode({
                "type": type_name(e), "message": str(e), "traceback": _traceback_text(e)}))
            return
        if denier.denied:  # the target caught the ImportError: still a violation
            _send_import_fault(sock, denier, None)
            return
        try:
            data = codec.encode(value, limits)
        except MemoryError as e:
            _send_fault(sock, "memory", "memory limit reached encoding the result", e)
            return
        except (TypeError, ValueError, OverflowError) as e:
            _send_fault(sock, "protocol", f"result is not plain data: {e}", None)
            return
        send_frame(sock, FrameKind.RESULT, data)
    finally:
        for fd in fds:
            os.close(fd)
        for m in mappings:
            m.close()


def _send_import_fault(sock: Any, denier: _DenyImports, exc: BaseException | None) -> None:
    module = denier.denied[0]
    _send_fault(sock, "import", denied_import_message(module), exc, module=module)


def _send_fault(sock: Any, kind: str, message: str, exc: BaseException | None,
                **extra: Any) -> None:
    body: dict[str, Any] = {"kind": kind, "message": message}
    if exc is not None:
        tb = _traceback_text(exc)
        body["traceback"] = tb if len(tb) < 65536 else tb[-65536:]
    body.update(extra)
    send_frame(sock, FrameKind.FAULT, codec.encode(body))

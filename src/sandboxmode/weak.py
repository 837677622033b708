"""Weak and no isolation: the same API, in the caller's own process.

WEAK runs the function here, on private copies of the buffers, each placed between two
red zones of one page (a known pattern checked after the call), with faults that Python
can see captured: unbounded recursion, MemoryError, writes to an input, writes outside an
output. It has **no memory protection**: native code can still read or write anything in
the process, crash it, exit it or spin forever (no timeout). Rows 7, 13 and 17 of the
kernel series' matrix and native stack overflows are therefore out of reach, and native
out-of-bounds *reads* (rows 11, 12) read the red zone instead of aborting.

NONE is a plain call on the originals (SBM's "no isolation" mode), with the same error
mapping so that code written against STRONG runs unchanged.
"""

from __future__ import annotations

import mmap
import threading
import traceback
from typing import Any

from sandboxmode._buffers import IN, INOUT, OUT, SHARED_RO, SHARED_RW, BufferHandle, SharedBuffer
from sandboxmode._child import type_name
from sandboxmode._outcome import Outcome, Status, clip
from sandboxmode._wire import codec
from sandboxmode.policy import Policy

__all__ = ["NoneBackend", "WeakBackend"]

PAGE = mmap.PAGESIZE
RED = 0xA5
_local = threading.local()


class _Copy:
    """A private copy of one caller buffer between two red zones."""

    def __init__(self, h: BufferHandle) -> None:
        self.h = h
        size = self.size = h.size
        # Like a page-aligned mapping in STRONG: the rest of the last page reads as zeros
        # and writes there are discarded; beyond it, one page of red zone on each side.
        self.span = -(-size // PAGE) * PAGE
        self.store = bytearray([RED]) * PAGE + bytearray(self.span) + bytearray([RED]) * PAGE
        if h.kind in (IN, INOUT) and size:
            with memoryview(h.obj) as src:
                self.store[PAGE:PAGE + size] = src.cast("B")
        self.snapshot = bytes(self.store[PAGE:PAGE + size]) if h.kind == IN else b""
        view = memoryview(self.store)[PAGE:PAGE + size]
        self.view = view.toreadonly() if h.kind == IN else view

    def violation(self) -> str | None:
        red = bytes([RED]) * PAGE
        if self.store[:PAGE] != red:
            return "write before the start of a buffer"
        if self.store[PAGE + self.span:] != red:
            return "write past the end of a buffer"
        if self.h.kind == IN and self.store[PAGE:PAGE + self.size] != self.snapshot:
            return "write to a read-only input buffer"
        return None


def _shared_view(h: BufferHandle) -> memoryview:
    assert isinstance(h.obj, SharedBuffer)
    v = h.obj.view
    return v.toreadonly() if h.kind == SHARED_RO else v


class _InProcess:
    copies_buffers = True
    cancel_requested = False

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.limits = codec.Limits(max_bytes=policy.max_result_bytes,
                                   max_depth=policy.max_depth, max_items=policy.max_items)
        self.pending: list[_Copy] = []

    def call(self, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any], owner: int,
             outcome: Outcome, timeout: float | None) -> Any:
        from sandboxmode._sandbox import _local as sandbox_local

        raw = getattr(f, "__sandboxed_target__", f)
        copies: list[_Copy] = []

        def swap(a: Any) -> Any:
            if isinstance(a, BufferHandle):
                if a.owner != owner:
                    raise ValueError("this buffer handle belongs to another Sandbox (SPEC-17)")
                if a.kind in (SHARED_RO, SHARED_RW):
                    return _shared_view(a)
                if not self.copies_buffers:
                    v = memoryview(a.obj).cast("B")
                    return v.toreadonly() if a.kind == IN else v
                c = _Copy(a)
                copies.append(c)
                return c.view
            return a

        args = tuple(swap(a) for a in args)
        kwargs = {k: swap(v) for k, v in kwargs.items()}
        sandbox_local.depth = getattr(sandbox_local, "depth", 0) + 1
        try:
            value = raw(*args, **kwargs)
        except RecursionError as e:
            outcome.decide(Status.FAULT, "stack overflow: unbounded recursion (RecursionError)",
                           kind="recursion", traceback=_tb(e))
            return None
        except MemoryError as e:
            outcome.decide(Status.MEMORY, "memory exhausted (MemoryError)", limit="memory",
                           traceback=_tb(e))
            return None
        except Exception as e:
            name = type_name(e)
            outcome.decide(Status.TARGET_ERROR, f"{name}: {clip(str(e), 2000)}", type=name,
                           message=clip(str(e)), traceback=_tb(e))
            return None
        finally:
            sandbox_local.depth -= 1
        for c in copies:
            problem = c.violation()
            if problem:
                outcome.decide(Status.FAULT, f"memory fault: {problem} (caught by a red zone)",
                               kind="red-zone")
                return None
        # Results cross the same codec as in STRONG: identical semantics and limits.
        try:
            data = codec.encode(value, self.limits)
        except (TypeError, ValueError, OverflowError) as e:
            outcome.decide(Status.PROTOCOL, f"result is not plain data: {e}")
            return None
        result = codec.decode(data, self.limits)
        outcome.decide(Status.OK, "ok")
        self.pending = [c for c in copies if c.h.kind in (OUT, INOUT)]
        return result

    def commit(self) -> None:
        pending, self.pending = self.pending, []
        for c in pending:
            with memoryview(c.h.obj) as dst:
                dst.cast("B")[:] = c.view

    def discard(self) -> None:
        self.pending = []

    def broken(self) -> None:
        pass

    def cancel(self, busy: bool = True) -> None:
        pass

    def close(self) -> None:
        self.pending = []


def _tb(e: BaseException) -> str:
    return clip("".join(traceback.format_exception(e)))


class WeakBackend(_InProcess):
    """Private copies with red zones; see the module docstring for what it cannot do."""


class NoneBackend(_InProcess):
    """A plain call on the caller's own buffers."""

    copies_buffers = False


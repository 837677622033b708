"""Sandboxed functions used by test_pool.py. Imported by the zygote: no pytest here.

``started_then_spin`` and `wait_started` make a real cross-process event out of a futex in
shared memory: the sandbox writes 1 and wakes the waiter, the host test blocks in
FUTEX_WAIT until then (no polling, no sleeps). A futex word in a MAP_SHARED mapping is
keyed on the memory, not the address, so it works across the two processes.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_futex = 202  # x86_64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1

_COUNT = 0


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def square(x: int) -> int:
    return x * x


def describe(data: Any) -> list[Any]:
    """What the function received: type, read-only flag, length, first bytes."""
    ro = data.readonly if isinstance(data, memoryview) else None
    return [type(data).__name__, ro, len(data), bytes(data[:4])]


def echo(*args: Any, **kwargs: Any) -> Any:
    return [list(args), kwargs]


def counter(_: Any = None) -> int:
    """How many calls this sandbox process has served (module state survives calls)."""
    global _COUNT
    _COUNT += 1
    return _COUNT


def act(op: Any) -> Any:
    """One function, many behaviours: ``map`` takes a single function."""
    if isinstance(op, int):
        return op * op
    if op == "count":
        return counter()
    if op == "raise":
        raise ValueError("bad item")
    if op == "crash":
        ctypes.string_at(0)
    if op == "exit":
        os._exit(7)
    if op == "spin":
        spin()
    raise LookupError(op)


def spin(_: Any = None) -> None:
    while True:
        pass


def started_then_spin(flag: memoryview) -> None:
    """Set the futex word at the start of ``flag``, wake the host, then never return."""
    word = ctypes.c_uint32.from_buffer(flag)
    word.value = 1
    _libc.syscall(ctypes.c_long(_SYS_futex), ctypes.c_void_p(ctypes.addressof(word)),
                  ctypes.c_long(_FUTEX_WAKE), ctypes.c_long(1 << 30),
                  None, None, ctypes.c_long(0))
    spin()


def wait_started(flag: memoryview, timeout: float) -> bool:
    """Host side: block until `started_then_spin` set the word (True) or ``timeout``
    seconds passed (False). The GIL is released while blocked."""
    word = ctypes.c_uint32.from_buffer(flag)
    try:
        addr = ctypes.c_void_p(ctypes.addressof(word))
        ts = _Timespec(int(timeout), int((timeout % 1) * 1e9))
        while word.value == 0:
            r = _libc.syscall(ctypes.c_long(_SYS_futex), addr, ctypes.c_long(_FUTEX_WAIT),
                              ctypes.c_long(0), ctypes.byref(ts), None, ctypes.c_long(0))
            if r == -1 and ctypes.get_errno() == errno.ETIMEDOUT:
                return word.value != 0
        return True
    finally:
        del word  # release the export so the SharedBuffer can be closed

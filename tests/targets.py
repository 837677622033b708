"""Sandboxed functions used by the tests. Imported by the zygote: no pytest here.

Native reads and writes go through ctypes to real addresses, as a buggy C parser would.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import time
from typing import Any

from sandboxmode._attacks import deep_result as deep_result
from sandboxmode._attacks import huge_result
from sandboxmode._ffi.pybuffer import buffer_address

PAGE = mmap.PAGESIZE

# Host objects the matrix's rows 5, 6 and 8 try to reach.
HOST_GLOBAL = bytearray(b"host-global")
HOST_LIST: list[int] = [1, 2, 3]


def address(buf: Any) -> int:
    """The address of a buffer's first byte (works for read-only buffers too)."""
    return buffer_address(buf)


def poke(addr: int, value: int = 0x41) -> None:
    ctypes.memset(addr, value, 1)


def peek(addr: int) -> int:
    return ctypes.string_at(addr, 1)[0]


# -- SPEC §5 rows ---------------------------------------------------------------------------

def write_marker(out: memoryview) -> int:                       # 1
    out[:4] = b"\xde\xad\xbe\xef"
    return 0


def write_past_py(out: memoryview) -> int:                      # 2, Python
    out[1] = 1
    return 0


def write_past_native(out: memoryview) -> int:                  # 2, native within the page
    poke(address(out) + 1)
    return 0


def write_page_past(out: memoryview) -> int:                    # 3
    poke(address(out) + PAGE)
    return 0


def write_before(out: memoryview) -> int:                       # 4
    poke(address(out) - 1)
    return 0


def mutate_arg(obj: Any) -> int:                                # 5, 8
    obj[0] = ord("X")
    return 0


def mutate_default(x: list[int] = HOST_LIST) -> int:            # 6
    x.append(4)
    return len(x)


def write_raw(addr: int) -> int:                                # 7
    poke(addr)
    return 0


def copy(inp: memoryview, out: memoryview) -> int:              # 9
    out[:] = inp
    return len(inp)


def read_past_py(inp: memoryview) -> int:                       # 10, Python
    return inp[1]


def read_past_native(inp: memoryview) -> int:                   # 10, native within the page
    return peek(address(inp) + 1)


def read_page_past(inp: memoryview) -> int:                     # 11
    return peek(address(inp) + PAGE)


def read_before(inp: memoryview) -> int:                        # 12
    return peek(address(inp) - 1)


def read_raw(addr: int) -> int:                                 # 13
    return peek(addr)


def flip(buf: memoryview) -> int:                               # 14
    buf[0] ^= 0xFF
    return 0


def good() -> int:                                              # 15
    return 0x600D600D


def recurse(n: int = 0) -> int:                                 # 16, Python
    return recurse(n + 1) + 1


def native_stack_overflow() -> int:                             # 16, native
    sys.setrecursionlimit(1 << 30)
    a: list[Any] = []
    b: list[Any] = []
    for _ in range(1_000_000):
        a, b = [a], [b]
    return int(a == b)  # list comparison recurses in C, one frame per level


def write_noncanonical() -> int:                                # 17
    poke(1 << 63)
    return 0


# -- other targets --------------------------------------------------------------------------

def echo(*args: Any, **kwargs: Any) -> Any:
    return [list(args), kwargs]


def length(data: memoryview) -> int:
    return len(data)


def raise_value_error(msg: str = "bad input") -> None:
    raise ValueError(msg)


def segfault() -> None:
    ctypes.string_at(0)


def abort() -> None:
    os.abort()


def illegal_instruction() -> None:
    os.kill(os.getpid(), signal.SIGILL)


def exit_now(code: int = 3) -> None:
    os._exit(code)


def open_file(path: str = "/etc/hostname") -> str:
    with open(path) as f:
        return f.read()


def make_socket() -> None:
    import socket

    socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def spin() -> None:
    while True:
        pass


def sleep_blocking_signals(seconds: float) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
    time.sleep(seconds)


def eat_memory() -> int:
    hog = []
    while True:
        hog.append(bytearray(16 << 20))


big_result = huge_result  # one home for the codec-bomb targets: sandboxmode._attacks


def not_plain() -> Any:
    return {1, 2, 3}


def late_import() -> Any:
    import xml.dom.minidom  # noqa: F401  (not preloaded)

    return 0


def late_import_caught() -> Any:
    try:
        import xml.dom.minidom  # noqa: F401
    except ImportError:
        return "swallowed"
    return 0


def environment() -> dict[str, str]:
    return dict(os.environ)


def open_fds() -> list[int]:
    return sorted(int(x) for x in os.listdir("/proc/self/fd"))


def fds_by_fstat() -> list[int]:
    out = []
    for fd in range(256):
        try:
            os.fstat(fd)
        except OSError:
            continue
        out.append(fd)
    return out


def counter() -> int:
    global _COUNT
    _COUNT += 1
    return _COUNT


_COUNT = 0


def nested_sandbox() -> Any:
    import sandboxmode

    return sandboxmode.run(good)


def write_shared(buf: memoryview, data: bytes, then_fail: bool = False) -> int:
    buf[: len(data)] = data
    if then_fail:
        raise RuntimeError("failing after the write")
    return 0


def read_shared(buf: memoryview) -> bytes:
    return bytes(buf)


def write_input(inp: memoryview) -> int:
    poke(address(inp))
    return 0

"""Functions the benchmarks run in sandboxes, worker processes and forked children.

Imported by the zygote (sandboxes import their target's module by name), so it stays
small: standard library only, nothing heavy at import time.
"""

from __future__ import annotations

import socket
from typing import Any


def length(data: Any) -> int:
    """The benchmarked call: touch nothing, return the input's length (1 KiB input)."""
    return len(data)


def length_to_pipe(conn: Any, data: bytes) -> None:
    """`multiprocessing.Process` target: the result goes back through a Pipe."""
    conn.send(len(data))
    conn.close()


def echo_server(sock: socket.socket, other_end: socket.socket) -> None:
    """The floor: answer every message with its length until the peer hangs up.
    ``other_end`` is the parent's end, inherited by the fork: closed so that EOF comes."""
    other_end.close()
    while True:
        msg = sock.recv(1 << 16)
        if not msg:
            return
        sock.send(len(msg).to_bytes(4, "little"))

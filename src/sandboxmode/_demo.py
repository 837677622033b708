"""Targets of ``sbm demo``: one honest parser call and a row of hostile inputs.

Each hostile function does what a malicious input would make a vulnerable parser do.
They are real: run unsandboxed (``f.direct()`` / a plain call) they would crash, read
files, fork, exhaust memory or spin.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Any

from sandboxmode.parsers import openpgp

#: Planted by ``sbm demo`` in the host before any sandbox starts.
HOST_SECRET_ENV = "SBM_DEMO_SECRET"


def parse_key(data: memoryview) -> Any:
    """The honest job: parse an OpenPGP certificate into plain data."""
    return openpgp.parse(data)


def segfault(data: memoryview) -> None:
    ctypes.string_at(0)


def read_host_file(data: memoryview) -> str:
    with open("/etc/passwd") as f:
        return f.read()


def fork_bomb(data: memoryview) -> int:
    n = 0
    while True:
        if os.fork() == 0:
            os._exit(0)
        n += 1


def memory_bomb(data: memoryview) -> int:
    hog = []
    while True:
        hog.append(bytearray(64 << 20))


def endless_loop(data: memoryview) -> None:
    while True:
        pass


def host_secret(data: memoryview) -> str:
    # The secret lives in the host's environment and memory. The sandbox has neither:
    # its process was forked from a zygote that started with an empty environment.
    value = os.environ.get(HOST_SECRET_ENV)
    if value is not None:
        return value
    ppid = os.getppid()
    with open(f"/proc/{ppid}/environ", "rb") as f:
        return f.read().decode(errors="replace")


def phone_home(data: memoryview) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("127.0.0.1", 9))
    finally:
        s.close()
    return "connected"

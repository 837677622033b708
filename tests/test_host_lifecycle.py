"""The host's own fate: sandboxes and the zygote die with it; a host short of memory gets
a typed error, not a crash."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.isolation

HERE = Path(__file__).parent
HANG_GUARD = 30.0


def _host(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "host_script.py"), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=HERE, **kw)  # type: ignore[call-overload]


def test_zygote_and_sandboxes_die_with_the_host() -> None:
    host = _host("spare")
    try:
        assert host.stdout is not None
        zygote, sandbox = (int(x) for x in host.stdout.readline().split())
        fds = [os.pidfd_open(zygote), os.pidfd_open(sandbox)]
    except BaseException:
        host.kill()
        host.wait()
        raise
    try:
        for fd in fds:  # alive while the host is
            assert select.select([fd], [], [], 0)[0] == []
        host.send_signal(signal.SIGKILL)  # no atexit, no cleanup: the host just dies
        host.wait()
        for fd, who in zip(fds, ("zygote", "sandbox"), strict=True):
            ready, _, _ = select.select([fd], [], [], HANG_GUARD)
            assert ready, f"the {who} outlived its host"
    finally:
        for fd in fds:
            os.close(fd)
        if host.stdin is not None:
            host.stdin.close()
        if host.stdout is not None:
            host.stdout.close()


@pytest.mark.parametrize("mib", [0, 1, 16, 96])
def test_host_out_of_memory_during_set_up_is_typed(mib: int) -> None:
    """With little address space left in the host, copying 64 MiB in and out of a
    sandbox fails somewhere in set-up or copy-back (or works): whatever happens it is an
    answer — a typed error, or the host's own MemoryError — never a crash or a hang."""
    host = _host("nomem", str(mib))
    out, _ = host.communicate(timeout=120)
    assert host.returncode == 0, out
    assert out.split()[0] in {"ok", "SandboxUnavailable", "SandboxMemoryError",
                              "MemoryError"}, out

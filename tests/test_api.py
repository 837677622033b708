"""The public surface is pinned: a change here is a change for every user."""

from __future__ import annotations

import errno
import pickle

import pytest

import sandboxmode as sbm

EXPORTS = {
    "Isolation", "Policy", "PolicyViolation", "ProtocolError", "Sandbox", "SandboxCancelled",
    "SandboxClosed",
    "SandboxError", "SandboxFault", "SandboxMemoryError", "SandboxTimeout",
    "SandboxUnavailable", "SharedBuffer", "TargetError", "run", "sandboxed", "Pool",
}


def test_exports_are_pinned() -> None:
    assert set(sbm.__all__) == EXPORTS
    for name in EXPORTS:
        assert hasattr(sbm, name)


@pytest.mark.parametrize(("exc", "code"), [
    (sbm.SandboxFault, errno.EFAULT), (sbm.PolicyViolation, errno.EPERM),
    (sbm.SandboxTimeout, errno.ETIMEDOUT), (sbm.SandboxMemoryError, errno.ENOMEM),
    (sbm.ProtocolError, errno.EPROTO), (sbm.SandboxUnavailable, errno.ENOSYS),
    (sbm.SandboxClosed, errno.EBADF), (sbm.TargetError, 0),
    (sbm.SandboxCancelled, errno.ECANCELED),
])
def test_exception_tree(exc: type[sbm.SandboxError], code: int) -> None:
    assert issubclass(exc, sbm.SandboxError)
    e = exc("message", {"signal": 11})
    assert e.errno == code
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is exc and str(back) == "message" and back.evidence == {"signal": 11}


def test_timeout_is_also_a_builtin_timeout_error() -> None:
    assert issubclass(sbm.SandboxTimeout, TimeoutError)


def test_target_error_is_not_sticky() -> None:
    assert not sbm.TargetError("x").sticky and sbm.SandboxFault("x").sticky


@pytest.mark.parametrize("bad", [
    {"timeout": 0}, {"timeout": -1.0}, {"memory": 0}, {"cpu_seconds": -1},
    {"open_files": 2}, {"preload": ("not a module!",)}, {"extra_syscalls": ("Bad Name",)},
    {"max_depth": True},
])
def test_policy_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        sbm.Policy(**bad)  # type: ignore[arg-type]


def test_policy_is_frozen_and_names_its_weakenings() -> None:
    p = sbm.Policy()
    with pytest.raises(AttributeError):
        p.timeout = 3  # type: ignore[misc]
    assert p.unsafe == ()
    assert p.replace(unsafe_no_seccomp=True).unsafe == ("unsafe_no_seccomp",)


def test_buffers_must_be_buffers() -> None:
    with sbm.Sandbox(isolation=sbm.Isolation.NONE) as box:
        with pytest.raises(TypeError):
            box.copy_in("text")
        with pytest.raises(TypeError, match="writable"):
            box.copy_out(b"read-only")


def test_functions_must_be_importable() -> None:
    with sbm.Sandbox() as box, pytest.raises(TypeError, match="module level"):
        box.call(lambda: 1)


def test_the_zygote_stays_small() -> None:
    """What the zygote imports (and so every sandbox carries): no threads machinery, no
    asyncio, no subprocess, even with the bundled sandboxed parsers loaded."""
    import subprocess
    import sys

    code = ("import sys, sandboxmode._zygote, sandboxmode._child, sandboxmode.parsers.sandboxed;"
            "print(sorted(m for m in ('threading', 'asyncio', 'subprocess', "
            "'concurrent.futures', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_importing_costs_nothing() -> None:
    """SPEC-25: importing sandboxmode starts no process or thread and patches nothing
    (no at-fork or atexit hook until a sandbox is used)."""
    import subprocess
    import sys

    code = ("import sys, threading, sandboxmode;"
            "print(threading.active_count(), 'sandboxmode._spawner' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["1", "False"]


def test_concurrent_calls_on_one_instance_are_serialised() -> None:
    """SPEC-24: threads sharing one persistent sandbox each get a whole call."""
    import threading

    import targets

    results: list[int] = []
    with sbm.Sandbox() as box:
        def worker() -> None:
            for _ in range(20):
                results.append(box.call(targets.counter))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == list(range(1, 81))

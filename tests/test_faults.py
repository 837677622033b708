"""Every fault → its own typed error with evidence; the host carries on; sticky on the
instance. One table (loky style): what goes wrong, the policy, the exception, the
evidence that must be in it.

Each target does real harm when called unsandboxed (crashes the process, exhausts memory,
spins forever...), which is why they are not called directly here: where showing the harm
is cheap and safe, a test below does it in a throwaway forked child.
"""

from __future__ import annotations

import errno
import faulthandler
import os
import signal
from typing import Any

import pytest

import sandboxmode as sbm
import targets

pytestmark = pytest.mark.isolation

SMALL = sbm.Policy(timeout=5.0, cpu_seconds=2, memory=128 << 20)

CASES: list[tuple[str, Any, tuple[Any, ...], sbm.Policy, type[sbm.SandboxError], dict[str, Any], str]] = [
    ("segfault", targets.segfault, (), SMALL, sbm.SandboxFault,
     {"signal_name": "SIGSEGV(-11)"}, "crashed"),
    ("abort", targets.abort, (), SMALL, sbm.SandboxFault, {"signal_name": "SIGABRT(-6)"},
     "abort()"),
    ("illegal instruction", targets.illegal_instruction, (), SMALL, sbm.SandboxFault,
     {"signal_name": "SIGILL(-4)"}, "illegal instruction"),
    ("unbounded recursion", targets.recurse, (), SMALL, sbm.SandboxFault,
     {"kind": "recursion"}, "recursion"),
    ("native stack overflow", targets.native_stack_overflow, (),
     SMALL.replace(cpu_seconds=30, memory=1 << 30, timeout=60), sbm.SandboxFault,
     {"signal_name": "SIGSEGV(-11)"}, "stack overflow"),
    ("os._exit", targets.exit_now, (7,), SMALL, sbm.SandboxFault, {"exit_code": 7},
     "os._exit"),
    ("open a file", targets.open_file, ("/etc/hostname",), SMALL, sbm.PolicyViolation,
     {"syscall": "openat", "paths": ["/etc/hostname"]}, "openat"),
    ("socket", targets.make_socket, (), SMALL, sbm.PolicyViolation, {"syscall": "socket"},
     "socket"),
    ("wall-clock timeout", targets.spin, (), SMALL.replace(timeout=0.5), sbm.SandboxTimeout,
     {"limit": "timeout"}, "wall-clock"),
    ("sleep with signals blocked", targets.sleep_blocking_signals, (3600,),
     SMALL.replace(timeout=0.5), sbm.SandboxTimeout, {"limit": "timeout"}, "wall-clock"),
    ("CPU limit", targets.spin, (), SMALL.replace(timeout=60, cpu_seconds=1),
     sbm.SandboxTimeout, {"limit": "cpu"}, "CPU time"),
    ("memory limit", targets.eat_memory, (), SMALL, sbm.SandboxMemoryError,
     {"limit": "memory"}, "memory"),
    ("oversized result", targets.big_result, (2 << 20,),
     SMALL.replace(max_result_bytes=1 << 20), sbm.ProtocolError, {}, ""),
    ("too deep result", targets.deep_result, (200,), SMALL, sbm.ProtocolError, {}, ""),
    ("not plain data", targets.not_plain, (), SMALL, sbm.ProtocolError, {}, "plain data"),
    ("late import", targets.late_import, (), SMALL, sbm.PolicyViolation,
     {"module": "xml"}, "preload"),
    ("late import caught", targets.late_import_caught, (), SMALL, sbm.PolicyViolation,
     {"module": "xml"}, "preload"),
]


@pytest.mark.parametrize(("name", "fn", "args", "policy", "exc", "evidence", "text"), CASES,
                         ids=[c[0] for c in CASES])
def test_fault(name: str, fn: Any, args: tuple[Any, ...], policy: sbm.Policy,
               exc: type[sbm.SandboxError], evidence: dict[str, Any], text: str) -> None:
    out = bytearray(b"caller")
    with sbm.Sandbox(policy=policy) as box:
        with pytest.raises(exc) as ei:
            box.call(fn, *args)
        e = ei.value
        assert type(e) is exc, repr(e)
        for k, v in evidence.items():
            assert e.evidence.get(k) == v, (k, e.evidence)
        assert text.lower() in str(e).lower()
        assert box.error == -exc.errno and exc.errno != 0
        # sticky: nothing runs any more, the same error comes back (SPEC-3)
        with pytest.raises(exc):
            box.call(targets.good)
        with pytest.raises(exc):
            box.call(targets.write_marker, box.copy_out(out))
    assert out == b"caller"
    assert box.error == -exc.errno  # readable after destroy (SPEC-2)
    # the host carries on: a fresh sandbox works
    assert sbm.run(targets.good) == 0x600D600D


def test_target_error_is_not_sticky_and_carries_the_remote_traceback() -> None:
    with sbm.Sandbox() as box:
        out = bytearray(4)
        with pytest.raises(sbm.TargetError) as ei:
            box.call(targets.raise_value_error, "no good")
        e = ei.value
        assert e.remote_type == "ValueError"
        assert e.remote_message == "no good"
        assert "raise_value_error" in e.remote_traceback
        assert 'raise ValueError(msg)' in e.remote_traceback  # source line from the zygote
        assert box.error == 0
        assert box.call(targets.write_marker, box.copy_out(out)) == 0
        assert out == b"\xde\xad\xbe\xef"


def test_integers_pass_through_unchanged() -> None:
    values = [0, -1, 1, -(2**63), 2**64 - 1, 2**200, -(2**200)]
    assert sbm.run(targets.echo, *values) == [values, {}]


def test_validate_hook_refuses_results_and_nothing_is_copied_back() -> None:
    out = bytearray(b"keep")
    with sbm.Sandbox() as box:
        with pytest.raises(sbm.ProtocolError, match="validate"):
            box.call(targets.write_marker, box.copy_out(out), validate=lambda r: r == 1)
        assert box.error == -errno.EPROTO
    assert out == b"keep"


def test_violation_reports_the_python_line() -> None:
    with pytest.raises(sbm.PolicyViolation) as ei:
        sbm.run(targets.open_file, "/etc/hostname")
    assert "targets.py" in ei.value.evidence["traceback"]
    assert "PermissionError" in ei.value.evidence["traceback"]


def test_the_segfault_target_really_crashes_a_process() -> None:
    """The harm is real: the same function kills an unsandboxed (forked) process."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        faulthandler.disable()  # pytest's, which would print the crash
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        targets.segfault()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV


def test_the_sandbox_has_no_environment_and_no_descriptors_but_its_channel() -> None:
    os.environ["SBM_TEST_SECRET"] = "hunter2"
    try:
        env = sbm.run(targets.environment)
    finally:
        del os.environ["SBM_TEST_SECRET"]
    assert env == {}
    fds = sbm.run(targets.fds_by_fstat)
    assert len(fds) == 1, fds


def test_nesting_is_refused() -> None:
    with pytest.raises(sbm.TargetError) as ei:
        sbm.run(targets.nested_sandbox)
    assert "nest" in ei.value.remote_message


def test_use_after_destroy() -> None:
    box = sbm.Sandbox()
    box.destroy()
    box.destroy()  # idempotent
    with pytest.raises(sbm.SandboxClosed):
        box.call(targets.good)


def test_require_strong_fails_closed_when_a_layer_is_missing() -> None:
    with pytest.raises(sbm.SandboxUnavailable):
        sbm.Sandbox(isolation=sbm.Isolation.WEAK, require=sbm.Isolation.STRONG)


@pytest.mark.parametrize("step", ["fds", "session", "rlimits", "chroot", "capabilities",
                                  "no_new_privs", "landlock", "seccomp"])
def test_lockdown_step_failure_fails_closed(step: str) -> None:
    box = sbm.Sandbox()
    try:
        box._backend.inject_failure = step
        with pytest.raises(sbm.SandboxUnavailable) as ei:
            box.call(targets.write_marker, box.copy_out(bytearray(4)))
        assert ei.value.evidence["step"] == step
        assert "did not run" in str(ei.value)
    finally:
        box.destroy()
